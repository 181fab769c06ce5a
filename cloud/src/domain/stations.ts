/**
 * Stations and their gateways: operators register a gateway (connectors with their power,
 * tariff, currency, location) and get a one-time provisioning code; the gateway exchanges it
 * for the pinned root key, registering its public key. Heartbeats mark stations online; the
 * app shows offline stations ("buy a pre-deduction before you go"). Revoking a gateway key
 * refunds every outstanding voucher pinned to it (no phone could ever use them).
 * @module
 */

import { createHash, randomBytes } from 'node:crypto';
import { nodeCrypto } from '../../../shared/src/crypto/node.ts';
import {
  compressPublicKey,
  GATEWAY_ID_PATTERN,
  isValidPublicKey,
  type Tariff,
} from '../../../shared/src/index.ts';
import { type CloudContext, DomainError } from './context.ts';
import { ensureAccount, REVENUE_SHARDS, revenueAccount } from './money.ts';

export interface ConnectorSpec {
  readonly id: number;
  /** Rated power, W: bounds plausible energy in receipts. */
  readonly powerW: number;
}

export interface GatewaySpec {
  readonly id: string;
  readonly operatorId: string;
  readonly name: string;
  readonly connectors: readonly ConnectorSpec[];
  readonly tariff: Tariff;
  readonly currency: string;
  readonly location: string;
}

export interface GatewayRow {
  id: string;
  operator_id: string;
  name: string;
  public_key: Uint8Array | null;
  key_digest: Uint8Array | null;
  connectors: string;
  tariff: string;
  currency: string;
  location: string;
  provisioning_code_hash: string | null;
  provisioning_expires_at: number | null;
  provisioned_at: number | null;
  key_revoked_at: number | null;
  last_heartbeat_at: number | null;
  flagged_at: number | null;
  flag_reason: string | null;
}

/** A station counts as online when its gateway was heard from this recently (s). */
export const ONLINE_WINDOW_SECONDS = 300;
const PROVISIONING_CODE_TTL = 7 * 86_400;

export const hashCode = (code: string) =>
  createHash('sha256').update(code.replace(/[\s-]/g, '').toUpperCase()).digest('hex');

