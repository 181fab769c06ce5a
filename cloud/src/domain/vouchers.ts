/**
 * Vouchers (pre-deduction information): issue = check funds and caps, hold the amount, sign;
 * cancel (lost phone) = put H(cti) on the revocation list; the refund job returns unused holds
 * after `exp` + grace (cancelled ones at `exp`), safe to run any number of times at once.
 *
 * Money invariant, per voucher, to the minor unit: held = captured + refunded − clawed_back.
 * @module
 */

import { randomBytes } from 'node:crypto';
import { nodeCrypto } from '../../../shared/src/crypto/node.ts';
import {
  compressPublicKey,
  PROTOCOL_VERSION,
  revocationHash,
  issueVoucher as signVoucher,
  toHex,
} from '../../../shared/src/index.ts';
import type { Queryable } from '../db/database.ts';
import { currentBundleVersion } from './bundle-version.ts';
import { type CloudContext, DomainError } from './context.ts';
import { type HoldRef, holdProvider } from './holds.ts';
import { MONEY_TX } from './money.ts';
import { connectorsOf, forgetGateway, recentGatewayById, tariffOf } from './stations.ts';

export type VoucherState = 'issued' | 'cancelled' | 'settled' | 'refunded';

export interface VoucherRow {
  cti: Uint8Array;
  driver_id: string;
  device_id: string;
  gateway_id: string;
  connector: number | null;
  device_key: Uint8Array;
  revocation_hash: Uint8Array;
  hold_amount: number;
  currency: string;
  issued_at: number;
  expires_at: number;
  grace_until: number;
  state: VoucherState;
  hold_provider: string;
  hold_reference: string | null;
  captured: number;
  refunded: number;
  clawed_back: number;
  cancelled_at: number | null;
  voucher_bytes: Uint8Array;
}

export interface IssueRequest {
  readonly driverId: string;
  /** The app installation's id: the unit of the per-device cap. */
  readonly deviceId: string;
  /** The fresh public key this voucher binds (SEC1, P-256). */
  readonly devicePublicKey: Uint8Array;
  readonly gatewayId: string;
  readonly connector?: number | undefined;
  readonly amount: number;
}

export interface IssuedVoucher {
  readonly cti: string;
  readonly voucher: Uint8Array;
  readonly holdAmount: number;
  readonly currency: string;
  readonly expiresAt: number;
  readonly graceUntil: number;
}

/** A signed voucher whose hold is not taken yet: `apply` takes it inside the caller's transaction. */
export interface PreparedVoucher {
  readonly issued: IssuedVoucher;
  apply(tx: Queryable): Promise<IssuedVoucher>;
}

/**
 * Everything that needs no transaction — checks, and signing (async) — so the money part can
 * run in the same transaction as the API's idempotency record. A voucher whose hold is then
 * refused is simply never handed out.
 */
