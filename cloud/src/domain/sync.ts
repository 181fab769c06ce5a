/**
 * Gateway sync: signed bundles down, reports up.
 *
 * A gateway authenticates each sync by signing, with its registered key, a one-time cloud
 * nonce together with its own fresh nonce and the digest of what it uploads — its clock is
 * never trusted. The answer is a root-signed bundle bound to the gateway's nonce, so the
 * gateway may take the bundle's time as cloud time. Bundle versions come from one counter,
 * so every bundle is newer than every bundle before it. Phones fetch the same per-station
 * bundle (without binding) to carry it to stations that are never online.
 * @module
 */

import { randomBytes } from 'node:crypto';
import { nodeCrypto } from '../../../shared/src/crypto/node.ts';
import { type Bundle, isLowS, signBundle, syncSignedBytes } from '../../../shared/src/index.ts';
import { nextBundleVersion } from './bundle-version.ts';
import { type CloudContext, DomainError } from './context.ts';
import { ackedUpTo, processReport, type ReportOutcome } from './settlement.ts';
import { gatewayById, recordHeartbeat, tariffOf } from './stations.ts';

const NONCE_TTL_SECONDS = 120;
/** Revocations stay listed until this long after the voucher's `exp` (clock tolerance of gateways). */
const REVOCATION_TAIL_SECONDS = 86_400;

/** The root-signed bundle for one station; bound to `gatewayNonce` when fetched live. */
export async function buildBundle(
  ctx: CloudContext,
  gatewayId: string,
  gatewayNonce?: Uint8Array,
): Promise<Bundle> {
  const gateway = await gatewayById(ctx, gatewayId);
  if (!gateway) throw new DomainError('unknown_station', `no station ${gatewayId}`, 404);
  const now = ctx.now();
  const version = await ctx.db.transaction((tx) => nextBundleVersion(tx));
  const { issuers, revokedKids } = await ctx.keys.issuerKeysForBundle();
  const revoked = await ctx.db.query<{ revocation_hash: Uint8Array }>(
    "SELECT revocation_hash FROM vouchers WHERE gateway_id = $1 AND state = 'cancelled' AND expires_at + $2 > $3 ORDER BY revocation_hash",
    [gatewayId, REVOCATION_TAIL_SECONDS, now],
  );
  const { key, pin } = await ctx.keys.root();
  return signBundle(key, pin.kid, {
    version,
    issuedAt: now,
    binding: gatewayNonce ? { gatewayNonce, gatewayId } : undefined,
    issuers,
    revokedKids,
    revokedVouchers: revoked.map((r) => r.revocation_hash),
    tariffs: [{ gatewayId, tariff: tariffOf(gateway) }],
    audience: [gatewayId],
    receiptAcks: [{ gatewayId, upToSequence: await ackedUpTo(ctx, gatewayId) }],
  });
}

export async function issueSyncNonce(
  ctx: CloudContext,
  gatewayId: string,
): Promise<{ nonce: Uint8Array; expiresAt: number }> {
  const gateway = await gatewayById(ctx, gatewayId);
  if (!gateway?.public_key || gateway.key_revoked_at !== null) {
    throw new DomainError('unknown_station', `no provisioned station ${gatewayId}`, 404);
  }
  const nonce = randomBytes(16);
  const expiresAt = ctx.now() + NONCE_TTL_SECONDS;
  await ctx.db.execute('INSERT INTO sync_nonces (nonce, gateway_id, expires_at) VALUES ($1, $2, $3)', [
    nonce,
    gatewayId,
    expiresAt,
  ]);
  return { nonce, expiresAt };
}

export interface SyncRequest {
  readonly gatewayId: string;
  readonly cloudNonce: Uint8Array;
  readonly gatewayNonce: Uint8Array;
  readonly report?: Uint8Array | undefined;
  readonly signature: Uint8Array;
}

export interface SyncResponse {
  readonly bundle: Uint8Array;
  readonly report?: ReportOutcome | undefined;
}

export async function handleSync(ctx: CloudContext, req: SyncRequest): Promise<SyncResponse> {
  const gateway = await gatewayById(ctx, req.gatewayId);
  if (!gateway?.public_key || gateway.key_revoked_at !== null) {
    throw new DomainError('unknown_station', `no provisioned station ${req.gatewayId}`, 404);
  }
  if (req.gatewayNonce.length !== 16)
    throw new DomainError('invalid_nonce', 'the gateway nonce must be 16 bytes');
  // One use: the update is the check, so a replayed request fails even if sent twice at once.
  const { rowCount } = await ctx.db.execute(
    'UPDATE sync_nonces SET used_at = $1 WHERE nonce = $2 AND gateway_id = $3 AND used_at IS NULL AND expires_at > $1',
    [ctx.now(), req.cloudNonce, req.gatewayId],
  );
  if (rowCount !== 1)
    throw new DomainError('invalid_nonce', 'unknown, expired or already used sync nonce', 403);
  const digest = await nodeCrypto.sha256(req.report ?? new Uint8Array(0));
  const signed = syncSignedBytes(req.gatewayId, req.cloudNonce, req.gatewayNonce, digest);
  const ok =
    isLowS(req.signature) && (await nodeCrypto.verifyP256(gateway.public_key, signed, req.signature));
  if (!ok)
    throw new DomainError('invalid_signature', 'the sync request is not signed by the gateway key', 403);
  await recordHeartbeat(ctx, req.gatewayId);
  const report = req.report ? await processReport(ctx, req.report, 'gateway') : undefined;
  const bundle = await buildBundle(ctx, req.gatewayId, req.gatewayNonce);
  return { bundle: bundle.bytes, report };
}
