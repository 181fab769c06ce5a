/**
 * Builders for messages an honest phone or cloud would never send, so that each gateway
 * check can be shown to fail alone: arbitrary protected headers, and tokens with a chosen
 * version or a device signature over a chosen transcript.
 */

import {
  type CborValue,
  type CryptoProvider,
  DevicePurpose,
  deriveHandshakeKey,
  deviceSignedBytes,
  encodeCbor,
  type Hello,
  PresentationKind,
  type SigningKey,
  transcriptBytes,
  type Voucher,
} from '../../shared/src/index.ts';

/** A COSE_Sign1 with any protected header, signed over the standard Sig_structure. */
export async function signWithHeader(key: SigningKey, header: Map<number, CborValue>, payload: Uint8Array) {
  const protectedBytes = encodeCbor(header);
  const sig = await key.sign(encodeCbor(['Signature1', protectedBytes, new Uint8Array(0), payload]));
  return encodeCbor([protectedBytes, new Map(), payload, sig]);
}

export interface RogueTokenOptions {
  readonly version?: number;
  /** Hello whose transcript the device signs (default: the connection's own). */
  readonly signedHello?: Hello;
  readonly connector?: number;
  readonly signature?: (bytes: Uint8Array) => Promise<Uint8Array>;
}

/** A sealed token for `hello` without the phone's own safety checks. */
export async function rogueToken(
  crypto: CryptoProvider,
  hello: Hello,
  voucher: Voucher,
  deviceKey: SigningKey,
  options: RogueTokenOptions = {},
): Promise<Uint8Array> {
  const version = options.version ?? 1;
  const eph = await crypto.generateEcdhKey();
  const secret = await eph.deriveSecret(hello.body.ephemeralKey);
  const signedHello = options.signedHello ?? hello;
  const transcript = transcriptBytes(version, signedHello.bytes, eph.publicKey, voucher.claims.cti);
  const toSign = deviceSignedBytes(DevicePurpose.TOKEN, await crypto.sha256(transcript));
  const signature = await (options.signature ?? ((b: Uint8Array) => deviceKey.sign(b)))(toSign);
  const hk = await deriveHandshakeKey(crypto, secret, version, hello.body.nonce, hello.bytes, eph.publicKey);
  const aad = encodeCbor([version, PresentationKind.TOKEN, eph.publicKey]);
  const body = encodeCbor([voucher.bytes, options.connector ?? 1, signature]);
  const sealed = await crypto.aesGcmSeal(hk, new Uint8Array(12), aad, body);
  return encodeCbor([version, PresentationKind.TOKEN, eph.publicKey, sealed]);
}