export async function registerGateway(
  ctx: CloudContext,
  spec: GatewaySpec,
): Promise<{ provisioningCode: string }> {
  if (!GATEWAY_ID_PATTERN.test(spec.id))
    throw new DomainError('invalid_gateway_id', 'gateway id: 1–32 of A–Z a–z 0–9 . _ -');
  if (spec.connectors.length === 0)
    throw new DomainError('invalid_connectors', 'a gateway needs at least one connector');
  const code = randomBytes(10)
    .toString('base64url')
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, 'X')
    .slice(0, 12);
  const now = ctx.now();
  await ctx.db.transaction(async (tx) => {
    if (await tx.maybeOne('SELECT id FROM gateways WHERE id = $1', [spec.id])) {
      throw new DomainError('gateway_exists', `gateway ${spec.id} is already registered`, 409);
    }
    await tx.execute(
      `INSERT INTO gateways (id, operator_id, name, connectors, tariff, currency, location,
        provisioning_code_hash, provisioning_expires_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        spec.id,
        spec.operatorId,
        spec.name,
        JSON.stringify(spec.connectors),
        JSON.stringify(spec.tariff),
        spec.currency,
        spec.location,
        hashCode(code),
        now + PROVISIONING_CODE_TTL,
        now,
      ],
    );
    for (let shard = 0; shard < REVENUE_SHARDS; shard++) {
      await ensureAccount(
        tx,
        revenueAccount(spec.operatorId, shard),
        'revenue',
        spec.operatorId,
        spec.currency,
        now,
      );
    }
  });
  forgetGateway(ctx, spec.id);
  return { provisioningCode: formatCode(code) };
}

/**
 * A new one-time code for a registered gateway: replacing its Raspberry Pi, or rotating its
 * key. Provisioning with it registers the new key; vouchers pinned to the old key are
 * refunded then (a phone would refuse the new gateway's hello for them).
 */
export async function newProvisioningCode(
  ctx: CloudContext,
  gatewayId: string,
): Promise<{ provisioningCode: string }> {
  const code = freshCode();
  const { rowCount } = await ctx.db.execute(
    'UPDATE gateways SET provisioning_code_hash = $1, provisioning_expires_at = $2 WHERE id = $3',
    [hashCode(code), ctx.now() + PROVISIONING_CODE_TTL, gatewayId],
  );
  forgetGateway(ctx, gatewayId);
  if (rowCount !== 1) throw new DomainError('unknown_station', `no station ${gatewayId}`, 404);
  return { provisioningCode: formatCode(code) };
}

function freshCode(): string {
  return randomBytes(10)
    .toString('base64url')
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, 'X')
    .slice(0, 12);
}

function formatCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8)}`;
}

/** Exchanges a one-time code for the root key; registers the gateway's public key. */
export async function provisionGateway(
  ctx: CloudContext,
  code: string,
  gatewayPublicKey: Uint8Array,
): Promise<{ gatewayId: string; keyReplaced: boolean; root: { kid: Uint8Array; publicKey: Uint8Array } }> {
  if (!isValidPublicKey(gatewayPublicKey))
    throw new DomainError('invalid_public_key', 'not a P-256 public key');
  const key = compressPublicKey(gatewayPublicKey);
  const digest = await nodeCrypto.sha256(key);
  const now = ctx.now();
  let keyReplaced = false;
  const gatewayId = await ctx.db.transaction(async (tx) => {
    const row = await tx.maybeOne<GatewayRow>(
      'SELECT * FROM gateways WHERE provisioning_code_hash = $1 AND provisioning_expires_at > $2',
      [hashCode(code), now],
    );
    if (!row) throw new DomainError('invalid_code', 'unknown or expired provisioning code', 403);
    keyReplaced = row.public_key !== null && !Buffer.from(row.public_key).equals(Buffer.from(key));
    // One time: the code is spent with the exchange.
    await tx.execute(
      `UPDATE gateways SET public_key = $1, key_digest = $2, provisioned_at = $3, key_revoked_at = NULL,
        provisioning_code_hash = NULL, provisioning_expires_at = NULL WHERE id = $4`,
      [key, digest, now, row.id],
    );
    return row.id;
  });
  forgetGateway(ctx, gatewayId);
  const { pin } = await ctx.keys.root();
  return { gatewayId, keyReplaced, root: { kid: pin.kid, publicKey: pin.publicKey } };
}

export async function gatewayById(ctx: CloudContext, id: string): Promise<GatewayRow | undefined> {
  return ctx.db.maybeOne<GatewayRow>('SELECT * FROM gateways WHERE id = $1', [id]);
}

/**
 * How long issuing and settlement may use a gateway row read earlier, ms. Every write to the
 * row in this process drops it at once; another cloud process's change (PostgreSQL, several
 * processes) is seen after at most this long. What that allows, for at most this long: a
 * voucher pinned to a key revoked or replaced elsewhere (refunded at expiry like any unused
 * one), and a receipt checked against the previous key (a receipt the new key signed is
 * checked again on a fresh row before it is refused: processReceipt).
 */
export const GATEWAY_CACHE_MS = 2_000;
const GATEWAY_CACHE_ROWS = 10_000;

interface GatewayCache {
  readonly rows: Map<string, { readonly row: GatewayRow; readonly at: number }>;
  /** Bumped by every write: a read that started before a write must not be cached after it. */
  generation: number;
}

/** Per database handle, so two clouds in one process (tests) never share rows. */
const gatewayCaches = new WeakMap<object, GatewayCache>();

function gatewayCacheOf(ctx: CloudContext): GatewayCache {
  let cache = gatewayCaches.get(ctx.db);
  if (!cache) {
    cache = { rows: new Map(), generation: 0 };
    gatewayCaches.set(ctx.db, cache);
  }
  return cache;
}

/** `gatewayById` for the hot paths (issuing, settlement): a row read in the last GATEWAY_CACHE_MS. */
export async function recentGatewayById(ctx: CloudContext, id: string): Promise<GatewayRow | undefined> {
  const cache = gatewayCacheOf(ctx);
  const hit = cache.rows.get(id);
  if (hit && performance.now() - hit.at < GATEWAY_CACHE_MS) return hit.row;
  const generation = cache.generation;
  const at = performance.now();
  const row = await gatewayById(ctx, id);
  if (row && cache.generation === generation) {
    if (cache.rows.size >= GATEWAY_CACHE_ROWS) cache.rows.clear();
    cache.rows.set(id, { row, at });
  }
  return row;
}

/** Call after any write to a gateway row. */
export function forgetGateway(ctx: CloudContext, id: string): void {
  const cache = gatewayCacheOf(ctx);
  cache.generation++;
  cache.rows.delete(id);
}

export function connectorsOf(row: GatewayRow): ConnectorSpec[] {
  return JSON.parse(row.connectors) as ConnectorSpec[];
}

export function tariffOf(row: GatewayRow): Tariff {
  return JSON.parse(row.tariff) as Tariff;
}

export async function recordHeartbeat(ctx: CloudContext, gatewayId: string): Promise<void> {
  await ctx.db.execute('UPDATE gateways SET last_heartbeat_at = $1 WHERE id = $2', [ctx.now(), gatewayId]);
  forgetGateway(ctx, gatewayId);
}

export interface StationView {
  readonly id: string;
  readonly name: string;
  readonly location: string;
  readonly currency: string;
  readonly tariff: Tariff;
  readonly connectors: readonly ConnectorSpec[];
  readonly online: boolean;
  /** Hex SHA-256 of the gateway key: the app checks the hello against it (via the voucher). */
  readonly keyDigest: string | null;
  readonly lastSeenAt: number | null;
}

export async function listStations(ctx: CloudContext): Promise<StationView[]> {
  const rows = await ctx.db.query<GatewayRow>(
    'SELECT * FROM gateways WHERE provisioned_at IS NOT NULL ORDER BY id',
  );
  const now = ctx.now();
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    location: r.location,
    currency: r.currency,
    tariff: tariffOf(r),
    connectors: connectorsOf(r),
    online: r.last_heartbeat_at !== null && now - r.last_heartbeat_at <= ONLINE_WINDOW_SECONDS,
    keyDigest: r.key_digest ? Buffer.from(r.key_digest).toString('hex') : null,
    lastSeenAt: r.last_heartbeat_at,
  }));
}

