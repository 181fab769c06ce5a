/**
 * COSE_Sign1 (RFC 9052 §4.2) with ES256, as used by every signed protocol message.
 *
 * Rules: the protected header holds `alg` (1) and, where the signer has one, `kid` (4); the
 * unprotected header is always the empty map; the payload is embedded; the signature is
 * 64-byte r‖s. The algorithm is **pinned per kid by the keyring**: a message whose `alg`
 * differs from its key's is refused, never used to choose how to verify. Messages are
 * untagged (the protocol knows what it expects) to save bytes on the radio.
 * @module
 */

import {
  asArray,
  asBytes,
  asClosedMap,
  asInt,
  type CborValue,
  DEFAULT_LIMITS,
  type DecodeLimits,
  decodeCbor,
  encodeCbor,
} from './cbor.ts';
import { isLowS } from './crypto/p256.ts';
import type { CryptoProvider, SigningKey } from './crypto/provider.ts';
import { ErrorCode, type ErrorCode as ErrorCodeT, ensure, ProtocolError } from './errors.ts';

/** COSE algorithm identifier of ECDSA P-256 with SHA-256. */
export const COSE_ALG_ES256 = -7;
const HEADER_ALG = 1;
const HEADER_KID = 4;

export interface Sign1 {
  /** The exact protected-header bytes (signed). */
  readonly protectedBytes: Uint8Array;
  readonly alg: number;
  readonly kid: Uint8Array | undefined;
  readonly payload: Uint8Array;
  readonly signature: Uint8Array;
}

/** What a verifier needs to know about a key: pinned algorithm and low-S policy. */
export interface VerificationKey {
  readonly alg: number;
  readonly publicKey: Uint8Array;
  /** Issuer, root and gateway signatures must be low-S; device signatures need not be. */
  readonly requireLowS: boolean;
}

function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Uint8Array {
  return encodeCbor(['Signature1', protectedBytes, new Uint8Array(0), payload]);
}

export async function signSign1(
  key: SigningKey,
  kid: Uint8Array | undefined,
  payload: Uint8Array,
): Promise<Uint8Array> {
  const header = new Map<number, CborValue>([[HEADER_ALG, COSE_ALG_ES256]]);
  if (kid) header.set(HEADER_KID, kid);
  const protectedBytes = encodeCbor(header);
  const signature = await key.sign(sigStructure(protectedBytes, payload));
  return encodeCbor([protectedBytes, new Map(), payload, signature]);
}

/** Parses the COSE_Sign1 structure (canonical CBOR only); does not verify. */
export function decodeSign1(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): Sign1 {
  const [protectedBytes, unprotected, payload, signature] = asArray(
    decodeCbor(bytes, limits),
    'COSE_Sign1',
    4,
  );
  const prot = asBytes(protectedBytes, 'protected header', 1, 64);
  const header = asClosedMap(
    decodeCbor(prot, { maxBytes: 64, maxDepth: 1, maxItems: 5 }),
    'protected header',
    [HEADER_ALG, HEADER_KID],
  );
  ensure(header.has(HEADER_ALG), ErrorCode.UNEXPECTED_TYPE, 'protected header: alg missing');
  const alg = asInt(header.get(HEADER_ALG), 'alg');
  const kid = header.has(HEADER_KID) ? asBytes(header.get(HEADER_KID), 'kid', 1, 32) : undefined;
  asClosedMap(unprotected, 'unprotected header', []);
  return {
    protectedBytes: prot,
    alg,
    kid,
    payload: asBytes(payload, 'payload', 1, limits.maxBytes),
    signature: asBytes(signature, 'signature', 64),
  };
}

/**
 * Verifies a parsed COSE_Sign1 under `key`.
 * @param badSignature the error code to report for a signature that does not verify
 * @throws ProtocolError ALGORITHM_MISMATCH, SIGNATURE_HIGH_S or `badSignature`
 */
export async function verifySign1(
  crypto: CryptoProvider,
  sign1: Sign1,
  key: VerificationKey,
  badSignature: ErrorCodeT,
): Promise<void> {
  if (sign1.alg !== key.alg) throw new ProtocolError(ErrorCode.ALGORITHM_MISMATCH, `alg ${sign1.alg}`);
  if (key.alg !== COSE_ALG_ES256)
    throw new ProtocolError(ErrorCode.ALGORITHM_MISMATCH, 'unsupported key algorithm');
  if (key.requireLowS && !isLowS(sign1.signature)) throw new ProtocolError(ErrorCode.SIGNATURE_HIGH_S);
  const ok = await crypto.verifyP256(
    key.publicKey,
    sigStructure(sign1.protectedBytes, sign1.payload),
    sign1.signature,
  );
  if (!ok) throw new ProtocolError(badSignature);
}
