/**
 * A sandbox payment provider (PSP) for card pre-authorisations, with the shape of a real one:
 * authorize → capture (≤ authorised) or void; merchant-initiated charges; and **signed
 * webhooks** (`PilePass-Sandbox-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "t.body")>`,
 * five-minute tolerance) telling the cloud when an authorisation expired or was voided at the
 * provider. State lives in the cloud's database so the sandbox needs no service of its own.
 * Each sandbox card has a limit (sandbox_cards) to exercise declines.
 * @module
 */

import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Queryable } from '../db/database.ts';
import { DomainError } from './context.ts';

/** Money that arrives through the PSP enters the ledger here (it goes negative by design). */
export const PSP_FUNDING_ACCOUNT = 'funding:psp';
export const DEFAULT_CARD_LIMIT = 100_000;
const WEBHOOK_TOLERANCE_SECONDS = 300;

export const SandboxPsp = {
  async authorize(
    tx: Queryable,
    driverId: string,
    amount: number,
    currency: string,
    at: number,
  ): Promise<string> {
    await tx.execute(
      'INSERT INTO sandbox_cards (driver_id, card_limit) VALUES ($1, $2) ON CONFLICT (driver_id) DO NOTHING',
      [driverId, DEFAULT_CARD_LIMIT],
    );
    // Open authorisations count against the card limit, like a real card's open-to-buy.
    const { rowCount } = await tx.execute(
      `UPDATE sandbox_cards SET authorized = authorized + $1 WHERE driver_id = $2 AND authorized + $1 <= card_limit`,
      [amount, driverId],
    );
    if (rowCount !== 1)
      throw new DomainError('card_declined', 'the card issuer declined the pre-authorisation', 402);
    const id = `auth_${randomUUID()}`;
    await tx.execute(
      `INSERT INTO psp_authorizations (id, driver_id, amount, currency, captured, status, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 0, 'authorized', $5, $5)`,
      [id, driverId, amount, currency, at],
    );
    return id;
  },

  async capture(tx: Queryable, id: string, amount: number, at: number): Promise<void> {
    const auth = await tx.maybeOne<{ driver_id: string; amount: number; status: string }>(
      'SELECT driver_id, amount, status FROM psp_authorizations WHERE id = $1',
      [id],
    );
    if (!auth) throw new Error(`no authorisation ${id}`);
    if (auth.status !== 'authorized' || amount > auth.amount) {
      // Expired or voided at the provider: collect as a merchant-initiated charge instead.
      await SandboxPsp.charge(tx, auth.driver_id, amount, 'CNY', at);
      return;
    }
    await tx.execute(
      "UPDATE psp_authorizations SET status = 'captured', captured = $1, updated_at = $2 WHERE id = $3",
      [amount, at, id],
    );
    await tx.execute('UPDATE sandbox_cards SET authorized = authorized - $1 WHERE driver_id = $2', [
      auth.amount,
      auth.driver_id,
    ]);
  },

  async void(tx: Queryable, id: string, at: number): Promise<void> {
    const auth = await tx.maybeOne<{ driver_id: string; amount: number }>(
      "SELECT driver_id, amount FROM psp_authorizations WHERE id = $1 AND status = 'authorized'",
      [id],
    );
    if (!auth) return; // already voided or expired at the provider
    await tx.execute("UPDATE psp_authorizations SET status = 'voided', updated_at = $1 WHERE id = $2", [
      at,
      id,
    ]);
    await tx.execute('UPDATE sandbox_cards SET authorized = authorized - $1 WHERE driver_id = $2', [
      auth.amount,
      auth.driver_id,
    ]);
  },

  async charge(
    tx: Queryable,
    driverId: string,
    amount: number,
    currency: string,
    at: number,
  ): Promise<string> {
    const id = `charge_${randomUUID()}`;
    await tx.execute(
      `INSERT INTO psp_authorizations (id, driver_id, amount, currency, captured, status, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $3, 'charged', $5, $5)`,
      [id, driverId, amount, currency, at],
    );
    return id;
  },
};

export function signWebhook(secret: string, body: string, timestamp: number): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

/** Verifies a webhook's signature header against the raw body; throws DomainError (401) if not. */
export function verifyWebhook(secret: string, body: string, header: string | undefined, now: number): void {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isSafeInteger(t) || !parts.v1 || Math.abs(now - t) > WEBHOOK_TOLERANCE_SECONDS) {
    throw new DomainError('invalid_webhook_signature', 'missing, malformed or stale webhook signature', 401);
  }
  const expected = Buffer.from(signWebhook(secret, body, t).split('v1=')[1]!, 'hex');
  const given = Buffer.from(parts.v1, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new DomainError('invalid_webhook_signature', 'the webhook signature does not verify', 401);
  }
}

export interface WebhookEvent {
  readonly id: string;
  readonly type: 'authorization.expired' | 'authorization.voided';
  readonly authorizationId: string;
}

/** Applies a verified webhook event once (events are idempotent by id). */
export async function applyWebhookEvent(tx: Queryable, event: WebhookEvent, at: number): Promise<boolean> {
  const { rowCount } = await tx.execute(
    'INSERT INTO psp_events (id, type, authorization_id, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING',
    [event.id, event.type, event.authorizationId, at],
  );
  if (rowCount !== 1) return false;
  const status = event.type === 'authorization.expired' ? 'expired' : 'voided';
  const auth = await tx.maybeOne<{ driver_id: string; amount: number }>(
    "SELECT driver_id, amount FROM psp_authorizations WHERE id = $1 AND status = 'authorized'",
    [event.authorizationId],
  );
  if (auth) {
    await tx.execute('UPDATE psp_authorizations SET status = $1, updated_at = $2 WHERE id = $3', [
      status,
      at,
      event.authorizationId,
    ]);
    await tx.execute('UPDATE sandbox_cards SET authorized = authorized - $1 WHERE driver_id = $2', [
      auth.amount,
      auth.driver_id,
    ]);
  }
  return true;
}
