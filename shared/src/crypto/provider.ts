/**
 * The one crypto interface the protocol uses, with three implementations:
 * `node.ts` (node:crypto — gateway and cloud, fastest), `noble.ts` (@noble — portable, and the
 * only one with deterministic RFC 6979 signatures, used for vectors) and `webcrypto.ts`
 * (the phone: keys generated non-extractable in the browser).
 *
 * Only P-256 (ES256, ECDH), SHA-256, HKDF-SHA256 and AES-256-GCM are used. Public keys cross
 * this interface as SEC1 points (33-byte compressed or 65-byte uncompressed); signatures as
 * 64-byte r‖s. All methods are async because WebCrypto is.
 * @module
 */

/** A P-256 signing key whose private half may be non-extractable (WebCrypto). */
export interface SigningKey {
  /** SEC1 compressed public key, 33 bytes. */
  readonly publicKey: Uint8Array;
  /** ECDSA P-256 SHA-256 over `message`; returns 64-byte r‖s normalised to low-S. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** An ephemeral P-256 ECDH key pair. */
export interface EcdhKey {
  /** SEC1 compressed public key, 33 bytes. */
  readonly publicKey: Uint8Array;
  /** The 32-byte x-coordinate of the shared point. Throws ProtocolError MALFORMED on a bad point. */
  deriveSecret(peerPublicKey: Uint8Array): Promise<Uint8Array>;
}

export interface CryptoProvider {
  readonly name: 'node' | 'noble' | 'webcrypto';
  randomBytes(length: number): Uint8Array;
  sha256(data: Uint8Array): Promise<Uint8Array>;
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  /** AES-256-GCM; returns ciphertext ‖ 16-byte tag. */
  aesGcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array>;
  /** AES-256-GCM; throws ProtocolError DECRYPT_FAILED when the tag does not verify. */
  aesGcmOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Promise<Uint8Array>;
  /**
   * ECDSA P-256 SHA-256 verification accepting high- and low-S alike; callers that require
   * low-S check it with `isLowS` first. Returns false (never throws) for any invalid input.
   */
  verifyP256(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
  generateSigningKey(): Promise<SigningKey>;
  /** Imports a raw 32-byte private scalar (servers, tests and vectors; never the phone). */
  importSigningKey(privateKey: Uint8Array): Promise<SigningKey>;
  generateEcdhKey(): Promise<EcdhKey>;
  /** Imports a raw 32-byte private scalar (vectors only: real sessions use fresh keys). */
  importEcdhKey(privateKey: Uint8Array): Promise<EcdhKey>;
}
