/**
 * Settlement: receipts become captures and refunds. Receipts may come from the gateway, from
 * the phone, from both, late, or twice; the same path takes them all.
 *
 * For each receipt: the voucher is one we issued; the gateway signature verifies under the
 * registered key of the voucher's gateway; the presentation proof shows the voucher's device
 * signed this session's transcript; the amount recomputes from the voucher's own tariff and
 * hold; the energy is plausible for the connector's power and the duration. Idempotent by
 * receipt hash; a second, different receipt for the same `cti` is a conflict that flags the
 * gateway — never a second capture.
 *
 * Money: if the hold is still held, capture the fee and refund the rest; if the hold was
 * already refunded (late receipt after grace, or a cancelled voucher), capture by claw-back
 * from the wallet — bounded by the hold, possibly leaving a negative balance shown to the driver.
 * @module
 */

import { nodeCrypto } from '../../../shared/src/crypto/node.ts';
import {
  chargedAmount,
  computeFee,
  equalBytes,
  GENESIS_RECEIPT_HASH,
  ProtocolError,
  parseReceipt,
  parseReport,
  parseVoucher,
  type Receipt,
  toHex,
  verifyPresentationProof,
  verifyReceipt,
  verifyReport,
} from '../../../shared/src/index.ts';
import type { Queryable } from '../db/database.ts';
import { type CloudContext, DomainError } from './context.ts';
import { holdProvider } from './holds.ts';
import { MONEY_TX } from './money.ts';
import { connectorsOf, type GatewayRow, gatewayById, raiseAlert, recentGatewayById } from './stations.ts';
import { holdRefOf, refundHold, releaseDeviceAllowance, type VoucherRow } from './vouchers.ts';

export type ReceiptSource = 'gateway' | 'phone';
export type ReceiptOutcome =
  | {
      readonly status: 'settled';
      readonly hash: string;
      readonly charged: number;
      readonly clawedBack: boolean;
    }
  | { readonly status: 'duplicate'; readonly hash: string }
  | { readonly status: 'conflict'; readonly hash: string }
  | { readonly status: 'rejected'; readonly hash: string; readonly reason: string };

/** Plausibility margin over rated power × duration (meters and clocks are not exact). */
const ENERGY_MARGIN = 1.05;
const ENERGY_SLACK_WH = 10;

/** What is already known about a receipt, read in one query before anything else. */
interface ReceiptContext {
  /** Status of a stored receipt with these exact bytes (hash), if any. */
  readonly known: string | null;
  /** Another verified receipt of this gateway claiming the same predecessor (a fork). */
  readonly sibling: Uint8Array | null;
  /** The predecessor, when we hold it. */
  readonly predecessor: Uint8Array | null;
}

/** The voucher the receipt names, with the receipt context, in one round trip. */
type ReceiptLookup = ReceiptContext & Partial<VoucherRow>;

