/**
 * The ledger's hash chain: record kinds, the record hash, and the payloads of the records the
 * ledger writes itself (spend, bundle). Kept apart from SQLite so that verification, export
 * and tests compute hashes exactly the way the writer does.
 *
 * Record hash, for the record with sequence number n (n = 1, 2, 3, … with no gaps):
 *
 *     hash(n)      = SHA-256( prev_hash(n) ‖ uint64be(n) ‖ utf8(kind) ‖ 0x00 ‖ payload )
 *     prev_hash(1) = 32 zero bytes (GENESIS_HASH)
 *     prev_hash(n) = hash(n − 1)
 *
 * `uint64be(n)` is n as 8 bytes big-endian; `kind` is one of RECORD_KINDS (ASCII, no NUL, so the
 * 0x00 separator makes kind and payload unambiguous); `payload` is the record's exact bytes.
 * The record's `at` time is informational and NOT hashed: times that matter are inside the
 * payloads (a spend's startedAt, a receipt's signed stoppedAt).
 * @module
 */

import { createHash } from 'node:crypto';
import { toHex } from '../../../shared/src/bytes.ts';
import {
  asArray,
  asBytes,
  asClosedMap,
  asUint,
  type CborValue,
  decodeCbor,
  encodeCbor,
} from '../../../shared/src/cbor.ts';
import type { NewSession } from '../contracts.ts';

export const RECORD_KINDS = ['spend', 'receipt', 'bundle', 'boot', 'recover'] as const;
/**
 * spend: a voucher was spent and its session opened · receipt: a session closed with this
 * signed receipt · bundle: a sync bundle was installed · boot: the gateway started ·
 * recover: the gateway closed a session interrupted by a restart.
 */
export type RecordKind = (typeof RECORD_KINDS)[number];

export function isRecordKind(kind: string): kind is RecordKind {
  return (RECORD_KINDS as readonly string[]).includes(kind);
}

/** prev_hash of the first record. */
export const GENESIS_HASH: Uint8Array = new Uint8Array(32);

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

/**
 * The bundle's revocation hash of a voucher, first 16 bytes of SHA-256("PilePass revoke" ‖ cti)
 * — `revocationHash` of shared/src/messages/bundle.ts, synchronous so that it can run inside a
 * SQLite transaction.
 */
export function revocationHashOf(cti: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHash('sha256').update('PilePass revoke', 'utf8').update(cti).digest().subarray(0, 16),
  );
}

/** The chain hash of record `sequence` (see the module comment for the exact definition). */
export function recordHash(
  prevHash: Uint8Array,
  sequence: number,
  kind: RecordKind,
  payload: Uint8Array,
): Uint8Array {
  if (!Number.isSafeInteger(sequence) || sequence < 1) throw new RangeError('sequence must be >= 1');
  const sequenceBytes = Buffer.alloc(8);
  sequenceBytes.writeBigUInt64BE(BigInt(sequence));
  return new Uint8Array(
    createHash('sha256')
      .update(prevHash)
      .update(sequenceBytes)
      .update(kind, 'utf8')
      .update(Uint8Array.of(0))
      .update(payload)
      .digest(),
  );
}

// ---- spend payload ---------------------------------------------------------------------------

// Decoding limits for the ledger's own payloads: a spend carries a voucher (≤ 600 bytes).
const PAYLOAD_LIMITS = { maxBytes: 8_192, maxDepth: 3, maxItems: 64 };
const SPEND_KEYS = [
  'cti',
  'sessionId',
  'connector',
  'hold',
  'tariff',
  'meterId',
  'meterStartWh',
  'startedAt',
  'deviceKey',
  'deviceSignature',
  'transcriptDigest',
  'voucher',
  'proofVersion',
  'helloBytes',
  'phoneEphemeralKey',
];

/**
 * What the ledger stores for a new session: the contract's NewSession plus the rest of the
 * presentation proof a receipt must carry (protocol §3.9: version, signed hello, phone key),
 * so that a session recovered after a restart can still be closed with a complete receipt.
 */
export type LedgerNewSession = NewSession & {
  readonly proofVersion: number;
  readonly helloBytes: Uint8Array;
  readonly phoneEphemeralKey: Uint8Array;
};

