/**
 * The receipt: what the gateway signs (COSE_Sign1, low-S) when a session ends. It carries
 * the meter readings and times, the tariff applied and the amount (one rounding rule, see
 * `tariff.ts`; charged = min(computed, hold)), the presentation proof (device signature and
 * transcript digest, so the cloud can check the driver's device took part), and its place in
 * the gateway's receipt chain (ledger sequence number, hash of the previous receipt).
 *
 * Receipt identity is SHA-256 of its exact bytes. Low-S stops third parties from producing a
 * second valid encoding; the gateway (randomized ECDSA) could sign the same body twice, so it
 * stores and resends the exact bytes it signed, and the cloud treats two receipts for one
 * `cti` as a conflict, not a duplicate.
 * @module
 */

import { asBytes, asClosedMap, asText, asUint, type CborValue, decodeCbor, encodeCbor } from '../cbor.ts';
import { COSE_ALG_ES256, decodeSign1, type Sign1, signSign1, verifySign1 } from '../cose.ts';
import type { CryptoProvider, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, ensure } from '../errors.ts';
import type { PresentationProof } from '../session/presentation.ts';
import type { Tariff } from '../tariff.ts';
import {
  CURRENCY_PATTERN,
  decodeGatewayId,
  decodeTariff,
  decodeTime,
  encodeTariff,
  MAX_AMOUNT,
  MAX_CONNECTOR,
} from './fields.ts';
import { MAX_HELLO_BYTES } from './hello.ts';

export const MAX_RECEIPT_BYTES = 2_560;
const METER_ID_PATTERN = /^[\x20-\x7e]{1,64}$/;
/** Maximum signed meter data (e.g. OCMF) carried through. */
const MAX_SIGNED_METER_DATA = 1_024;

export const StopReason = {
  DRIVER_REQUEST: 1,
  HOLD_REACHED: 2,
  UNPLUGGED: 3,
  FAULT: 4,
  IDLE_TIMEOUT: 5,
  GATEWAY_RESTART: 6,
  VEHICLE_FULL: 7,
} as const;
export type StopReason = (typeof StopReason)[keyof typeof StopReason];

export interface ReceiptBody {
  readonly cti: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly gatewayId: string;
  readonly connector: number;
  readonly meterId: string;
  /** Meter register at start and stop, Wh. */
  readonly meterStartWh: number;
  readonly meterStopWh: number;
  /** Gateway working clock, Unix s. */
  readonly startedAt: number;
  readonly stoppedAt: number;
  readonly energyWh: number;
  readonly tariff: Tariff;
  readonly computedAmount: number;
  readonly chargedAmount: number;
  readonly currency: string;
  readonly proof: PresentationProof;
  readonly sequence: number;
  /** SHA-256 of the previous receipt of this gateway; 32 zero bytes for the first. */
  readonly previousReceiptHash: Uint8Array;
  readonly stopReason: StopReason;
  /** Signed meter data passed through from the pile (e.g. OCMF), when it sends any. */
  readonly signedMeterData?: Uint8Array | undefined;
}

export interface Receipt {
  readonly bytes: Uint8Array;
  readonly sign1: Sign1;
  readonly body: ReceiptBody;
}

export async function signReceipt(
  gatewayKey: SigningKey,
  kid: Uint8Array,
  body: ReceiptBody,
): Promise<Receipt> {
  const m = new Map<number, CborValue>([
    [1, body.cti],
    [2, body.sessionId],
    [3, body.gatewayId],
    [4, body.connector],
    [5, body.meterId],
    [6, body.meterStartWh],
    [7, body.meterStopWh],
    [8, body.startedAt],
    [9, body.stoppedAt],
    [10, body.energyWh],
    [11, encodeTariff(body.tariff)],
    [12, [body.computedAmount, body.chargedAmount, body.currency]],
    [
      13,
      [body.proof.deviceSignature, body.proof.version, body.proof.helloBytes, body.proof.phoneEphemeralKey],
    ],
    [14, body.sequence],
    [15, body.previousReceiptHash],
    [16, body.stopReason],
  ]);
  if (body.signedMeterData && body.signedMeterData.length > 0) m.set(17, body.signedMeterData);
  return parseReceipt(await signSign1(gatewayKey, kid, encodeCbor(m)));
}

