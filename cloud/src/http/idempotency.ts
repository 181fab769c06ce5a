/**
 * Idempotency keys for every POST that moves money (Stripe's shape): the client sends an
 * `Idempotency-Key`; the first request with it runs and its response is stored; a retry with
 * the same key and body gets the stored response; the same key with another body is refused.
 * The record and the work commit together, so two concurrent retries cannot both run.
 * @module
 */

import { createHash } from 'node:crypto';
import type { Queryable } from '../db/database.ts';
import type { CloudContext } from '../domain/context.ts';
import { DomainError } from '../domain/context.ts';
import { MONEY_TX } from '../domain/money.ts';

export interface StoredResponse {
  readonly statusCode: number;
  readonly body: unknown;
}

const KEY = /^[A-Za-z0-9._:-]{8,128}$/;

/**
 * Runs `run` and records its response under the key — in **one** transaction with the work
 * itself (one durable commit). The record is inserted first, so a concurrent retry with the
 * same key waits for it (unique key) and then replays the stored response; a refused request
 * (a 4xx from the domain) rolls back and stores nothing, so a retry runs again.
 */
export async function withIdempotency(
  ctx: CloudContext,
  scope: string,
  key: string | undefined,
  requestBody: unknown,
  run: (tx: Queryable) => Promise<StoredResponse>,
): Promise<StoredResponse> {
  if (!key)
    throw new DomainError(
      'idempotency_key_required',
      'send an Idempotency-Key header (8–128 characters)',
      400,
    );
  if (!KEY.test(key))
    throw new DomainError(
      'invalid_idempotency_key',
      'the Idempotency-Key must be 8–128 of A–Z a–z 0–9 . _ : -',
    );
  const requestHash = createHash('sha256')
    .update(JSON.stringify(requestBody ?? null))
    .digest('hex');
  const replay = async (): Promise<StoredResponse> => {
    const stored = await ctx.db.one<{ request_hash: string; status_code: number; response: string }>(
      'SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND key = $2',
      [scope, key],
    );
    if (stored.request_hash !== requestHash) {
      throw new DomainError(
        'idempotency_key_reused',
        'this Idempotency-Key was used with a different request',
        422,
      );
    }
    return { statusCode: stored.status_code, body: JSON.parse(stored.response) };
  };
  const fresh = await ctx.db.transaction(async (tx) => {
    const reserved = await tx.execute(
      `INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at)
       VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (scope, key) DO NOTHING`,
      [scope, key, requestHash, ctx.now()],
    );
    if (reserved.rowCount !== 1) return undefined;
    const response = await run(tx);
    await tx.execute(
      'UPDATE idempotency_keys SET status_code = $1, response = $2 WHERE scope = $3 AND key = $4',
      [response.statusCode, JSON.stringify(response.body), scope, key],
    );
    return response;
  }, MONEY_TX);
  return fresh ?? replay();
}
