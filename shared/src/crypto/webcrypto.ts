/**
 * CryptoProvider on WebCrypto (`crypto.subtle`): the phone's implementation. Signing and ECDH
 * keys are generated **non-extractable**, so page script can use but never read the private
 * key; CryptoKey objects are structured-cloneable and are stored in IndexedDB as they are.
 *
 * WebCrypto ECDSA is randomized and returns high-S about half the time; `sign` normalises to
 * low-S (verifiers accept both for device keys). WebCrypto imports only uncompressed points,
 * so compressed keys are expanded first (p256.ts).
 * @module
 */

import { ErrorCode, ProtocolError } from '../errors.ts';
import { compressPublicKey, decompressPublicKey, normalizeLowS } from './p256.ts';
import type { CryptoProvider, EcdhKey, SigningKey } from './provider.ts';

/** WebCrypto wants ArrayBuffer-backed views; protocol bytes always are. */
const buf = (bytes: Uint8Array) => bytes as Uint8Array<ArrayBuffer>;

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDH_P256 = { name: 'ECDH', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** PKCS #8 PrivateKeyInfo for P-256 up to the 32-byte scalar: version 0, id-ecPublicKey with
 * prime256v1, and an ECPrivateKey (version 1) without parameters or public key. */
const PKCS8_P256_PREFIX = new Uint8Array([
  0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
  0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
]);

export interface WebCryptoProvider extends CryptoProvider {
  /** Rebuilds a SigningKey from a key pair kept in IndexedDB. */
  signingKeyFromKeyPair(keyPair: CryptoKeyPair): Promise<WebCryptoSigningKey>;
  generateSigningKey(): Promise<WebCryptoSigningKey>;
}

export interface WebCryptoSigningKey extends SigningKey {
  /** The CryptoKey pair to persist (private key non-extractable). */
  readonly keyPair: CryptoKeyPair;
}

export function createWebCrypto(webCrypto: Crypto = globalThis.crypto): WebCryptoProvider {
  const subtle = webCrypto.subtle;

  async function toSigningKey(keyPair: CryptoKeyPair): Promise<WebCryptoSigningKey> {
    const raw = new Uint8Array(await subtle.exportKey('raw', keyPair.publicKey));
    const privateKey = keyPair.privateKey;
    return {
      keyPair,
      publicKey: compressPublicKey(raw),
      async sign(message) {
        const sig = new Uint8Array(await subtle.sign(ECDSA_SHA256, privateKey, buf(message)));
        return normalizeLowS(sig);
      },
    };
  }

  async function toEcdhKey(keyPair: CryptoKeyPair): Promise<EcdhKey> {
    const raw = new Uint8Array(await subtle.exportKey('raw', keyPair.publicKey));
    return {
      publicKey: compressPublicKey(raw),
      async deriveSecret(peerPublicKey) {
        let peer: CryptoKey;
        try {
          peer = await subtle.importKey('raw', buf(decompressPublicKey(peerPublicKey)), ECDH_P256, false, []);
        } catch {
          throw new ProtocolError(ErrorCode.MALFORMED, 'invalid ECDH public key');
        }
        return new Uint8Array(
          await subtle.deriveBits({ name: 'ECDH', public: peer }, keyPair.privateKey, 256),
        );
      },
    };
  }

  /**
   * JWK of a raw private scalar, with the public point WebCrypto requires in a JWK. WebCrypto
   * computes that point itself from a PKCS #8 ECPrivateKey that omits it (RFC 5915 makes the
   * field optional): import once as extractable, export the JWK. Only vectors and tests import
   * raw scalars; the keys they get are re-imported non-extractable.
   */
  async function privateJwk(privateKey: Uint8Array): Promise<JsonWebKey> {
    if (privateKey.length !== 32)
      throw new ProtocolError(ErrorCode.MALFORMED, 'P-256 scalar must be 32 bytes');
    const der = new Uint8Array(PKCS8_P256_PREFIX.length + 32);
    der.set(PKCS8_P256_PREFIX);
    der.set(privateKey, PKCS8_P256_PREFIX.length);
    const key = await subtle.importKey('pkcs8', der, ECDSA_P256, true, ['sign']);
    const { kty, crv, d, x, y } = await subtle.exportKey('jwk', key);
    return { kty, crv, d, x, y };
  }

  return {
    name: 'webcrypto',
    randomBytes(length) {
      return webCrypto.getRandomValues(new Uint8Array(length));
    },
    async sha256(data) {
      return new Uint8Array(await subtle.digest('SHA-256', buf(data)));
    },
    async hkdfSha256(ikm, salt, info, length) {
      const key = await subtle.importKey('raw', buf(ikm), 'HKDF', false, ['deriveBits']);
      const bits = await subtle.deriveBits(
        { name: 'HKDF', hash: 'SHA-256', salt: buf(salt), info: buf(info) },
        key,
        length * 8,
      );
      return new Uint8Array(bits);
    },
    async aesGcmSeal(key, nonce, aad, plaintext) {
      const k = await subtle.importKey('raw', buf(key), 'AES-GCM', false, ['encrypt']);
      const params = { name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 };
      return new Uint8Array(await subtle.encrypt(params, k, buf(plaintext)));
    },
    async aesGcmOpen(key, nonce, aad, sealed) {
      const k = await subtle.importKey('raw', buf(key), 'AES-GCM', false, ['decrypt']);
      try {
        const params = { name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 };
        return new Uint8Array(await subtle.decrypt(params, k, buf(sealed)));
      } catch {
        throw new ProtocolError(ErrorCode.DECRYPT_FAILED);
      }
    },
    async verifyP256(publicKey, message, signature) {
      if (signature.length !== 64) return false;
      try {
        const key = await subtle.importKey('raw', buf(decompressPublicKey(publicKey)), ECDSA_P256, false, [
          'verify',
        ]);
        return await subtle.verify(ECDSA_SHA256, key, buf(signature), buf(message));
      } catch {
        return false;
      }
    },
    async generateSigningKey() {
      return toSigningKey(await subtle.generateKey(ECDSA_P256, false, ['sign', 'verify']));
    },
    signingKeyFromKeyPair: toSigningKey,
    async importSigningKey(privateKey) {
      if (privateKey.length !== 32) throw new RangeError('P-256 private key must be 32 bytes');
      const jwk = await privateJwk(privateKey);
      const priv = await subtle.importKey('jwk', jwk, ECDSA_P256, false, ['sign']);
      const { d: _d, ...publicJwk } = jwk;
      const pub = await subtle.importKey('jwk', publicJwk, ECDSA_P256, true, ['verify']);
      return toSigningKey({ privateKey: priv, publicKey: pub });
    },
    async generateEcdhKey() {
      return toEcdhKey(await subtle.generateKey(ECDH_P256, false, ['deriveBits']));
    },
    async importEcdhKey(privateKey) {
      const jwk = await privateJwk(privateKey);
      const priv = await subtle.importKey('jwk', jwk, ECDH_P256, false, ['deriveBits']);
      const { d: _d, ...publicJwk } = jwk;
      const pub = await subtle.importKey('jwk', publicJwk, ECDH_P256, true, []);
      return toEcdhKey({ privateKey: priv, publicKey: pub });
    },
  };
}
