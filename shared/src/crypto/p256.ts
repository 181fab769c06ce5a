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

/** Limbs of 28 bits (10 hold 280 >= 256 bits): small integers to V8, and shifts keep every bit. */
const LIMB_BITS = 28;
const LIMB_MASK = (1 << LIMB_BITS) - 1;
const LIMBS = 10;
const LIMB_HEX = LIMB_BITS / 4;

/** Writes 0 <= value < 2^280 into `out` as little-endian limbs. */
function toLimbs(value: bigint, out: Int32Array): void {
  const hex = value.toString(16).padStart(LIMBS * LIMB_HEX, '0');
  for (let i = 0; i < LIMBS; i++) {
    const end = hex.length - i * LIMB_HEX;
    out[i] = Number.parseInt(hex.slice(end - LIMB_HEX, end), 16);
  }
}

const P_LIMBS = new Int32Array(LIMBS);
toLimbs(P, P_LIMBS);
const scratchA = new Int32Array(LIMBS);
const scratchN = new Int32Array(LIMBS);

/**
 * The Jacobi symbol (a/n) for odd n > a >= 0, by the binary algorithm on limbs: no bigint in
 * the loop (about 180 subtract-and-shift steps for 256-bit inputs, ~6 µs, against ~20 µs for
 * the same algorithm on bigint). Overwrites `a` and `n`. Each round: strip the twos from a (an
 * odd count flips the sign when n = 3 or 5 mod 8); if a < n swap them (reciprocity: flip when
 * both are 3 mod 4); a -= n. It ends with a = 0 and n = gcd: the symbol is 0 unless n = 1.
 */
function jacobiLimbs(a: Int32Array, n: Int32Array): number {
  let t = 1;
  let top = LIMBS - 1; // a and n are both zero above `top`
  for (;;) {
    while (top > 0 && a[top] === 0 && n[top] === 0) top--;
    let a0 = a[0]!;
    if (a0 === 0) {
      let k = 1;
      while (k <= top && a[k] === 0) k++;
      if (k > top) break; // a = 0
      // Whole zero limbs: an even number of twos (LIMB_BITS is even), so no sign change.
      for (let i = 0; i <= top; i++) a[i] = i + k <= top ? a[i + k]! : 0;
      a0 = a[0]!;
    }
    const twos = 31 - Math.clz32(a0 & -a0);
    if (twos > 0) {
      if (twos & 1) {
        const r = n[0]! & 7;
        if (r === 3 || r === 5) t = -t;
      }
      const up = LIMB_BITS - twos;
      for (let i = 0; i < top; i++) a[i] = (a[i]! >>> twos) | ((a[i + 1]! << up) & LIMB_MASK);
      a[top] = a[top]! >>> twos;
    }
    let i = top;
    while (i > 0 && a[i] === n[i]) i--;
    if (a[i]! < n[i]!) {
      for (let j = 0; j <= top; j++) {
        const x = a[j]!;
        a[j] = n[j]!;
        n[j] = x;
      }
      if ((a[0]! & 3) === 3 && (n[0]! & 3) === 3) t = -t;
    }
    let borrow = 0;
    for (let j = 0; j <= top; j++) {
      const d = a[j]! - n[j]! - borrow;
      borrow = d >>> 31; // 1 when d < 0
      a[j] = d & LIMB_MASK;
    }
  }
  if (n[0] !== 1) return 0;
  for (let i = 1; i < LIMBS; i++) if (n[i] !== 0) return 0;
  return t;
}

/**
 * Whether a SEC1 compressed point (02/03 ‖ x) decodes to a valid P-256 public key: x < p and
 * y² = x³ − 3x + b has a solution, i.e. the right side is a non-zero square mod p (zero cannot
 * occur: the group has prime order, so no point has y = 0; and with y ≠ 0 one of y, p − y has the
 * requested parity). Same answer as decoding the point, without the square root: a fresh device
 * key is checked this way in every voucher decode, i.e. on every tap.
 */
function isValidCompressedPoint(publicKey: Uint8Array): boolean {
  const x = bytesToBigInt(publicKey.subarray(1));
  if (x >= P) return false;
  toLimbs(curveRhs(x), scratchA);
  scratchN.set(P_LIMBS);
  return jacobiLimbs(scratchA, scratchN) === 1;
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