export async function prepareVoucher(ctx: CloudContext, req: IssueRequest): Promise<PreparedVoucher> {
  const { rules } = ctx;
  if (!Number.isSafeInteger(req.amount) || req.amount < rules.minHold || req.amount > rules.maxHold) {
    throw new DomainError(
      'invalid_amount',
      `the amount must be ${rules.minHold}–${rules.maxHold} minor units`,
    );
  }
  let deviceKey: Uint8Array;
  try {
    deviceKey = compressPublicKey(req.devicePublicKey); // validates the point once
  } catch {
    throw new DomainError('invalid_device_key', 'not a P-256 public key');
  }
  const gateway = await recentGatewayById(ctx, req.gatewayId);
  if (!gateway?.key_digest || gateway.key_revoked_at !== null) {
    throw new DomainError('unknown_station', `no provisioned station ${req.gatewayId}`, 404);
  }
  if (req.connector !== undefined && !connectorsOf(gateway).some((c) => c.id === req.connector)) {
    throw new DomainError(
      'unknown_connector',
      `station ${req.gatewayId} has no connector ${req.connector}`,
      404,
    );
  }
  const driver = await ctx.db.maybeOne<{ currency: string; payment_method: string }>(
    'SELECT currency, payment_method FROM drivers WHERE id = $1',
    [req.driverId],
  );
  if (!driver) throw new DomainError('unknown_driver', 'no such driver', 404);
  if (driver.currency !== gateway.currency) {
    throw new DomainError(
      'currency_mismatch',
      `the station charges in ${gateway.currency}, the wallet is in ${driver.currency}`,
    );
  }

  const now = ctx.now();
  const cti = randomBytes(16);

  const expiresAt = now + rules.voucherLifetimeSeconds;
  const issuer = await ctx.keys.currentIssuer();
  const voucher = await signVoucher(issuer.key, issuer.kid, {
    issuer: ctx.issuer,
    subject: randomBytes(8), // pseudonymous per voucher: unlinkable across stations
    issuedAt: now,
    notBefore: now,
    expiresAt,
    cti,
    deviceKey,
    minVersion: PROTOCOL_VERSION,
    gatewayId: gateway.id,
    connector: req.connector,
    hold: { amount: req.amount, currency: gateway.currency },
    tariff: tariffOf(gateway),
    gatewayKeyDigest: gateway.key_digest,
  });
  const revocation = await revocationHash(nodeCrypto, cti);
  const issued: IssuedVoucher = {
    cti: toHex(cti),
    voucher: voucher.bytes,
    holdAmount: req.amount,
    currency: gateway.currency,
    expiresAt,
    graceUntil: expiresAt + rules.graceSeconds,
  };
  const paymentMethod = driver.payment_method;
  return {
    issued,
    apply: async (tx: Queryable) => {
      await reserveDeviceAllowance(tx, req.deviceId, req.amount, rules.perDeviceCap);
      const provider = holdProvider(paymentMethod);
      const reference = await provider.hold(tx, {
        driverId: req.driverId,
        ref: issued.cti,
        amount: req.amount,
        currency: gateway.currency,
        at: now,
      });
      await tx.execute(
        `INSERT INTO vouchers (cti, driver_id, device_id, gateway_id, connector, device_key, revocation_hash,
           hold_amount, currency, issued_at, expires_at, grace_until, state, voucher_bytes, hold_provider, hold_reference)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'issued', $13, $14, $15)`,
        [
          cti,
          req.driverId,
          req.deviceId,
          gateway.id,
          req.connector ?? null,
          deviceKey,
          revocation,
          req.amount,
          gateway.currency,
          now,
          expiresAt,
          issued.graceUntil,
          voucher.bytes,
          provider.name,
          reference,
        ],
      );
      return issued;
    },
  };
}

/** Checks, signs and holds: one transaction (one durable commit) for the money. */
export async function issueVoucher(ctx: CloudContext, req: IssueRequest): Promise<IssuedVoucher> {
  const prepared = await prepareVoucher(ctx, req);
  return ctx.db.transaction((tx) => prepared.apply(tx), MONEY_TX);
}

/** The per-device cap as a guarded counter: concurrent issues can never pass it together. */
async function reserveDeviceAllowance(
  tx: Queryable,
  deviceId: string,
  amount: number,
  cap: number,
): Promise<void> {
  // One guarded upsert: a new device starts at `amount` (checked against the cap here), a known
  // one moves only while the sum stays within the cap — re-checked on the latest row version
  // under READ COMMITTED, as the conditional UPDATE it replaces was.
  const { rowCount } =
    amount > cap
      ? { rowCount: 0 }
      : await tx.execute(
          `INSERT INTO device_allowances (device_id, outstanding) VALUES ($1, $2)
           ON CONFLICT (device_id) DO UPDATE SET outstanding = device_allowances.outstanding + excluded.outstanding
           WHERE device_allowances.outstanding + excluded.outstanding <= $3`,
          [deviceId, amount, cap],
        );
  if (rowCount !== 1) {
    throw new DomainError(
      'device_cap_reached',
      `outstanding vouchers on this device would exceed ${cap} minor units`,
      409,
    );
  }
}

export async function releaseDeviceAllowance(tx: Queryable, deviceId: string, amount: number): Promise<void> {
  await tx.execute('UPDATE device_allowances SET outstanding = outstanding - $1 WHERE device_id = $2', [
    amount,
    deviceId,
  ]);
}

/** The hold behind a voucher, as its provider sees it. */
export function holdRefOf(row: VoucherRow, at: number): HoldRef {
  return {
    driverId: row.driver_id,
    ref: toHex(row.cti),
    amount: row.hold_amount,
    currency: row.currency,
    at,
    reference: row.hold_reference,
  };
}

export async function voucherByCti(q: Queryable, cti: Uint8Array): Promise<VoucherRow | undefined> {
  return q.maybeOne<VoucherRow>('SELECT * FROM vouchers WHERE cti = $1', [cti]);
}

