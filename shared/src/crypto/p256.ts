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

const P = p256.Point.Fp.ORDER;
const B = p256.Point.CURVE().b;

/** The Jacobi symbol (a/n) for odd n > 0, by the binary algorithm (no exponentiation). */
function jacobi(a: bigint, n: bigint): number {
  let t = 1;
  a %= n;
  while (a !== 0n) {
    let twos = 0n;
    while ((a & (0xffn << twos)) === 0n) twos += 8n;
    while ((a & (1n << twos)) === 0n) twos++;
    a >>= twos;
    if (twos & 1n) {
      const r = n & 7n;
      if (r === 3n || r === 5n) t = -t;
    }
    [a, n] = [n, a];
    if ((a & 3n) === 3n && (n & 3n) === 3n) t = -t;
    a %= n;
  }
  return n === 1n ? t : 0;
}

/**
 * Whether a SEC1 compressed point (02/03 ‖ x) decodes to a valid P-256 public key: x < p and
 * y² = x³ − 3x + b has a solution, i.e. the right side is a non-zero square mod p (zero cannot
 * occur: the group has prime order, so no point has y = 0; and with y ≠ 0 one of y, p − y has the
 * requested parity). Same answer as decoding the point, without the square root (about 3x faster
 * in bigint arithmetic), which matters where a fresh device key is checked on every tap.
 */
function isValidCompressedPoint(publicKey: Uint8Array): boolean {
  const x = bytesToBigInt(publicKey.subarray(1));
  if (x >= P) return false;
  const rhs = (((((x * x) % P) * x) % P) - 3n * x + B) % P;
  return jacobi(rhs < 0n ? rhs + P : rhs, P) === 1;
}

const isCompressedForm = (publicKey: Uint8Array) =>
  publicKey.length === 33 && (publicKey[0] === 0x02 || publicKey[0] === 0x03);

export function compressPublicKey(publicKey: Uint8Array): Uint8Array {
  if (isCompressedForm(publicKey)) {
    if (!isValidCompressedPoint(publicKey))
      throw new ProtocolError(ErrorCode.MALFORMED, 'invalid P-256 public key');
    return publicKey.slice();
  }
  return parsePoint(publicKey).toBytes(true);
}

export function decompressPublicKey(publicKey: Uint8Array): Uint8Array {
  return parsePoint(publicKey).toBytes(false);
}

export function isValidPublicKey(publicKey: Uint8Array): boolean {
  if (isCompressedForm(publicKey)) return isValidCompressedPoint(publicKey);
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