export async function processReceipt(
  ctx: CloudContext,
  bytes: Uint8Array,
  source: ReceiptSource,
): Promise<ReceiptOutcome> {
  const hash = await nodeCrypto.sha256(bytes);
  const hex = toHex(hash);
  let receipt: Receipt;
  try {
    receipt = parseReceipt(bytes);
  } catch (err) {
    throw new DomainError('malformed_receipt', err instanceof ProtocolError ? err.message : 'not a receipt');
  }
  const body = receipt.body;
  const lookup = await ctx.db.one<ReceiptLookup>(
    `SELECT v.*,
       (SELECT status FROM receipts WHERE hash = $1) AS known,
       (SELECT hash FROM receipts
         WHERE gateway_id = $2 AND previous_hash = $3 AND hash <> $1 AND gateway_verified LIMIT 1) AS sibling,
       (SELECT hash FROM receipts WHERE hash = $3) AS predecessor
     FROM (SELECT 1 AS one) AS x LEFT JOIN vouchers v ON v.cti = $4`,
    [hash, body.gatewayId, body.previousReceiptHash, body.cti],
  );
  if (lookup.known !== null) return { status: 'duplicate', hash: hex };

  // The gateway signature first, under the key registered for the gateway the receipt names:
  // only receipts that verify count towards acknowledgements and chain checks.
  const gateway = await verifiedGateway(ctx, receipt);
  if (!gateway.verified) {
    if (gateway.row)
      await raiseAlert(ctx, gateway.row.id, 'forged-receipt', `receipt ${hex} fails the gateway signature`);
    return store(ctx, receipt, hash, source, 'rejected', 'gateway signature invalid', false);
  }
  const station = gateway.row;
  const voucher = lookup.cti ? (lookup as VoucherRow) : undefined;
  if (!voucher) return store(ctx, receipt, hash, source, 'rejected', 'unknown voucher', true);
  if (voucher.gateway_id !== station.id) {
    await raiseAlert(ctx, station.id, 'forged-receipt', `receipt ${hex} for a voucher of another station`);
    return store(ctx, receipt, hash, source, 'rejected', 'voucher is for another station', true);
  }
  const reason = await checkReceipt(ctx, receipt, voucher, station);
  if (reason) return store(ctx, receipt, hash, source, 'rejected', reason.detail, true);

  await checkChain(ctx, station.id, receipt, hash, lookup);
  let outcome: ReceiptOutcome;
  try {
    outcome = await ctx.db.transaction(async (tx): Promise<ReceiptOutcome> => {
      // The voucher's state-guarded UPDATE decides (read committed): it matches only while no
      // receipt has settled the voucher, so on the usual path nothing is read first.
      const clawedBack = await settle(tx, body.cti, station, body.chargedAmount, ctx.now());
      if (clawedBack !== 'raced') {
        // These bytes stored meanwhile (by a concurrent copy of this request): undo, a duplicate.
        if (!(await insertReceipt(tx, receipt, hash, source, 'settled', '', true, ctx.now())))
          throw new StoredMeanwhile();
        return { status: 'settled', hash: hex, charged: body.chargedAmount, clawedBack };
      }
      // Settled already: by these very bytes (a duplicate), or by another receipt (a conflict).
      const stored = await tx.query<{ hash: Uint8Array }>(
        "SELECT hash FROM receipts WHERE hash = $1 OR (cti = $2 AND status = 'settled')",
        [hash, body.cti],
      );
      if (stored.some((r) => equalBytes(r.hash, hash))) return { status: 'duplicate', hash: hex };
      const other = stored[0];
      const why = other
        ? `second receipt for cti; settled ${toHex(other.hash)}`
        : 'second receipt for cti (concurrent)';
      await insertReceipt(tx, receipt, hash, source, 'conflict', why, true, ctx.now());
      return { status: 'conflict', hash: hex };
    }, MONEY_TX);
  } catch (err) {
    if (!(err instanceof StoredMeanwhile)) throw err;
    outcome = { status: 'duplicate', hash: hex };
  }
  // Alerts after the transaction: an equivocating gateway is flagged, never paid twice.
  if (outcome.status === 'conflict')
    await raiseAlert(ctx, station.id, 'conflict', `two receipts for voucher ${toHex(body.cti)}`);
  return outcome;
}

/**
 * The gateway the receipt names and whether its registered key signed the receipt. The row may
 * be a few seconds old (recentGatewayById); a receipt it refuses is checked again on a fresh
 * row, so a key registered moments ago elsewhere never gets a genuine receipt rejected.
 */
async function verifiedGateway(
  ctx: CloudContext,
  receipt: Receipt,
): Promise<{ verified: true; row: GatewayRow } | { verified: false; row: GatewayRow | undefined }> {
  const check = async (row: GatewayRow | undefined) => {
    if (!row?.public_key) return false;
    try {
      await verifyReceipt(nodeCrypto, receipt, row.public_key);
      return true;
    } catch {
      return false;
    }
  };
  const recent = await recentGatewayById(ctx, receipt.body.gatewayId);
  if (recent && (await check(recent))) return { verified: true, row: recent };
  const fresh = await gatewayById(ctx, receipt.body.gatewayId);
  if (fresh && (await check(fresh))) return { verified: true, row: fresh };
  return { verified: false, row: fresh };
}

