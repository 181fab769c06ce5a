/**
 * P-256 facts shared by all crypto implementations: point (de)compression, validation and
 * the low-S rule for ECDSA signatures (s <= n/2), which makes issuer and gateway signatures
 * non-malleable. Point arithmetic uses @noble/curves (pure, no I/O).
 * @module
 */

import { p256 } from '@noble/curves/nist.js';
import { bytesToBigInt, uintBE } from '../bytes.ts';
import { ErrorCode, ProtocolError } from '../errors.ts';

export const P256_ORDER = p256.Point.Fn.ORDER;
const HALF_ORDER = P256_ORDER >> 1n;

/** Parses and validates a SEC1 point (compressed or not); throws ProtocolError MALFORMED. */
function parsePoint(publicKey: Uint8Array) {
  try {
    const point = p256.Point.fromBytes(publicKey);
    point.assertValidity();
    return point;
  } catch {
    throw new ProtocolError(ErrorCode.MALFORMED, 'invalid P-256 public key');
  }
}

export function compressPublicKey(publicKey: Uint8Array): Uint8Array {
  return parsePoint(publicKey).toBytes(true);
}

export function decompressPublicKey(publicKey: Uint8Array): Uint8Array {
  return parsePoint(publicKey).toBytes(false);
}

export function isValidPublicKey(publicKey: Uint8Array): boolean {
  try {
    parsePoint(publicKey);
    return true;
  } catch {
    return false;
  }
}

/** True when `signature` is 64 bytes r‖s with 0 < r < n and 0 < s <= n/2. */
export function isLowS(signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  const s = bytesToBigInt(signature.subarray(32));
  return s > 0n && s <= HALF_ORDER;
}

/** Replaces s by n − s when s > n/2; leaves low-S signatures unchanged. */
export function normalizeLowS(signature: Uint8Array): Uint8Array {
  if (signature.length !== 64) throw new RangeError('signature must be 64 bytes');
  const s = bytesToBigInt(signature.subarray(32));
  if (s <= HALF_ORDER) return signature;
  const out = new Uint8Array(64);
  out.set(signature.subarray(0, 32));
  out.set(uintBE(P256_ORDER - s, 32), 32);
  return out;
}

/** The high-S twin of a signature (same validity under ECDSA); used to test the low-S rule. */
export function toHighS(signature: Uint8Array): Uint8Array {
  const s = bytesToBigInt(signature.subarray(32));
  if (s > HALF_ORDER) return signature;
  const out = new Uint8Array(64);
  out.set(signature.subarray(0, 32));
  out.set(uintBE(P256_ORDER - s, 32), 32);
  return out;
}
