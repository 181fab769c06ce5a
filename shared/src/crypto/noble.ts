/**
 * CryptoProvider on @noble/curves, @noble/hashes and @noble/ciphers: pure JavaScript, runs
 * anywhere. Its ECDSA is deterministic (RFC 6979), which is what lets the test vectors pin
 * exact signature bytes. Slow for verification (~350/s here): not for the gateway's hot path.
 * @module
 */

import { gcm } from '@noble/ciphers/aes.js';
import { p256 } from '@noble/curves/nist.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { ErrorCode, ProtocolError } from '../errors.ts';
import { normalizeLowS } from './p256.ts';
import type { CryptoProvider, EcdhKey, SigningKey } from './provider.ts';

function signingKeyFrom(privateKey: Uint8Array): SigningKey {
  const secret = Uint8Array.from(privateKey);
  return {
    publicKey: p256.getPublicKey(secret, true),
    async sign(message) {
      // RFC 6979 deterministic k; noble emits low-S by default, normalise anyway for clarity.
      return normalizeLowS(p256.sign(message, secret, { lowS: true }));
    },
  };
}

function ecdhKeyFrom(privateKey: Uint8Array): EcdhKey {
  const secret = Uint8Array.from(privateKey);
  return {
    publicKey: p256.getPublicKey(secret, true),
    async deriveSecret(peerPublicKey) {
      try {
        return p256.getSharedSecret(secret, peerPublicKey, true).subarray(1);
      } catch {
        throw new ProtocolError(ErrorCode.MALFORMED, 'invalid ECDH public key');
      }
    },
  };
}

export const nobleCrypto: CryptoProvider = {
  name: 'noble',
  randomBytes: (length) => randomBytes(length),
  async sha256(data) {
    return sha256(data);
  },
  async hkdfSha256(ikm, salt, info, length) {
    return hkdf(sha256, ikm, salt, info, length);
  },
  async aesGcmSeal(key, nonce, aad, plaintext) {
    return gcm(key, nonce, aad).encrypt(plaintext);
  },
  async aesGcmOpen(key, nonce, aad, sealed) {
    try {
      return gcm(key, nonce, aad).decrypt(sealed);
    } catch {
      throw new ProtocolError(ErrorCode.DECRYPT_FAILED);
    }
  },
  async verifyP256(publicKey, message, signature) {
    if (signature.length !== 64) return false;
    try {
      // lowS: false — device signatures from WebCrypto are high-S about half the time.
      return p256.verify(signature, message, publicKey, { lowS: false });
    } catch {
      return false;
    }
  },
  async generateSigningKey() {
    return signingKeyFrom(p256.utils.randomSecretKey());
  },
  async importSigningKey(privateKey) {
    if (privateKey.length !== 32) throw new RangeError('P-256 private key must be 32 bytes');
    return signingKeyFrom(privateKey);
  },
  async generateEcdhKey() {
    return ecdhKeyFrom(p256.utils.randomSecretKey());
  },
  async importEcdhKey(privateKey) {
    return ecdhKeyFrom(privateKey);
  },
};