export function parseReceipt(bytes: Uint8Array): Receipt {
  const sign1 = decodeSign1(bytes, { maxBytes: MAX_RECEIPT_BYTES, maxDepth: 2, maxItems: 8 });
  const keys = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
  const m = asClosedMap(
    decodeCbor(sign1.payload, { maxBytes: MAX_RECEIPT_BYTES, maxDepth: 3, maxItems: 64 }),
    'receipt',
    [...keys, 17],
  );
  for (const k of keys) ensure(m.has(k), ErrorCode.UNEXPECTED_TYPE, `receipt field ${k} missing`);
  const amount = m.get(12);
  const proof = m.get(13);
  ensure(Array.isArray(amount) && amount.length === 3, ErrorCode.UNEXPECTED_TYPE, 'receipt amount');
  ensure(Array.isArray(proof) && proof.length === 4, ErrorCode.UNEXPECTED_TYPE, 'receipt proof');
  const body: ReceiptBody = {
    cti: asBytes(m.get(1), 'cti', 16, 32),
    sessionId: asBytes(m.get(2), 'session id', 16),
    gatewayId: decodeGatewayId(m.get(3)),
    connector: asUint(m.get(4), 'connector', MAX_CONNECTOR),
    meterId: asText(m.get(5), 'meter id', METER_ID_PATTERN, 64),
    meterStartWh: asUint(m.get(6), 'meter start'),
    meterStopWh: asUint(m.get(7), 'meter stop'),
    startedAt: decodeTime(m.get(8), 'started at'),
    stoppedAt: decodeTime(m.get(9), 'stopped at'),
    energyWh: asUint(m.get(10), 'energy'),
    tariff: decodeTariff(m.get(11)),
    computedAmount: asUint(amount[0], 'computed amount', MAX_AMOUNT),
    chargedAmount: asUint(amount[1], 'charged amount', MAX_AMOUNT),
    currency: asText(amount[2], 'currency', CURRENCY_PATTERN, 3),
    proof: {
      deviceSignature: asBytes(proof[0], 'device signature', 64),
      version: asUint(proof[1], 'proof version', 255),
      helloBytes: asBytes(proof[2], 'proof hello', 1, MAX_HELLO_BYTES),
      phoneEphemeralKey: asBytes(proof[3], 'proof phone key', 33),
    },
    sequence: asUint(m.get(14), 'sequence'),
    previousReceiptHash: asBytes(m.get(15), 'previous receipt hash', 32),
    stopReason: asUint(m.get(16), 'stop reason', 255) as StopReason,
    signedMeterData: m.has(17)
      ? asBytes(m.get(17), 'signed meter data', 1, MAX_SIGNED_METER_DATA)
      : undefined,
  };
  ensure(body.meterStopWh >= body.meterStartWh, ErrorCode.UNEXPECTED_TYPE, 'meter ran backwards');
  ensure(
    body.energyWh === body.meterStopWh - body.meterStartWh,
    ErrorCode.UNEXPECTED_TYPE,
    'energy != meter delta',
  );
  ensure(body.stoppedAt >= body.startedAt, ErrorCode.UNEXPECTED_TYPE, 'stopped before started');
  ensure(body.chargedAmount <= body.computedAmount, ErrorCode.UNEXPECTED_TYPE, 'charged more than computed');
  return { bytes, sign1, body };
}

export async function verifyReceipt(
  crypto: CryptoProvider,
  receipt: Receipt,
  gatewayKey: Uint8Array,
): Promise<void> {
  await verifySign1(
    crypto,
    receipt.sign1,
    { alg: COSE_ALG_ES256, publicKey: gatewayKey, requireLowS: true },
    ErrorCode.RECEIPT_SIGNATURE_INVALID,
  );
}

/** A receipt's identity and chain link: SHA-256 of its exact bytes. */
export function receiptHash(crypto: CryptoProvider, receiptBytes: Uint8Array): Promise<Uint8Array> {
  return crypto.sha256(receiptBytes);
}

export const GENESIS_RECEIPT_HASH = new Uint8Array(32);
