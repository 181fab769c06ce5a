/**
 * The sync bundle (cloud → gateway, directly or carried by a phone): trusted issuer keys with
 * kid, algorithm and validity; revoked kids; revoked vouchers as H(cti); tariffs; optional
 * cloud time bound to a gateway nonce; a monotonic version. Signed by the **root key**
 * pinned in the gateway at provisioning. It is the only way an issuer key enters a gateway.
 * @module
 */

import { concatBytes, equalBytes, utf8 } from '../bytes.ts';
import {
  asArray,
  asBytes,
  asClosedMap,
  asInt,
  asUint,
  type CborValue,
  decodeCbor,
  encodeCbor,
} from '../cbor.ts';
import { COSE_ALG_ES256, decodeSign1, type Sign1, signSign1, verifySign1 } from '../cose.ts';
import { compressPublicKey } from '../crypto/p256.ts';
import type { CryptoProvider, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, ensure, ProtocolError } from '../errors.ts';
import { type IssuerKey, IssuerKeyring } from '../keyring.ts';
import type { Tariff } from '../tariff.ts';
import { decodeGatewayId, decodeTariff, decodeTime, encodeTariff, MAX_CONNECTOR } from './fields.ts';

export const MAX_BUNDLE_BYTES = 60_000;
/** Revoked vouchers are listed by the first 16 bytes of SHA-256("PilePass revoke" ‖ cti). */
export const REVOCATION_HASH_BYTES = 16;
const MAX_LIST = 3_500;

export interface TariffEntry {
  readonly gatewayId: string;
  readonly connector?: number | undefined;
  readonly tariff: Tariff;
}

export interface LiveBinding {
  /** The nonce the gateway sent with its sync request. */
  readonly gatewayNonce: Uint8Array;
  readonly gatewayId: string;
}

export interface BundleBody {
  /** Monotonic; a gateway refuses any bundle not newer than the one installed. */
  readonly version: number;
  /** Cloud time at signing, Unix s. Trusted as time only together with a live binding. */
  readonly issuedAt: number;
  readonly binding?: LiveBinding | undefined;
  readonly issuers: readonly IssuerKey[];
  readonly revokedKids: readonly Uint8Array[];
  readonly revokedVouchers: readonly Uint8Array[];
  readonly tariffs: readonly TariffEntry[];
  /** Gateways this bundle is for; empty = every gateway of the operator. */
  readonly audience: readonly string[];
  /**
   * "The cloud holds every receipt of gateway G up to sequence N": lets a gateway that is never
   * online clear its outbox from bundles that phones carry in.
   */
  readonly receiptAcks: readonly ReceiptAck[];
}

export interface ReceiptAck {
  readonly gatewayId: string;
  readonly upToSequence: number;
}

export interface Bundle {
  readonly bytes: Uint8Array;
  readonly sign1: Sign1;
  readonly body: BundleBody;
}

const REVOCATION_LABEL = utf8('PilePass revoke');

export async function revocationHash(crypto: CryptoProvider, cti: Uint8Array): Promise<Uint8Array> {
  const digest = await crypto.sha256(concatBytes(REVOCATION_LABEL, cti));
  return digest.subarray(0, REVOCATION_HASH_BYTES);
}

export async function signBundle(
  rootKey: SigningKey,
  rootKid: Uint8Array,
  body: BundleBody,
): Promise<Bundle> {
  const m = new Map<number, CborValue>([
    [1, body.version],
    [2, body.issuedAt],
    [
      4,
      body.issuers.map(
        (k) =>
          new Map<number, CborValue>([
            [1, k.kid],
            [2, k.alg],
            [3, compressPublicKey(k.publicKey)],
            [4, k.notBefore],
            [5, k.notAfter],
          ]),
      ),
    ],
    [5, [...body.revokedKids]],
    [6, [...body.revokedVouchers]],
    [
      7,
      body.tariffs.map((t) =>
        t.connector === undefined
          ? [t.gatewayId, encodeTariff(t.tariff)]
          : [t.gatewayId, encodeTariff(t.tariff), t.connector],
      ),
    ],
    [8, [...body.audience]],
    [9, body.receiptAcks.map((a) => [a.gatewayId, a.upToSequence])],
  ]);
  if (body.binding) m.set(3, [body.binding.gatewayNonce, body.binding.gatewayId]);
  return parseBundle(await signSign1(rootKey, rootKid, encodeCbor(m)));
}