/** Raises an alert on the operator endpoint; flags the gateway for fraud-type alerts. */
export async function raiseAlert(
  ctx: CloudContext,
  gatewayId: string,
  kind:
    | 'fork'
    | 'gap'
    | 'rollback'
    | 'conflict'
    | 'forged-receipt'
    | 'inflated-amount'
    | 'implausible-energy'
    | 'bad-proof',
  detail: string,
): Promise<void> {
  const now = ctx.now();
  await ctx.db.execute('INSERT INTO alerts (id, gateway_id, kind, detail, at) VALUES ($1, $2, $3, $4, $5)', [
    randomBytes(12).toString('hex'),
    gatewayId,
    kind,
    detail,
    now,
  ]);
  if (kind !== 'gap') {
    await ctx.db.execute(
      'UPDATE gateways SET flagged_at = $1, flag_reason = $2 WHERE id = $3 AND flagged_at IS NULL',
      [now, kind, gatewayId],
    );
    forgetGateway(ctx, gatewayId);
  }
}

export async function listAlerts(ctx: CloudContext, gatewayId?: string) {
  return gatewayId
    ? ctx.db.query<{ id: string; gateway_id: string; kind: string; detail: string; at: number }>(
        'SELECT * FROM alerts WHERE gateway_id = $1 ORDER BY at, id',
        [gatewayId],
      )
    : ctx.db.query<{ id: string; gateway_id: string; kind: string; detail: string; at: number }>(
        'SELECT * FROM alerts ORDER BY at, id',
      );
}
