/**
 * The gateway's live sync request to the cloud (HTTP, not BLE): the gateway proves it holds its
 * registered key by signing a one-time cloud nonce, its own fresh nonce (which the answering
 * bundle binds, so the gateway may trust the bundle's time) and the SHA-256 of the report it
 * uploads (empty input when none). Gateway signatures are low-S.
 * @module
 */

import { encodeCbor } from '../cbor.ts';

export function syncSignedBytes(
  gatewayId: string,
  cloudNonce: Uint8Array,
  gatewayNonce: Uint8Array,
  uploadDigest: Uint8Array,
): Uint8Array {
  return encodeCbor(['PilePass sync', gatewayId, cloudNonce, gatewayNonce, uploadDigest]);
}
