/**
 * Presentations — what the phone writes after reading the hello:
 * - **token** (identification token): the voucher, the chosen connector and the device
 *   signature over the session transcript; starts a charging session;
 * - **attach**: the voucher's `cti` and a device signature over this connection's transcript;
 *   re-joins a running or finished session (status, stop, receipt) after the link dropped.
 *
 * Both travel sealed: envelope CBOR [version, kind, phone eph key, AES-GCM(handshake key)],
 * so a listener on the radio learns neither the voucher nor who is charging. Phone time, if
 * sent, is informational and never trusted.
 *
 * This module is stateless. The gateway's ordered authorization (issuer → time floor →
 * nbf/exp → target → spent/revoked → device proof → amount → connector) lives in
 * `authorize.ts`; this file only opens, builds and checks cryptographic bindings.
 * @module
 */

import { equalBytes } from '../bytes.ts';
import { asArray, asBytes, asUint, type CborValue, decodeCbor, encodeCbor } from '../cbor.ts';
import { COSE_ALG_ES256, verifySign1 } from '../cose.ts';
import type { CryptoProvider, EcdhKey, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, ProtocolError } from '../errors.ts';
import { MAX_CONNECTOR } from '../messages/fields.ts';
import { type Hello, type HelloBody, parseHello, signHello, verifyHello } from '../messages/hello.ts';
import { MAX_VOUCHER_BYTES, parseVoucher, type Voucher, type VoucherClaims } from '../messages/voucher.ts';
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from '../version.ts';
import { SecureChannel } from './channel.ts';
import {
  DevicePurpose,
  deriveHandshakeKey,
  deriveSessionKeys,
  deviceSignedBytes,
  transcriptBytes,
} from './transcript.ts';

export const PresentationKind = { TOKEN: 1, ATTACH: 2 } as const;
export type PresentationKind = (typeof PresentationKind)[keyof typeof PresentationKind];

/** Largest sealed presentation accepted (the token target is <= 400 bytes). */
export const MAX_PRESENTATION_BYTES = 1_024;
const ZERO_NONCE = new Uint8Array(12);

// ---- gateway side ---------------------------------------------------------------------------

/** One connection's hello and the ephemeral key behind it. Single use. */
export interface GatewayHandshake {
  readonly hello: Hello;
  readonly ephemeral: EcdhKey;
}

export async function createGatewayHandshake(
  crypto: CryptoProvider,
  gatewayKey: SigningKey,
  params: Omit<HelloBody, 'nonce' | 'ephemeralKey' | 'gatewayKey' | 'version'> & { version?: number },
  ephemeral?: EcdhKey,
  nonce?: Uint8Array,
): Promise<GatewayHandshake> {
  const eph = ephemeral ?? (await crypto.generateEcdhKey());
  const hello = await signHello(gatewayKey, {
    version: params.version ?? PROTOCOL_VERSION,
    gatewayId: params.gatewayId,
    connectors: params.connectors,
    gatewayTime: params.gatewayTime,
    nonce: nonce ?? crypto.randomBytes(16),
    ephemeralKey: eph.publicKey,
    gatewayKey: gatewayKey.publicKey,
  });
  return { hello, ephemeral: eph };
}

interface OpenedCommon {
  readonly version: number;
  readonly phoneEphemeralKey: Uint8Array;
  readonly deviceSignature: Uint8Array;
  /** ECDH secret; kept only until the session keys are derived. */
  readonly sharedSecret: Uint8Array;
}

export interface OpenedToken extends OpenedCommon {
  readonly kind: typeof PresentationKind.TOKEN;
  readonly voucher: Voucher;
  readonly connector: number;
  readonly phoneTime: number | undefined;
}

export interface OpenedAttach extends OpenedCommon {
  readonly kind: typeof PresentationKind.ATTACH;
  readonly cti: Uint8Array;
}

export type OpenedPresentation = OpenedToken | OpenedAttach;

function envelopeAad(version: number, kind: number, phoneEph: Uint8Array): Uint8Array {
  return encodeCbor([version, kind, phoneEph]);
}

/**
 * Opens a sealed presentation against this connection's handshake: version in range,
 * decryptable under the handshake key, body well-formed. Verifies no signature yet.
 */