async function checkReceipt(
  ctx: CloudContext,
  receipt: Receipt,
  voucher: VoucherRow,
  gateway: GatewayRow,
): Promise<{ detail: string } | undefined> {
  const body = receipt.body;
  const proofOk = await verifyPresentationProof(nodeCrypto, body.proof, {
    deviceKey: voucher.device_key,
    cti: voucher.cti,
    gatewayKey: gateway.public_key!,
    gatewayId: gateway.id,
  });
  if (!proofOk) {
    await raiseAlert(
      ctx,
      gateway.id,
      'bad-proof',
      `receipt for ${toHex(body.cti)} has no valid presentation proof`,
    );
    return { detail: 'presentation proof invalid' };
  }
  const claims = parseVoucher(voucher.voucher_bytes).claims;
  const duration = body.stoppedAt - body.startedAt;
  const sameTariff = JSON.stringify(claims.tariff) === JSON.stringify(body.tariff);
  const computed = computeFee(claims.tariff, body.energyWh, duration);
  const charged = chargedAmount(claims.tariff, body.energyWh, duration, voucher.hold_amount);
  if (
    !sameTariff ||
    body.computedAmount !== computed ||
    body.chargedAmount !== charged ||
    body.currency !== voucher.currency
  ) {
    await raiseAlert(
      ctx,
      gateway.id,
      'inflated-amount',
      `receipt for ${toHex(body.cti)} does not recompute (${body.chargedAmount} ≠ ${charged})`,
    );
    return { detail: 'amount does not recompute from the voucher tariff' };
  }
  const connector = connectorsOf(gateway).find((c) => c.id === body.connector);
  const maxWh = connector ? (connector.powerW * duration * ENERGY_MARGIN) / 3_600 + ENERGY_SLACK_WH : 0;
  if (body.energyWh > maxWh) {
    await raiseAlert(
      ctx,
      gateway.id,
      'implausible-energy',
      `${body.energyWh} Wh in ${duration} s on connector ${body.connector}`,
    );
    return { detail: 'energy implausible for the connector power and duration' };
  }
  return undefined;
}

/**
 * Moves the money for a valid receipt; returns whether it was a claw-back. The voucher's state
 * changes first, by a state-guarded UPDATE that also returns the row (one statement for the read
 * and the claim): only the receipt whose UPDATE matched moves money (read committed).
 */
async function settle(
  tx: Queryable,
  cti: Uint8Array,
  gateway: GatewayRow,
  charged: number,
  now: number,
): Promise<boolean | 'raced'> {
  const held = await tx.maybeOne<VoucherRow>(
    "UPDATE vouchers SET state = 'settled', captured = $1, refunded = hold_amount - $1 WHERE cti = $2 AND state IN ('issued', 'cancelled') RETURNING *",
    [charged, cti],
  );
  if (held) {
    await holdProvider(held.hold_provider).capture(tx, holdRefOf(held, now), charged, gateway.operator_id);
    await releaseDeviceAllowance(tx, held.device_id, held.hold_amount);
    return false;
  }
  // The hold went back to the wallet already; take the fee back from it (bounded by the hold).
  const refunded = await tx.maybeOne<VoucherRow>(
    "UPDATE vouchers SET state = 'settled', captured = $1, clawed_back = $1 WHERE cti = $2 AND state = 'refunded' RETURNING *",
    [charged, cti],
  );
  if (refunded) {
    await holdProvider(refunded.hold_provider).clawBack(
      tx,
      holdRefOf(refunded, now),
      charged,
      gateway.operator_id,
    );
    return true;
  }
  return 'raced'; // settled by another receipt first
}

