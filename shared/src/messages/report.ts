/**
 * The gateway report (gateway → cloud, directly or carried home by a phone): pending
 * receipts, a signed ledger checkpoint (sequence number and chain head) and attestations
 * "revocation bundle V installed at ledger sequence N". Signed by the gateway key; the cloud
 * accepts the same report from either path, idempotently.
 * @module
 */

import { asArray, asBytes, asClosedMap, asUint, type CborValue, decodeCbor, encodeCbor } from '../cbor.ts';
import { COSE_ALG_ES256, decodeSign1, type Sign1, signSign1, verifySign1 } from '../cose.ts';
import type { CryptoProvider, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, ensure } from '../errors.ts';
import { REVOCATION_HASH_BYTES } from './bundle.ts';
import { decodeGatewayId, decodeTime } from './fields.ts';
import { MAX_RECEIPT_BYTES } from './receipt.ts';

/** A report must fit what a phone carries comfortably over BLE; more receipts → more reports. */
export const MAX_REPORT_BYTES = 60_000;
export const MAX_RECEIPTS_PER_REPORT = 24;

/**
 * "Bundle `bundleVersion` (and its revocations) was installed at ledger sequence
 * `ledgerSequence`; of the vouchers it revokes, these (by revocation hash) had already been
 * spent here." Every other voucher it revokes can never be spent at this gateway, so the cloud
 * may refund it before expiry.
 */
export interface RevocationAttestation {
  readonly bundleVersion: number;
  readonly ledgerSequence: number;
  readonly spentBeforeInstall: readonly Uint8Array[];
}

export interface ReportBody {
  readonly gatewayId: string;
  /** Gateway working clock at signing, Unix s (informational). */
  readonly createdAt: number;
  /** Receipts not yet acknowledged by the cloud, oldest first (COSE bytes). */
  readonly receipts: readonly Uint8Array[];
  /** Ledger checkpoint: latest sequence number and chain head hash. */
  readonly checkpoint: { readonly sequence: number; readonly head: Uint8Array };
  readonly revocations: readonly RevocationAttestation[];
  /** Cloud nonce when uploaded live (binds the upload to the request). */
  readonly cloudNonce?: Uint8Array | undefined;
}

export interface Report {
  readonly bytes: Uint8Array;
  readonly sign1: Sign1;
  readonly body: ReportBody;
}

export async function signReport(gatewayKey: SigningKey, kid: Uint8Array, body: ReportBody): Promise<Report> {
  const m = new Map<number, CborValue>([
    [1, body.gatewayId],
    [2, body.createdAt],
    [3, [...body.receipts]],
    [4, [body.checkpoint.sequence, body.checkpoint.head]],
    [5, body.revocations.map((r) => [r.bundleVersion, r.ledgerSequence, [...r.spentBeforeInstall]])],
  ]);
  if (body.cloudNonce) m.set(6, body.cloudNonce);
  return parseReport(await signSign1(gatewayKey, kid, encodeCbor(m)));
}

export function parseReport(bytes: Uint8Array): Report {
  const sign1 = decodeSign1(bytes, { maxBytes: MAX_REPORT_BYTES, maxDepth: 2, maxItems: 8 });
  const m = asClosedMap(
    decodeCbor(sign1.payload, { maxBytes: MAX_REPORT_BYTES, maxDepth: 4, maxItems: 4_096 }),
    'report',
    [1, 2, 3, 4, 5, 6],
  );
  for (const k of [1, 2, 3, 4, 5]) ensure(m.has(k), ErrorCode.UNEXPECTED_TYPE, `report field ${k} missing`);
  const [seq, head] = asArray(m.get(4), 'checkpoint', 2);
  const body: ReportBody = {
    gatewayId: decodeGatewayId(m.get(1)),
    createdAt: decodeTime(m.get(2), 'created at'),
    receipts: asArray(m.get(3), 'receipts', 0, MAX_RECEIPTS_PER_REPORT).map((r) =>
      asBytes(r, 'receipt', 1, MAX_RECEIPT_BYTES),
    ),
    checkpoint: { sequence: asUint(seq, 'checkpoint sequence'), head: asBytes(head, 'checkpoint head', 32) },
    revocations: asArray(m.get(5), 'revocations', 0, 16).map((r) => {
      const [v, n, spent] = asArray(r, 'revocation attestation', 3);
      return {
        bundleVersion: asUint(v, 'bundle version'),
        ledgerSequence: asUint(n, 'ledger sequence'),
        spentBeforeInstall: asArray(spent, 'spent before install', 0, 256).map((h) =>
          asBytes(h, 'revocation hash', REVOCATION_HASH_BYTES),
        ),
      };
    }),
    cloudNonce: m.has(6) ? asBytes(m.get(6), 'cloud nonce', 16) : undefined,
  };
  return { bytes, sign1, body };
}

export async function verifyReport(
  crypto: CryptoProvider,
  report: Report,
  gatewayKey: Uint8Array,
): Promise<void> {
  await verifySign1(
    crypto,
    report.sign1,
    { alg: COSE_ALG_ES256, publicKey: gatewayKey, requireLowS: true },
    ErrorCode.REPORT_SIGNATURE_INVALID,
  );
}