export async function openPresentation(
  crypto: CryptoProvider,
  handshake: GatewayHandshake,
  envelope: Uint8Array,
): Promise<OpenedPresentation> {
  const fields = asArray(
    decodeCbor(envelope, { maxBytes: MAX_PRESENTATION_BYTES, maxDepth: 1, maxItems: 5 }),
    'presentation',
    4,
  );
  const version = asUint(fields[0], 'version', 255);
  const kind = asUint(fields[1], 'kind', 255);
  const phoneEph = asBytes(fields[2], 'phone ephemeral key', 33);
  const sealed = asBytes(fields[3], 'sealed body', 17, MAX_PRESENTATION_BYTES);
  if (version < MIN_PROTOCOL_VERSION || version > handshake.hello.body.version) {
    throw new ProtocolError(ErrorCode.UNSUPPORTED_VERSION, `version ${version}`);
  }
  if (kind !== PresentationKind.TOKEN && kind !== PresentationKind.ATTACH) {
    throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `presentation kind ${kind}`);
  }
  const sharedSecret = await handshake.ephemeral.deriveSecret(phoneEph);
  const hk = await deriveHandshakeKey(
    crypto,
    sharedSecret,
    version,
    handshake.hello.body.nonce,
    handshake.hello.bytes,
    phoneEph,
  );
  const body = await crypto.aesGcmOpen(hk, ZERO_NONCE, envelopeAad(version, kind, phoneEph), sealed);
  const limits = { maxBytes: MAX_PRESENTATION_BYTES, maxDepth: 1, maxItems: 6 };
  if (kind === PresentationKind.TOKEN) {
    const t = asArray(decodeCbor(body, limits), 'token', 3, 4);
    return {
      kind,
      version,
      phoneEphemeralKey: phoneEph,
      sharedSecret,
      voucher: parseVoucher(asBytes(t[0], 'voucher', 1, MAX_VOUCHER_BYTES)),
      connector: asUint(t[1], 'connector', MAX_CONNECTOR),
      deviceSignature: asBytes(t[2], 'device signature', 64),
      phoneTime: t.length > 3 ? asUint(t[3], 'phone time') : undefined,
    };
  }
  const a = asArray(decodeCbor(body, limits), 'attach', 2);
  return {
    kind,
    version,
    phoneEphemeralKey: phoneEph,
    sharedSecret,
    cti: asBytes(a[0], 'cti', 16, 32),
    deviceSignature: asBytes(a[1], 'device signature', 64),
  };
}

/**
 * The presentation proof a receipt carries so the cloud can check the driver's device took
 * part in **this** session: the device signature and everything needed to recompute the
 * transcript it signs (version, the full signed hello, the phone's ephemeral key; the `cti`
 * comes from the voucher). With only a digest the cloud could not tell which voucher or hello
 * the signature was made for.
 */
export interface PresentationProof {
  readonly deviceSignature: Uint8Array;
  readonly version: number;
  readonly helloBytes: Uint8Array;
  readonly phoneEphemeralKey: Uint8Array;
}

/**
 * Checks the device signature over this connection's transcript with `deviceKey` (from the
 * voucher's `cnf`; high-S accepted) and, on success, derives the session channel.
 * @throws ProtocolError DEVICE_SIGNATURE_INVALID
 */
export async function acceptPresentation(
  crypto: CryptoProvider,
  handshake: GatewayHandshake,
  opened: OpenedPresentation,
  deviceKey: Uint8Array,
  cti: Uint8Array,
): Promise<{ channel: SecureChannel; proof: PresentationProof }> {
  const transcript = transcriptBytes(opened.version, handshake.hello.bytes, opened.phoneEphemeralKey, cti);
  const transcriptDigest = await crypto.sha256(transcript);
  const isToken = opened.kind === PresentationKind.TOKEN;
  const purpose = isToken ? DevicePurpose.TOKEN : DevicePurpose.ATTACH;
  const ok = await crypto.verifyP256(
    deviceKey,
    deviceSignedBytes(purpose, transcriptDigest),
    opened.deviceSignature,
  );
  // A failed attach is a stranger asking about someone else's session: say so.
  if (!ok) throw new ProtocolError(isToken ? ErrorCode.DEVICE_SIGNATURE_INVALID : ErrorCode.WRONG_DEVICE);
  const keys = await deriveSessionKeys(crypto, opened.sharedSecret, handshake.hello.body.nonce, transcript);
  return {
    channel: new SecureChannel(crypto, keys.gatewayToPhone, keys.phoneToGateway, transcriptDigest),
    proof: {
      deviceSignature: opened.deviceSignature,
      version: opened.version,
      helloBytes: handshake.hello.bytes,
      phoneEphemeralKey: opened.phoneEphemeralKey,
    },
  };
}

/**
 * The cloud's check of a receipt's presentation proof: the hello in it is signed by the
 * receipt's gateway key and names that gateway, and the voucher's device key signed the
 * transcript of that hello, that phone key, that version and the voucher's `cti`.
 */
export async function verifyPresentationProof(
  crypto: CryptoProvider,
  proof: PresentationProof,
  expected: {
    readonly deviceKey: Uint8Array;
    readonly cti: Uint8Array;
    readonly gatewayKey: Uint8Array;
    readonly gatewayId: string;
  },
): Promise<boolean> {
  try {
    const hello = parseHello(proof.helloBytes);
    if (
      hello.body.gatewayId !== expected.gatewayId ||
      !equalBytes(hello.body.gatewayKey, expected.gatewayKey)
    )
      return false;
    await verifySign1(
      crypto,
      hello.sign1,
      { alg: COSE_ALG_ES256, publicKey: expected.gatewayKey, requireLowS: true },
      ErrorCode.HELLO_SIGNATURE_INVALID,
    );
  } catch {
    return false;
  }
  const transcript = transcriptBytes(proof.version, proof.helloBytes, proof.phoneEphemeralKey, expected.cti);
  const digest = await crypto.sha256(transcript);
  return crypto.verifyP256(
    expected.deviceKey,
    deviceSignedBytes(DevicePurpose.TOKEN, digest),
    proof.deviceSignature,
  );
}