/** Rolls back a settlement whose receipt bytes another request stored first. */
class StoredMeanwhile extends Error {}

/** Stores the receipt unless these bytes are stored already; whether it was stored. */
async function insertReceipt(
  tx: Queryable,
  receipt: Receipt,
  hash: Uint8Array,
  source: ReceiptSource,
  status: 'settled' | 'conflict' | 'rejected',
  reason: string,
  gatewayVerified: boolean,
  now: number,
): Promise<boolean> {
  const b = receipt.body;
  const { rowCount } = await tx.execute(
    `INSERT INTO receipts (hash, cti, gateway_id, sequence, previous_hash, charged, status, reason, gateway_verified,
       source, bytes, received_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (hash) DO NOTHING`,
    [
      hash,
      b.cti,
      b.gatewayId,
      b.sequence,
      b.previousReceiptHash,
      b.chargedAmount,
      status,
      reason,
      gatewayVerified,
      source,
      receipt.bytes,
      now,
    ],
  );
  return rowCount === 1;
}

async function store(
  ctx: CloudContext,
  receipt: Receipt,
  hash: Uint8Array,
  source: ReceiptSource,
  status: 'rejected',
  reason: string,
  gatewayVerified: boolean,
): Promise<ReceiptOutcome> {
  await ctx.db.transaction((tx) =>
    insertReceipt(tx, receipt, hash, source, status, reason, gatewayVerified, ctx.now()),
  );
  return { status, hash: toHex(hash), reason };
}

/**
 * Chain continuity as predecessors arrive: two receipts of one gateway claiming the same
 * predecessor are a fork (a cloned SD card); a predecessor we do not hold yet is a gap
 * (it may still arrive, carried by another phone).
 */
async function checkChain(
  ctx: CloudContext,
  gatewayId: string,
  receipt: Receipt,
  hash: Uint8Array,
  known: ReceiptContext,
): Promise<void> {
  const b = receipt.body;
  if (known.sibling)
    await raiseAlert(
      ctx,
      gatewayId,
      'fork',
      `receipts ${toHex(known.sibling)} and ${toHex(hash)} share a predecessor`,
    );
  if (!equalBytes(b.previousReceiptHash, GENESIS_RECEIPT_HASH) && !known.predecessor)
    await raiseAlert(ctx, gatewayId, 'gap', `predecessor of sequence ${b.sequence} not received yet`);
}

export interface ReportOutcome {
  readonly receipts: readonly ReceiptOutcome[];
  /** Cancelled vouchers refunded early thanks to revocation attestations. */
  readonly earlyRefunds: number;
  /** "Every receipt of this gateway up to sequence N is held": for bundle receipt acks. */
  readonly ackedUpTo: number;
}

/** A gateway report, uploaded by the gateway or carried by a phone. */
export async function processReport(
  ctx: CloudContext,
  bytes: Uint8Array,
  source: ReceiptSource,
): Promise<ReportOutcome> {
  let report: ReturnType<typeof parseReport>;
  try {
    report = parseReport(bytes);
  } catch (err) {
    throw new DomainError('malformed_report', err instanceof ProtocolError ? err.message : 'not a report');
  }
  const gateway = await gatewayById(ctx, report.body.gatewayId);
  if (!gateway?.public_key) throw new DomainError('unknown_station', 'report from an unknown gateway', 404);
  try {
    await verifyReport(nodeCrypto, report, gateway.public_key);
  } catch {
    await raiseAlert(ctx, gateway.id, 'forged-receipt', 'report fails the gateway signature');
    throw new DomainError('invalid_report_signature', 'the report is not signed by the gateway', 403);
  }
  const receipts: ReceiptOutcome[] = [];
  for (const r of report.body.receipts) receipts.push(await processReceipt(ctx, r, source));
  await recordCheckpoint(ctx, gateway.id, report.body.checkpoint);
  let earlyRefunds = 0;
  for (const a of report.body.revocations) earlyRefunds += await applyAttestation(ctx, gateway.id, a);
  return { receipts, earlyRefunds, ackedUpTo: await ackedUpTo(ctx, gateway.id) };
}

