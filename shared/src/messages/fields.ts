/**
 * Field codecs shared by several messages: COSE_Key for device keys (RFC 9052 §7, EC2 with
 * point compression), tariffs, money, identifiers. Each decoder refuses anything outside the
 * stated domain with a typed error.
 * @module
 */

import { asBytes, asClosedMap, asText, asUint, type CborMap, type CborValue } from '../cbor.ts';
import { compressPublicKey } from '../crypto/p256.ts';
import { ErrorCode, ProtocolError } from '../errors.ts';
import type { Tariff } from '../tariff.ts';

/** Gateway ids: 1–32 of [A-Za-z0-9._-]. */
export const GATEWAY_ID_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;
/** ISO 4217 alphabetic code. */
export const CURRENCY_PATTERN = /^[A-Z]{3}$/;
/** Largest amount in minor units the protocol carries (10^12: far above any hold). */
export const MAX_AMOUNT = 1_000_000_000_000;
/** Largest price in 1/10,000 minor unit the protocol carries. */
export const MAX_PRICE = 1_000_000_000;
/** Connector ids are small integers printed on the pile. */
export const MAX_CONNECTOR = 255;
/** Times are Unix seconds (UTC); anything past year 2200 is refused. */
export const MAX_TIME = 7_258_118_400;

export interface Money {
  /** Integer minor units (e.g. fen, cents). */
  readonly amount: number;
  /** ISO 4217 code, e.g. "CNY". */
  readonly currency: string;
}

export function encodeMoney(m: Money): CborValue {
  return [m.amount, m.currency];
}

export function decodeMoney(value: CborValue | undefined, what: string): Money {
  if (!Array.isArray(value) || value.length !== 2) throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, what);
  return {
    amount: asUint(value[0], `${what}.amount`, MAX_AMOUNT),
    currency: asText(value[1], `${what}.currency`, CURRENCY_PATTERN, 3),
  };
}

export function encodeTariff(t: Tariff): CborValue {
  const map = new Map<number, CborValue>([[1, t.energyPrice]]);
  if (t.serviceFee) map.set(2, t.serviceFee);
  if (t.timeFee) map.set(3, t.timeFee);
  return map;
}

export function decodeTariff(value: CborValue | undefined, what = 'tariff'): Tariff {
  const m = asClosedMap(value, what, [1, 2, 3]);
  // Zero fees are omitted, never written: one tariff, one encoding (receipts copy it byte for byte).
  if (m.get(2) === 0 || m.get(3) === 0)
    throw new ProtocolError(ErrorCode.NON_CANONICAL, `${what}: zero fee must be omitted`);
  return {
    energyPrice: asUint(m.get(1), `${what}.energyPrice`, MAX_PRICE),
    serviceFee: m.has(2) ? asUint(m.get(2), `${what}.serviceFee`, MAX_PRICE) : 0,
    timeFee: m.has(3) ? asUint(m.get(3), `${what}.timeFee`, MAX_PRICE) : 0,
  };
}

const KTY_EC2 = 2;
const CRV_P256 = 1;

/** COSE_Key of a P-256 public key with point compression: x and the sign bit of y. */
export function encodeCoseKey(compressedPublicKey: Uint8Array): CborValue {
  const key = compressPublicKey(compressedPublicKey);
  return new Map<number, CborValue>([
    [1, KTY_EC2],
    [-1, CRV_P256],
    [-2, key.subarray(1)],
    [-3, key[0] === 0x03],
  ]);
}

/** Decodes a COSE_Key to a validated SEC1 compressed P-256 point. */
export function decodeCoseKey(value: CborValue | undefined, what: string): Uint8Array {
  const m: CborMap = asClosedMap(value, what, [1, -1, -2, -3]);
  if (m.get(1) !== KTY_EC2 || m.get(-1) !== CRV_P256)
    throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `${what}: not EC2 P-256`);
  const x = asBytes(m.get(-2), `${what}.x`, 32);
  const ySign = m.get(-3);
  if (typeof ySign !== 'boolean')
    throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `${what}: y must be the sign bit`);
  const point = new Uint8Array(33);
  point[0] = ySign ? 0x03 : 0x02;
  point.set(x, 1);
  return compressPublicKey(point); // validates the point is on the curve
}

export function decodeTime(value: CborValue | undefined, what: string): number {
  return asUint(value, what, MAX_TIME);
}

export function decodeGatewayId(value: CborValue | undefined): string {
  return asText(value, 'gateway id', GATEWAY_ID_PATTERN, 32);
}
