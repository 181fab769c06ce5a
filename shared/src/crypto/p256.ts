/**
 * P-256 facts shared by all crypto implementations: point (de)compression, validation and
 * the low-S rule for ECDSA signatures (s <= n/2), which makes issuer and gateway signatures
 * non-malleable. Only field arithmetic is needed here (bigint, no curve library), which keeps
 * @noble/curves out of the phone's bundle; tests check every function against @noble/curves.
 * @module
 */

import { bytesToBigInt, uintBE } from '../bytes.ts';
import { ErrorCode, ProtocolError } from '../errors.ts';

/** Curve constants of P-256 (SEC 2 / FIPS 186-4 D.1.2.3). */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_ORDER = P256_ORDER >> 1n;
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;

const mod = (a: bigint) => {
  const r = a % P;
  return r < 0n ? r + P : r;
};

function powMod(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

/** x³ − 3x + b mod p: the right side of the curve equation. */
const curveRhs = (x: bigint) => mod(((x * x) % P) * x - 3n * x + B);

const isCompressedForm = (publicKey: Uint8Array) =>
  publicKey.length === 33 && (publicKey[0] === 0x02 || publicKey[0] === 0x03);

const invalid = () => new ProtocolError(ErrorCode.MALFORMED, 'invalid P-256 public key');

/**
 * Parses and validates a SEC1 point (compressed or not) to affine (x, y); throws ProtocolError
 * MALFORMED. P-256 has cofactor 1, so a point on the curve with coordinates below p is in the
 * group (the point at infinity has no SEC1 encoding here).
 */
function parsePoint(publicKey: Uint8Array): { x: bigint; y: bigint } {
  if (publicKey.length === 65 && publicKey[0] === 0x04) {
    const x = bytesToBigInt(publicKey.subarray(1, 33));
    const y = bytesToBigInt(publicKey.subarray(33));
    if (x >= P || y >= P || (y * y) % P !== curveRhs(x)) throw invalid();
    return { x, y };
  }
  if (!isCompressedForm(publicKey)) throw invalid();
  const x = bytesToBigInt(publicKey.subarray(1));
  if (x >= P) throw invalid();
  const rhs = curveRhs(x);
  // p ≡ 3 (mod 4): the square root is rhs^((p+1)/4) when rhs is a square.
  let y = powMod(rhs, (P + 1n) >> 2n);
  if ((y * y) % P !== rhs) throw invalid();
  if ((y & 1n) !== BigInt((publicKey[0] as number) & 1)) y = P - y;
  return { x, y };
}

function encodePoint(point: { x: bigint; y: bigint }, compressed: boolean): Uint8Array {
  if (compressed) {
    const out = new Uint8Array(33);
    out[0] = point.y & 1n ? 0x03 : 0x02;
    out.set(uintBE(point.x, 32), 1);
    return out;
  }
  const out = new Uint8Array(65);
  out[0] = 0x04;
  out.set(uintBE(point.x, 32), 1);
  out.set(uintBE(point.y, 32), 33);
  return out;
}

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
  return jacobi(curveRhs(x), P) === 1;
}

export function compressPublicKey(publicKey: Uint8Array): Uint8Array {
  if (isCompressedForm(publicKey)) {
    if (!isValidCompressedPoint(publicKey))
      throw new ProtocolError(ErrorCode.MALFORMED, 'invalid P-256 public key');
    return publicKey.slice();
  }
  return encodePoint(parsePoint(publicKey), true);
}

export function decompressPublicKey(publicKey: Uint8Array): Uint8Array {
  return encodePoint(parsePoint(publicKey), false);
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