async function recordCheckpoint(
  ctx: CloudContext,
  gatewayId: string,
  cp: { sequence: number; head: Uint8Array },
) {
  const same = await ctx.db.maybeOne<{ head: Uint8Array }>(
    'SELECT head FROM gateway_checkpoints WHERE gateway_id = $1 AND sequence = $2',
    [gatewayId, cp.sequence],
  );
  if (same && !equalBytes(same.head, cp.head)) {
    await raiseAlert(ctx, gatewayId, 'fork', `two chain heads at sequence ${cp.sequence}`);
  }
  const latest = await ctx.db.maybeOne<{ sequence: number }>(
    'SELECT MAX(sequence) AS sequence FROM gateway_checkpoints WHERE gateway_id = $1',
    [gatewayId],
  );
  if (latest?.sequence !== null && latest?.sequence !== undefined && cp.sequence < latest.sequence) {
    await raiseAlert(ctx, gatewayId, 'rollback', `checkpoint ${cp.sequence} after ${latest.sequence}`);
  }
  await ctx.db.execute(
    'INSERT INTO gateway_checkpoints (gateway_id, sequence, head, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (gateway_id, sequence) DO NOTHING',
    [gatewayId, cp.sequence, cp.head, ctx.now()],
  );
}

/**
 * "Bundle V installed at ledger sequence N; of its revoked vouchers these were already spent
 * here": any other voucher it revokes for this gateway can never be spent — refund it now.
 */
async function applyAttestation(
  ctx: CloudContext,
  gatewayId: string,
  a: { bundleVersion: number; ledgerSequence: number; spentBeforeInstall: readonly Uint8Array[] },
): Promise<number> {
  await ctx.db.execute(
    `INSERT INTO revocation_attestations (gateway_id, bundle_version, ledger_sequence, spent_before_install, received_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (gateway_id, bundle_version) DO NOTHING`,
    [
      gatewayId,
      a.bundleVersion,
      a.ledgerSequence,
      JSON.stringify(a.spentBeforeInstall.map(toHex)),
      ctx.now(),
    ],
  );
  const spent = new Set(a.spentBeforeInstall.map(toHex));
  const candidates = await ctx.db.query<VoucherRow & { cancelled_bundle_version: number | null }>(
    "SELECT * FROM vouchers WHERE gateway_id = $1 AND state = 'cancelled' AND cancelled_bundle_version IS NOT NULL AND cancelled_bundle_version < $2",
    [gatewayId, a.bundleVersion],
  );
  let refunded = 0;
  for (const row of candidates) {
    if (spent.has(toHex(row.revocation_hash))) continue;
    if (
      await ctx.db.transaction((tx) =>
        refundHold(tx, row, ctx.now(), `revocation attested in bundle ${a.bundleVersion}`),
      )
    ) {
      refunded++;
    }
  }
  return refunded;
}

/** The highest sequence up to which the cloud holds this gateway's whole receipt chain. */
export async function ackedUpTo(ctx: CloudContext, gatewayId: string): Promise<number> {
  const rows = await ctx.db.query<{ hash: Uint8Array; previous_hash: Uint8Array; sequence: number }>(
    'SELECT hash, previous_hash, sequence FROM receipts WHERE gateway_id = $1 AND gateway_verified ORDER BY sequence',
    [gatewayId],
  );
  const byPrevious = new Map(rows.map((r) => [toHex(r.previous_hash), r]));
  let at = toHex(GENESIS_RECEIPT_HASH);
  let upTo = 0;
  for (let next = byPrevious.get(at); next; next = byPrevious.get(at)) {
    upTo = next.sequence;
    at = toHex(next.hash);
  }
  return upTo;
}
