/**
 * The gateway hello: the first thing a phone reads after connecting. It carries the version
 * the gateway speaks, its id, connector states, a fresh 16-byte CSPRNG nonce, the gateway's
 * working time, an ephemeral ECDH key and the gateway's long-term public key; it is signed
 * (COSE_Sign1, low-S) by that key. The phone authenticates it offline by comparing
 * SHA-256(gateway key) with the digest in its voucher. Built once per connection: a long
 * read arrives in blobs and must see the same bytes.
 * @module
 */

import { equalBytes } from '../bytes.ts';
import { asArray, asBytes, asUint, type CborValue, decodeCbor, encodeCbor } from '../cbor.ts';
import { COSE_ALG_ES256, decodeSign1, type Sign1, signSign1, verifySign1 } from '../cose.ts';
import type { CryptoProvider, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, ProtocolError } from '../errors.ts';
import { decodeGatewayId, decodeTime, MAX_CONNECTOR } from './fields.ts';

export const MAX_HELLO_BYTES = 512;

/** A gateway's key id (the `kid` of its receipts and reports): first 8 bytes of SHA-256(key). */
export async function gatewayKeyId(
  crypto: CryptoProvider,
  gatewayPublicKey: Uint8Array,
): Promise<Uint8Array> {
  return (await crypto.sha256(gatewayPublicKey)).slice(0, 8);
}
export const HELLO_NONCE_BYTES = 16;
const MAX_CONNECTORS = 16;

/** Connector states as the gateway reports them (OCPP-like). */
export const ConnectorState = {
  AVAILABLE: 0,
  PREPARING: 1,
  CHARGING: 2,
  FINISHING: 3,
  FAULTED: 4,
  UNAVAILABLE: 5,
} as const;
export type ConnectorState = (typeof ConnectorState)[keyof typeof ConnectorState];

export interface ConnectorStatus {
  readonly id: number;
  readonly state: ConnectorState;
}

export interface HelloBody {
  /** Highest protocol version the gateway speaks. */
  readonly version: number;
  readonly gatewayId: string;
  readonly connectors: readonly ConnectorStatus[];
  readonly nonce: Uint8Array;
  /** The gateway's working clock (Unix s); informational to the phone. */
  readonly gatewayTime: number;
  /** Gateway ephemeral ECDH public key, SEC1 compressed. */
  readonly ephemeralKey: Uint8Array;
  /** Gateway long-term signing key, SEC1 compressed. */
  readonly gatewayKey: Uint8Array;
}

export interface Hello {
  readonly bytes: Uint8Array;
  readonly sign1: Sign1;
  readonly body: HelloBody;
}

export async function signHello(gatewayKey: SigningKey, body: HelloBody): Promise<Hello> {
  const payload = encodeCbor([
    body.version,
    body.gatewayId,
    body.connectors.map((c) => [c.id, c.state] as CborValue),
    body.nonce,
    body.gatewayTime,
    body.ephemeralKey,
    body.gatewayKey,
  ]);
  return parseHello(await signSign1(gatewayKey, undefined, payload));
}

export function parseHello(bytes: Uint8Array): Hello {
  const sign1 = decodeSign1(bytes, { maxBytes: MAX_HELLO_BYTES, maxDepth: 2, maxItems: 8 });
  const fields = asArray(
    decodeCbor(sign1.payload, { maxBytes: MAX_HELLO_BYTES, maxDepth: 3, maxItems: 80 }),
    'hello',
    7,
  );
  const connectors = asArray(fields[2], 'connectors', 0, MAX_CONNECTORS).map((c) => {
    const [id, state] = asArray(c, 'connector', 2);
    return {
      id: asUint(id, 'connector id', MAX_CONNECTOR),
      state: asUint(state, 'connector state', ConnectorState.UNAVAILABLE) as ConnectorState,
    };
  });
  const body: HelloBody = {
    version: asUint(fields[0], 'version', 255),
    gatewayId: decodeGatewayId(fields[1]),
    connectors,
    nonce: asBytes(fields[3], 'nonce', HELLO_NONCE_BYTES),
    gatewayTime: decodeTime(fields[4], 'gateway time'),
    ephemeralKey: asBytes(fields[5], 'ephemeral key', 33),
    gatewayKey: asBytes(fields[6], 'gateway key', 33),
  };
  return { bytes, sign1, body };
}

/**
 * The phone's check: this hello comes from the gateway the voucher names (key digest) and is
 * signed by it. A mismatch means "wrong device — pick again" (HELLO_SIGNATURE_INVALID).
 */
export async function verifyHello(
  crypto: CryptoProvider,
  hello: Hello,
  expectedKeyDigest: Uint8Array,
): Promise<void> {
  const digest = await crypto.sha256(hello.body.gatewayKey);
  if (!equalBytes(digest, expectedKeyDigest)) {
    throw new ProtocolError(ErrorCode.HELLO_SIGNATURE_INVALID, 'gateway key does not match the voucher');
  }
  await verifySign1(
    crypto,
    hello.sign1,
    { alg: COSE_ALG_ES256, publicKey: hello.body.gatewayKey, requireLowS: true },
    ErrorCode.HELLO_SIGNATURE_INVALID,
  );
}