export function parseBundle(bytes: Uint8Array): Bundle {
  const limits = { maxBytes: MAX_BUNDLE_BYTES, maxDepth: 4, maxItems: 8 * MAX_LIST };
  const sign1 = decodeSign1(bytes, { maxBytes: MAX_BUNDLE_BYTES, maxDepth: 2, maxItems: 8 });
  const m = asClosedMap(decodeCbor(sign1.payload, limits), 'bundle', [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  for (const k of [1, 2, 4, 5, 6, 7, 8, 9])
    ensure(m.has(k), ErrorCode.UNEXPECTED_TYPE, `bundle field ${k} missing`);
  const binding = m.has(3)
    ? (() => {
        const [nonce, gid] = asArray(m.get(3), 'binding', 2);
        return { gatewayNonce: asBytes(nonce, 'binding nonce', 16), gatewayId: decodeGatewayId(gid) };
      })()
    : undefined;
  const body: BundleBody = {
    version: asUint(m.get(1), 'bundle version'),
    issuedAt: decodeTime(m.get(2), 'issued at'),
    binding,
    issuers: asArray(m.get(4), 'issuers', 0, 64).map((entry) => {
      const k = asClosedMap(entry, 'issuer key', [1, 2, 3, 4, 5]);
      return {
        kid: asBytes(k.get(1), 'kid', 1, 32),
        alg: asInt(k.get(2), 'alg'),
        publicKey: compressPublicKey(asBytes(k.get(3), 'issuer public key', 33)),
        notBefore: decodeTime(k.get(4), 'key nbf'),
        notAfter: decodeTime(k.get(5), 'key exp'),
      };
    }),
    revokedKids: asArray(m.get(5), 'revoked kids', 0, 1_024).map((v) => asBytes(v, 'kid', 1, 32)),
    revokedVouchers: asArray(m.get(6), 'revoked vouchers', 0, MAX_LIST).map((v) =>
      asBytes(v, 'revocation hash', REVOCATION_HASH_BYTES),
    ),
    tariffs: asArray(m.get(7), 'tariffs', 0, 4_096).map((entry) => {
      const t = asArray(entry, 'tariff entry', 2, 3);
      return {
        gatewayId: decodeGatewayId(t[0]),
        tariff: decodeTariff(t[1]),
        connector: t.length > 2 ? asUint(t[2], 'connector', MAX_CONNECTOR) : undefined,
      };
    }),
    audience: asArray(m.get(8), 'audience', 0, 4_096).map((v) => decodeGatewayId(v)),
    receiptAcks: asArray(m.get(9), 'receipt acks', 0, 4_096).map((entry) => {
      const [gid, upTo] = asArray(entry, 'receipt ack', 2);
      return { gatewayId: decodeGatewayId(gid), upToSequence: asUint(upTo, 'acked sequence') };
    }),
  };
  return { bytes, sign1, body };
}

/** What a gateway pins at provisioning. */
export interface RootKey {
  readonly kid: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface BundleAcceptance {
  readonly installedVersion: number | undefined;
  readonly gatewayId: string;
  /** Nonce of the live sync request this bundle answers; absent for carried or file bundles. */
  readonly pendingNonce?: Uint8Array | undefined;
}

/**
 * Verifies a bundle for installation: root signature (pinned kid, ES256, low-S), audience,
 * strictly newer version, and — when fetched live — that it answers this gateway's own nonce.
 * Returns whether its `issuedAt` may be trusted as cloud time (only when nonce-bound).
 */
export async function verifyBundle(
  crypto: CryptoProvider,
  bundle: Bundle,
  root: RootKey,
  acceptance: BundleAcceptance,
): Promise<{ cloudTimeTrusted: boolean }> {
  if (!bundle.sign1.kid || !equalBytes(bundle.sign1.kid, root.kid)) {
    throw new ProtocolError(ErrorCode.BUNDLE_SIGNATURE_INVALID, 'not signed by the pinned root kid');
  }
  await verifySign1(
    crypto,
    bundle.sign1,
    { alg: COSE_ALG_ES256, publicKey: root.publicKey, requireLowS: true },
    ErrorCode.BUNDLE_SIGNATURE_INVALID,
  );
  const b = bundle.body;
  if (b.audience.length > 0 && !b.audience.includes(acceptance.gatewayId)) {
    throw new ProtocolError(ErrorCode.BUNDLE_WRONG_AUDIENCE);
  }
  if (acceptance.installedVersion !== undefined && b.version <= acceptance.installedVersion) {
    throw new ProtocolError(ErrorCode.BUNDLE_OUTDATED, `${b.version} <= ${acceptance.installedVersion}`);
  }
  if (acceptance.pendingNonce === undefined) {
    // Carried by a phone or read from a file: a valid key update, but its time is not fresh.
    return { cloudTimeTrusted: false };
  }
  // Fetched live: it must answer this gateway's own request, or it may be a replay.
  if (
    !b.binding ||
    b.binding.gatewayId !== acceptance.gatewayId ||
    !equalBytes(b.binding.gatewayNonce, acceptance.pendingNonce)
  ) {
    throw new ProtocolError(ErrorCode.BUNDLE_NONCE_MISMATCH);
  }
  return { cloudTimeTrusted: true };
}

/** The issuer keyring a verified bundle establishes. */
export function keyringFromBundle(bundle: Bundle): IssuerKeyring {
  return new IssuerKeyring(bundle.body.issuers, bundle.body.revokedKids);
}