/** The phone's signature on a stop request: over this connection's transcript digest. */
export function signStopRequest(deviceKey: SigningKey, channel: SecureChannel): Promise<Uint8Array> {
  return deviceKey.sign(deviceSignedBytes(DevicePurpose.STOP, channel.transcriptDigest));
}

/** The gateway's check of a stop request; a stop from anyone but the session's device is WRONG_DEVICE. */
export async function verifyStopRequest(
  crypto: CryptoProvider,
  deviceKey: Uint8Array,
  channel: SecureChannel,
  signature: Uint8Array,
): Promise<void> {
  const ok = await crypto.verifyP256(
    deviceKey,
    deviceSignedBytes(DevicePurpose.STOP, channel.transcriptDigest),
    signature,
  );
  if (!ok) throw new ProtocolError(ErrorCode.WRONG_DEVICE, 'stop request not signed by the session device');
}

// ---- phone side -----------------------------------------------------------------------------

export interface PhonePresentation {
  /** The sealed envelope to write to the gateway. */
  readonly envelope: Uint8Array;
  readonly channel: SecureChannel;
  readonly version: number;
  readonly hello: Hello;
}

interface PhoneInputs {
  readonly helloBytes: Uint8Array;
  readonly deviceKey: SigningKey;
  /** Ephemeral key to use; fresh when omitted (vectors pin one). */
  readonly ephemeral?: EcdhKey;
}

async function presentFromPhone(
  crypto: CryptoProvider,
  inputs: PhoneInputs,
  kind: PresentationKind,
  voucher: VoucherClaims,
  body: (signature: Uint8Array) => CborValue,
): Promise<PhonePresentation> {
  const { gatewayId, gatewayKeyDigest, minVersion, cti } = voucher;
  const hello = parseHello(inputs.helloBytes);
  await verifyHello(crypto, hello, gatewayKeyDigest);
  if (hello.body.gatewayId !== gatewayId)
    throw new ProtocolError(ErrorCode.WRONG_GATEWAY, 'hello names another gateway');
  const version = Math.min(PROTOCOL_VERSION, hello.body.version);
  if (version < MIN_PROTOCOL_VERSION) throw new ProtocolError(ErrorCode.UNSUPPORTED_VERSION);
  if (version < minVersion) throw new ProtocolError(ErrorCode.VERSION_DOWNGRADE);
  const eph = inputs.ephemeral ?? (await crypto.generateEcdhKey());
  const sharedSecret = await eph.deriveSecret(hello.body.ephemeralKey);
  const transcript = transcriptBytes(version, hello.bytes, eph.publicKey, cti);
  const transcriptDigest = await crypto.sha256(transcript);
  const purpose = kind === PresentationKind.TOKEN ? DevicePurpose.TOKEN : DevicePurpose.ATTACH;
  const signature = await inputs.deviceKey.sign(deviceSignedBytes(purpose, transcriptDigest));
  const hk = await deriveHandshakeKey(
    crypto,
    sharedSecret,
    version,
    hello.body.nonce,
    hello.bytes,
    eph.publicKey,
  );
  const sealed = await crypto.aesGcmSeal(
    hk,
    ZERO_NONCE,
    envelopeAad(version, kind, eph.publicKey),
    encodeCbor(body(signature)),
  );
  const keys = await deriveSessionKeys(crypto, sharedSecret, hello.body.nonce, transcript);
  return {
    envelope: encodeCbor([version, kind, eph.publicKey, sealed]),
    channel: new SecureChannel(crypto, keys.phoneToGateway, keys.gatewayToPhone, transcriptDigest),
    version,
    hello,
  };
}

/** Builds the identification token for `voucher` at the gateway whose hello was read. */
export async function createTokenPresentation(
  crypto: CryptoProvider,
  inputs: PhoneInputs & {
    readonly voucherBytes: Uint8Array;
    readonly connector: number;
    readonly phoneTime?: number;
  },
): Promise<PhonePresentation> {
  const voucher = parseVoucher(inputs.voucherBytes);
  const c = voucher.claims;
  return presentFromPhone(crypto, inputs, PresentationKind.TOKEN, c, (sig) =>
    inputs.phoneTime === undefined
      ? [inputs.voucherBytes, inputs.connector, sig]
      : [inputs.voucherBytes, inputs.connector, sig, inputs.phoneTime],
  );
}

/** Builds an attach for the session of `voucherBytes` (same device key). */
export async function createAttachPresentation(
  crypto: CryptoProvider,
  inputs: PhoneInputs & { readonly voucherBytes: Uint8Array },
): Promise<PhonePresentation> {
  const c = parseVoucher(inputs.voucherBytes).claims;
  return presentFromPhone(crypto, inputs, PresentationKind.ATTACH, c, (sig) => [c.cti, sig]);
}