/**
 * A spend record is self-contained evidence of the session it opened: deterministic CBOR map
 * with text keys (readable in an export) holding every field of the NewSession, the voucher
 * bytes included.
 */
export function encodeSpendPayload(s: LedgerNewSession): Uint8Array {
  const fields = new Map<string, CborValue>([
    ['cti', s.cti],
    ['sessionId', s.sessionId],
    ['connector', s.connector],
    ['hold', [s.holdAmount, s.currency]],
    ['tariff', [s.tariff.energyPrice, s.tariff.serviceFee, s.tariff.timeFee]],
    ['meterId', s.meterId],
    ['meterStartWh', s.meterStartWh],
    ['startedAt', s.startedAt],
    ['deviceKey', s.deviceKey],
    ['deviceSignature', s.deviceSignature],
    ['transcriptDigest', s.transcriptDigest],
    ['voucher', s.voucherBytes],
    ['proofVersion', s.proofVersion],
    ['helloBytes', s.helloBytes],
    ['phoneEphemeralKey', s.phoneEphemeralKey],
  ]);
  return encodeCbor(fields);
}

/** The fields verification needs from a spend payload (throws ProtocolError when malformed). */
export function decodeSpendPayload(payload: Uint8Array): { cti: Uint8Array; sessionId: Uint8Array } {
  const m = asClosedMap(decodeCbor(payload, PAYLOAD_LIMITS), 'spend record', SPEND_KEYS);
  return {
    cti: asBytes(m.get('cti'), 'cti', 1, 64),
    sessionId: asBytes(m.get('sessionId'), 'session id', 1, 64),
  };
}

// ---- bundle payload --------------------------------------------------------------------------

// A bundle lists at most 3,500 revocations, so at most that many were spent before install.
const BUNDLE_PAYLOAD_LIMITS = { maxBytes: 131_072, maxDepth: 2, maxItems: 8_192 };

export interface BundleRecord {
  readonly version: number;
  /** Distinct revoked-voucher hashes the installed bundle holds. */
  readonly revocationCount: number;
  /** SHA-256 of the bundle's exact bytes, so the record names the very bundle installed. */
  readonly bundleHash: Uint8Array;
  /** Revocation hashes of this bundle whose vouchers were already spent here at install. */
  readonly spentBeforeInstall: readonly Uint8Array[];
}

export function encodeBundlePayload(b: BundleRecord): Uint8Array {
  return encodeCbor(
    new Map<string, CborValue>([
      ['version', b.version],
      ['revocations', b.revocationCount],
      ['bundleHash', b.bundleHash],
      ['spentBeforeInstall', [...b.spentBeforeInstall]],
    ]),
  );
}

export function decodeBundlePayload(payload: Uint8Array): BundleRecord {
  const m = asClosedMap(decodeCbor(payload, BUNDLE_PAYLOAD_LIMITS), 'bundle record', [
    'version',
    'revocations',
    'bundleHash',
    'spentBeforeInstall',
  ]);
  return {
    version: asUint(m.get('version'), 'bundle version'),
    revocationCount: asUint(m.get('revocations'), 'revocation count'),
    bundleHash: asBytes(m.get('bundleHash'), 'bundle hash', 32),
    spentBeforeInstall: asArray(m.get('spentBeforeInstall'), 'spent before install', 0, 8_000).map((h) =>
      asBytes(h, 'revocation hash', 16),
    ),
  };
}

// ---- JSON for export -------------------------------------------------------------------------

/** Makes decoded values printable as JSON: bytes → hex, Maps → objects, bigints → strings. */
export function jsonFriendly(value: unknown): unknown {
  if (value instanceof Uint8Array) return toHex(value);
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) out[String(k)] = jsonFriendly(v);
    return out;
  }
  if (Array.isArray(value)) return value.map(jsonFriendly);
  if (typeof value === 'bigint') return value.toString();
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = jsonFriendly(v);
    return out;
  }
  return value;
}

/** Best-effort decoding of a boot/recover payload for display: CBOR when it is, else nothing. */
export function tryDecodeCbor(payload: Uint8Array): unknown {
  try {
    return jsonFriendly(decodeCbor(payload, PAYLOAD_LIMITS));
  } catch {
    return undefined;
  }
}
