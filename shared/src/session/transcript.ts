/**
 * The session transcript and key schedule (after ISO/IEC 18013-5 §9.1.5).
 *
 *   Z              = ECDH(gateway ephemeral, phone ephemeral)                 (x-coordinate)
 *   handshake key  = HKDF-SHA256(Z, salt = hello nonce,
 *                      info = CBOR["PilePass handshake", version, SHA-256(hello), phone eph])
 *   transcript     = CBOR["PilePass", version, hello (full signed bytes), phone eph, cti]
 *   key g→p / p→g  = HKDF-SHA256(Z, salt = hello nonce, info = CBOR[label, transcript])
 *   device proof   = ES256_device(CBOR[purpose, SHA-256(transcript)])
 *
 * The handshake key only seals the token or attach body (it cannot depend on the `cti`
 * inside it); everything after uses the per-direction session keys, which bind the whole
 * transcript. Purposes ("token", "attach", "stop") keep device signatures apart.
 * @module
 */

import { encodeCbor } from '../cbor.ts';
import type { CryptoProvider } from '../crypto/provider.ts';

export const DevicePurpose = {
  TOKEN: 'PilePass token',
  ATTACH: 'PilePass attach',
  STOP: 'PilePass stop',
} as const;
export type DevicePurpose = (typeof DevicePurpose)[keyof typeof DevicePurpose];

export function transcriptBytes(
  version: number,
  helloBytes: Uint8Array,
  phoneEph: Uint8Array,
  cti: Uint8Array,
): Uint8Array {
  return encodeCbor(['PilePass', version, helloBytes, phoneEph, cti]);
}

/** What the device key signs: a purpose label and the transcript digest. */
export function deviceSignedBytes(purpose: DevicePurpose, transcriptDigest: Uint8Array): Uint8Array {
  return encodeCbor([purpose, transcriptDigest]);
}

export async function deriveHandshakeKey(
  crypto: CryptoProvider,
  sharedSecret: Uint8Array,
  version: number,
  helloNonce: Uint8Array,
  helloBytes: Uint8Array,
  phoneEph: Uint8Array,
): Promise<Uint8Array> {
  const info = encodeCbor(['PilePass handshake', version, await crypto.sha256(helloBytes), phoneEph]);
  return crypto.hkdfSha256(sharedSecret, helloNonce, info, 32);
}

export interface SessionKeys {
  readonly gatewayToPhone: Uint8Array;
  readonly phoneToGateway: Uint8Array;
}

export async function deriveSessionKeys(
  crypto: CryptoProvider,
  sharedSecret: Uint8Array,
  helloNonce: Uint8Array,
  transcript: Uint8Array,
): Promise<SessionKeys> {
  const [gatewayToPhone, phoneToGateway] = await Promise.all([
    crypto.hkdfSha256(sharedSecret, helloNonce, encodeCbor(['PilePass g2p', transcript]), 32),
    crypto.hkdfSha256(sharedSecret, helloNonce, encodeCbor(['PilePass p2g', transcript]), 32),
  ]);
  return { gatewayToPhone, phoneToGateway };
}