/** Lost phone, inside the caller's transaction. */
export async function cancelVoucherIn(
  tx: Queryable,
  ctx: CloudContext,
  driverId: string,
  cti: Uint8Array,
): Promise<VoucherRow> {
  // The next bundle built (version > this) is the first to carry the revocation.
  const bundleVersion = await currentBundleVersion(tx);
  const { rowCount } = await tx.execute(
    `UPDATE vouchers SET state = 'cancelled', cancelled_at = $1, cancelled_bundle_version = $2
     WHERE cti = $3 AND driver_id = $4 AND state = 'issued'`,
    [ctx.now(), bundleVersion, cti, driverId],
  );
  const row = await voucherByCti(tx, cti);
  if (!row || row.driver_id !== driverId) throw new DomainError('unknown_voucher', 'no such voucher', 404);
  if (rowCount !== 1 && row.state !== 'cancelled') {
    throw new DomainError('voucher_not_cancellable', `the voucher is already ${row.state}`, 409);
  }
  return row;
}

/** Lost phone: the voucher goes on the revocation list; its hold is refunded at `exp` (or earlier on attestation). */
export async function cancelVoucher(
  ctx: CloudContext,
  driverId: string,
  cti: Uint8Array,
): Promise<VoucherRow> {
  return ctx.db.transaction((tx) => cancelVoucherIn(tx, ctx, driverId, cti), MONEY_TX);
}

/**
 * Returns an unused hold to the wallet, once: the state change is the guard, so concurrent
 * runs (two cloud processes, a retried job) refund at most once.
 */
export async function refundHold(
  tx: Queryable,
  row: VoucherRow,
  now: number,
  reason: string,
): Promise<boolean> {
  const { rowCount } = await tx.execute(
    "UPDATE vouchers SET state = 'refunded', refunded = hold_amount WHERE cti = $1 AND state IN ('issued', 'cancelled')",
    [row.cti],
  );
  if (rowCount !== 1) return false;
  await holdProvider(row.hold_provider).release(tx, { ...holdRefOf(row, now), memo: reason });
  await releaseDeviceAllowance(tx, row.device_id, row.hold_amount);
  return true;
}

/**
 * The refund job: unused holds after `exp` + grace, cancelled ones after `exp`. Each voucher
 * in its own transaction; safe to run twice, or in two processes at once.
 */
export async function refundExpiredHolds(ctx: CloudContext, limit = 1_000): Promise<number> {
  const now = ctx.now();
  const due = await ctx.db.query<VoucherRow>(
    `SELECT * FROM vouchers WHERE (state = 'issued' AND grace_until <= $1) OR (state = 'cancelled' AND expires_at <= $1)
     ORDER BY grace_until LIMIT $2`,
    [now, limit],
  );
  let refunded = 0;
  for (const row of due) {
    const reason = row.state === 'cancelled' ? 'cancelled voucher expired' : 'unused after grace';
    const done = await ctx.db.transaction((tx) => refundHold(tx, row, now, reason), MONEY_TX);
    if (done) refunded++;
  }
  return refunded;
}

/** A dead gateway key: vouchers pinned to it can never be used; refund them now. */
export async function revokeGatewayKey(ctx: CloudContext, gatewayId: string): Promise<number> {
  await ctx.db.execute('UPDATE gateways SET key_revoked_at = $1 WHERE id = $2', [ctx.now(), gatewayId]);
  forgetGateway(ctx, gatewayId);
  return refundVouchersPinnedTo(ctx, gatewayId, 'gateway key revoked');
}

/**
 * Refunds every outstanding voucher of a gateway: after its key was revoked or replaced, the
 * vouchers name a key digest no gateway answers to, so no phone can ever use them.
 */
export async function refundVouchersPinnedTo(
  ctx: CloudContext,
  gatewayId: string,
  reason: string,
): Promise<number> {
  const now = ctx.now();
  const open = await ctx.db.query<VoucherRow>(
    "SELECT * FROM vouchers WHERE gateway_id = $1 AND state IN ('issued', 'cancelled')",
    [gatewayId],
  );
  let refunded = 0;
  for (const row of open) {
    if (await ctx.db.transaction((tx) => refundHold(tx, row, now, reason), MONEY_TX)) refunded++;
  }
  return refunded;
}

export async function vouchersOfDriver(ctx: CloudContext, driverId: string): Promise<VoucherRow[]> {
  return ctx.db.query<VoucherRow>('SELECT * FROM vouchers WHERE driver_id = $1 ORDER BY issued_at DESC', [
    driverId,
  ]);
}
