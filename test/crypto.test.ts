/**
 * The three CryptoProvider implementations agree with the standards and with each other:
 * FIPS 180-4 SHA-256, RFC 5869 HKDF, NIST SP 800-38D AES-256-GCM, FIPS 186 / SEC 1 ECDSA and
 * ECDH on P-256 (cross-signing and cross-agreement), the low-S rule, and refusal of invalid
 * points. WebCrypto here is Node's; real Chromium runs the vectors in test/browser.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { nodeCrypto } from '../shared/src/crypto/node.ts';
import {
  type CryptoProvider,
  compressPublicKey,
  createWebCrypto,
  decompressPublicKey,
  ErrorCode,
  fromHex,
  isLowS,
  isValidPublicKey,
  nobleCrypto,
  normalizeLowS,
  P256_ORDER,
  toHex,
  toHighS,
  utf8,
} from '../shared/src/index.ts';

const providers: CryptoProvider[] = [nodeCrypto, nobleCrypto, createWebCrypto(globalThis.crypto)];

describe.each(providers.map((p) => [p.name, p] as const))('%s provider', (_name, crypto) => {
  it('FIPS 180-4: SHA-256("abc")', async () => {
    expect(toHex(await crypto.sha256(utf8('abc')))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('RFC 5869 test case 1: HKDF-SHA256', async () => {
    const okm = await crypto.hkdfSha256(
      new Uint8Array(22).fill(0x0b),
      fromHex('000102030405060708090a0b0c'),
      fromHex('f0f1f2f3f4f5f6f7f8f9'),
      42,
    );
    expect(toHex(okm)).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
    );
  });

  it('NIST SP 800-38D (GCM spec test cases 13 and 14): AES-256-GCM', async () => {
    const key = new Uint8Array(32);
    const iv = new Uint8Array(12);
    expect(toHex(await crypto.aesGcmSeal(key, iv, new Uint8Array(0), new Uint8Array(0)))).toBe(
      '530f8afbc74536b9a963b4f1c4cb738b',
    );
    const sealed = await crypto.aesGcmSeal(key, iv, new Uint8Array(0), new Uint8Array(16));
    expect(toHex(sealed)).toBe('cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919');
    expect(await crypto.aesGcmOpen(key, iv, new Uint8Array(0), sealed)).toEqual(new Uint8Array(16));
  });

  it('AES-GCM refuses a changed tag, ciphertext or AAD with DECRYPT_FAILED', async () => {
    const key = crypto.randomBytes(32);
    const iv = crypto.randomBytes(12);
    const sealed = await crypto.aesGcmSeal(key, iv, utf8('aad'), utf8('hello'));
    for (const i of [0, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[i]! ^= 1;
      await expect(crypto.aesGcmOpen(key, iv, utf8('aad'), bad)).rejects.toMatchObject({
        code: ErrorCode.DECRYPT_FAILED,
      });
    }
    await expect(crypto.aesGcmOpen(key, iv, utf8('aaD'), sealed)).rejects.toMatchObject({
      code: ErrorCode.DECRYPT_FAILED,
    });
  });

  it('ECDSA P-256: signatures are 64-byte r‖s, low-S, and verify in every other provider', async () => {
    const key = await crypto.generateSigningKey();
    expect(key.publicKey.length).toBe(33);
    for (let i = 0; i < 8; i++) {
      const msg = crypto.randomBytes(40);
      const sig = await key.sign(msg);
      expect(sig.length).toBe(64);
      expect(isLowS(sig)).toBe(true);
      for (const other of providers) expect(await other.verifyP256(key.publicKey, msg, sig)).toBe(true);
      // High-S twins are valid ECDSA too; providers accept them (policy is the caller's).
      for (const other of providers)
        expect(await other.verifyP256(key.publicKey, msg, toHighS(sig))).toBe(true);
      const wrong = msg.slice();
      wrong[0]! ^= 1;
      expect(await crypto.verifyP256(key.publicKey, wrong, sig)).toBe(false);
    }
  });

  it('ECDH P-256: both sides agree, whichever providers they use', async () => {
    const mine = await crypto.generateEcdhKey();
    for (const other of providers) {
      const theirs = await other.generateEcdhKey();
      const a = await mine.deriveSecret(theirs.publicKey);
      const b = await theirs.deriveSecret(mine.publicKey);
      expect(a.length).toBe(32);
      expect(toHex(a)).toBe(toHex(b));
    }
  });

  it('SEC 1: invalid points are refused (not on curve, bad prefix, wrong length)', async () => {
    const key = await crypto.generateEcdhKey();
    const offCurve = key.publicKey.slice();
    offCurve[32]! ^= 1;
    for (const bad of [
      offCurve,
      Uint8Array.of(0x05, ...key.publicKey.subarray(1)),
      key.publicKey.subarray(0, 32),
    ]) {
      if (bad === offCurve && compressedIsValid(bad)) continue; // a flipped x may land on the curve
      await expect(key.deriveSecret(bad)).rejects.toMatchObject({ code: ErrorCode.MALFORMED });
      expect(await crypto.verifyP256(bad, utf8('m'), new Uint8Array(64))).toBe(false);
    }
  });
});

function compressedIsValid(point: Uint8Array): boolean {
  try {
    compressPublicKey(point);
    return true;
  } catch {
    return false;
  }
}

describe('low-S rule (s <= n/2)', () => {
  it('normalizeLowS is idempotent, keeps validity, and toHighS is its inverse', async () => {
    const key = await nobleCrypto.generateSigningKey();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), async (msg) => {
        const sig = await key.sign(msg);
        const high = toHighS(sig);
        expect(isLowS(high)).toBe(false);
        expect(normalizeLowS(high)).toEqual(sig);
        expect(normalizeLowS(sig)).toEqual(sig);
      }),
      { numRuns: 50 },
    );
  });

  it('s = 0 and s >= n are never low-S', () => {
    const zero = new Uint8Array(64);
    zero[31] = 1;
    expect(isLowS(zero)).toBe(false);
    const n = fromHex(P256_ORDER.toString(16).padStart(64, '0'));
    expect(isLowS(Uint8Array.of(...zero.subarray(0, 32), ...n))).toBe(false);
  });

  it('point compression round-trips (SEC 1 §2.3.3)', async () => {
    const key = await nodeCrypto.generateSigningKey();
    const raw = decompressPublicKey(key.publicKey);
    expect(raw.length).toBe(65);
    expect(compressPublicKey(raw)).toEqual(key.publicKey);
  });
});

describe('WebCrypto provider keys are non-extractable', () => {
  it('a generated signing key cannot be exported', async () => {
    const web = createWebCrypto(globalThis.crypto);
    const key = await web.generateSigningKey();
    expect(key.keyPair.privateKey.extractable).toBe(false);
    await expect(globalThis.crypto.subtle.exportKey('pkcs8', key.keyPair.privateKey)).rejects.toThrow();
    const restored = await web.signingKeyFromKeyPair(key.keyPair);
    expect(restored.publicKey).toEqual(key.publicKey);
    const sig = await restored.sign(utf8('x'));
    expect(await nodeCrypto.verifyP256(key.publicKey, utf8('x'), sig)).toBe(true);
  });
});

describe('SEC 1 §2.3.3–2.3.4 point encoding matches @noble/curves', () => {
  it('compresses, decompresses and validates random keys exactly as noble does', async () => {
    const { p256 } = await import('@noble/curves/nist.js');
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (seed) => {
        let scalar: Uint8Array;
        try {
          scalar = p256.utils.randomSecretKey(seed);
        } catch {
          return;
        }
        const full = p256.getPublicKey(scalar, false);
        const short = p256.getPublicKey(scalar, true);
        expect(compressPublicKey(full)).toEqual(short);
        expect(decompressPublicKey(short)).toEqual(full);
        expect(compressPublicKey(short)).toEqual(short);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses what noble refuses: random x, off-curve y, coordinates >= p, bad prefixes', () => {
    const nobleAccepts = (
      bytes: Uint8Array,
      noble: { Point: { fromBytes(b: Uint8Array): { assertValidity(): void } } },
    ) => {
      try {
        noble.Point.fromBytes(bytes).assertValidity();
        return true;
      } catch {
        return false;
      }
    };
    return import('@noble/curves/nist.js').then(({ p256 }) => {
      fc.assert(
        fc.property(
          fc.constantFrom(0x02, 0x03, 0x04, 0x05, 0x00),
          fc.uint8Array({ minLength: 64, maxLength: 64 }),
          (prefix, body) => {
            const bytes =
              prefix === 0x04
                ? new Uint8Array([prefix, ...body])
                : new Uint8Array([prefix, ...body.subarray(0, 32)]);
            const ours = (() => {
              try {
                decompressPublicKey(bytes);
                return true;
              } catch (err) {
                expect((err as { code?: number }).code).toBe(ErrorCode.MALFORMED);
                return false;
              }
            })();
            expect(ours).toBe(nobleAccepts(bytes, p256));
          },
        ),
        { numRuns: 500 },
      );
      // x = p (not below the field prime) with a valid-looking prefix.
      const atP = fromHex(`02${'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff'}`);
      expect(() => decompressPublicKey(atP)).toThrow();
    });
  });

  it('checks a compressed point without decoding it (Jacobi symbol on limbs) exactly as noble decodes it', async () => {
    const { p256 } = await import('@noble/curves/nist.js');
    const p = p256.Point.Fp.ORDER;
    const check = (bytes: Uint8Array) => {
      let noble: boolean;
      try {
        p256.Point.fromBytes(bytes).assertValidity();
        noble = true;
      } catch {
        noble = false;
      }
      expect(isValidPublicKey(bytes)).toBe(noble);
      if (noble) expect(compressPublicKey(bytes)).toEqual(bytes);
      else
        expect(() => compressPublicKey(bytes)).toThrow(
          expect.objectContaining({ code: ErrorCode.MALFORMED }),
        );
    };
    const withX = (prefix: number, x: bigint) =>
      fromHex(prefix.toString(16).padStart(2, '0') + x.toString(16).padStart(64, '0'));
    // Random x with either prefix: about half are on the curve.
    fc.assert(
      fc.property(fc.constantFrom(0x02, 0x03), fc.uint8Array({ minLength: 32, maxLength: 32 }), (prefix, x) =>
        check(new Uint8Array([prefix, ...x])),
      ),
      { numRuns: 2_000 },
    );
    // Points of the group (small multiples of G: x with long runs of zero and one bits are rare
    // in random input), and edge values of x: 0, 1, p - 1, p, p + 1, 2^256 - 1, and the largest
    // x below p that is on the curve.
    for (let k = 1n; k <= 64n; k++) check(p256.Point.BASE.multiply(k).toBytes(true));
    for (const x of [0n, 1n, 2n, 3n, p - 3n, p - 2n, p - 1n, p, p + 1n, (1n << 256n) - 1n])
      for (const prefix of [0x02, 0x03]) check(withX(prefix, x));
    let x = p - 1n;
    while (!isValidPublicKey(withX(0x02, x))) x--;
    check(withX(0x02, x));
    check(withX(0x03, x));
  });
});
