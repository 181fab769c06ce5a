/**
 * The voucher ("pre-deduction information"): a CWT (RFC 8392) in COSE_Sign1, signed by an
 * issuer key of the cloud, that holds money for one target gateway and binds it to one
 * device key (`cnf`, RFC 8747). Its identity is its `cti`, never a hash of its bytes.
 *
 * Claims (integer keys): 1 iss, 2 sub (pseudonymous, per voucher), 4 exp, 5 nbf, 6 iat,
 * 7 cti, 8 cnf, and -65537 the PilePass claims map (private-use claim key). See
 * docs/protocol.md §Voucher for the CDDL.
 * @module
 */

import { asBytes, asClosedMap, asText, asUint, type CborValue, decodeCbor, encodeCbor } from '../cbor.ts';
import { decodeSign1, type Sign1, signSign1, verifySign1 } from '../cose.ts';
import type { CryptoProvider, SigningKey } from '../crypto/provider.ts';
import { ErrorCode, ensure, ProtocolError } from '../errors.ts';
import type { IssuerKeyring } from '../keyring.ts';
import type { Tariff } from '../tariff.ts';
import { MIN_PROTOCOL_VERSION } from '../version.ts';
import {
  decodeCoseKey,
  decodeGatewayId,
  decodeMoney,
  decodeTariff,
  decodeTime,
  encodeCoseKey,
  encodeMoney,
  encodeTariff,
  MAX_CONNECTOR,
  type Money,
} from './fields.ts';

/** Largest encoded voucher accepted. */
export const MAX_VOUCHER_BYTES = 600;
const ISSUER_PATTERN = /^[A-Za-z0-9.:_-]{1,32}$/;
const PILEPASS_CLAIMS = -65537;

export interface VoucherClaims {
  /** Issuer name (e.g. the operator's cloud id). */
  readonly issuer: string;
  /** Pseudonymous subject, random per voucher (8–16 bytes): unlinkable across stations. */
  readonly subject: Uint8Array;
  /** Issued at, Unix seconds on the cloud's clock. */
  readonly issuedAt: number;
  readonly notBefore: number;
  readonly expiresAt: number;
  /** Voucher id, 16–32 random bytes. */
  readonly cti: Uint8Array;
  /** The device key bound to this voucher, SEC1 compressed P-256. */
  readonly deviceKey: Uint8Array;
  /** Lowest protocol version this voucher may be presented with. */
  readonly minVersion: number;
  readonly gatewayId: string;
  /** Connector the hold is for; absent = any connector of the gateway. */
  readonly connector?: number | undefined;
  readonly hold: Money;
  readonly tariff: Tariff;
  /** SHA-256 of the target gateway's public key (SEC1 compressed). */
  readonly gatewayKeyDigest: Uint8Array;
}

export interface Voucher {
  /** The exact bytes as issued (what travels inside tokens). */
  readonly bytes: Uint8Array;
  readonly sign1: Sign1;
  readonly claims: VoucherClaims;
}

function encodeClaims(c: VoucherClaims): Uint8Array {
  const pp = new Map<number, CborValue>([
    [1, c.minVersion],
    [2, c.gatewayId],
    [4, encodeMoney(c.hold)],
    [5, encodeTariff(c.tariff)],
    [6, c.gatewayKeyDigest],
  ]);
  if (c.connector !== undefined) pp.set(3, c.connector);
  return encodeCbor(
    new Map<number, CborValue>([
      [1, c.issuer],
      [2, c.subject],
      [4, c.expiresAt],
      [5, c.notBefore],
      [6, c.issuedAt],
      [7, c.cti],
      [8, new Map([[1, encodeCoseKey(c.deviceKey)]])],
      [PILEPASS_CLAIMS, pp],
    ]),
  );
}

function decodeClaims(payload: Uint8Array): VoucherClaims {
  const m = asClosedMap(
    decodeCbor(payload, { maxBytes: MAX_VOUCHER_BYTES, maxDepth: 4, maxItems: 64 }),
    'voucher claims',
    [1, 2, 4, 5, 6, 7, 8, PILEPASS_CLAIMS],
  );
  for (const key of [1, 2, 4, 5, 6, 7, 8, PILEPASS_CLAIMS]) {
    ensure(m.has(key), ErrorCode.UNEXPECTED_TYPE, `voucher claim ${key} missing`);
  }
  const cnf = asClosedMap(m.get(8), 'cnf', [1]);
  const pp = asClosedMap(m.get(PILEPASS_CLAIMS), 'pilepass claims', [1, 2, 3, 4, 5, 6]);
  for (const key of [1, 2, 4, 5, 6])
    ensure(pp.has(key), ErrorCode.UNEXPECTED_TYPE, `pilepass claim ${key} missing`);
  const claims: VoucherClaims = {
    issuer: asText(m.get(1), 'iss', ISSUER_PATTERN, 32),
    subject: asBytes(m.get(2), 'sub', 8, 16),
    expiresAt: decodeTime(m.get(4), 'exp'),
    notBefore: decodeTime(m.get(5), 'nbf'),
    issuedAt: decodeTime(m.get(6), 'iat'),
    cti: asBytes(m.get(7), 'cti', 16, 32),
    deviceKey: decodeCoseKey(cnf.get(1), 'cnf.COSE_Key'),
    minVersion: asUint(pp.get(1), 'minv', 255),
    gatewayId: decodeGatewayId(pp.get(2)),
    connector: pp.has(3) ? asUint(pp.get(3), 'connector', MAX_CONNECTOR) : undefined,
    hold: decodeMoney(pp.get(4), 'hold'),
    tariff: decodeTariff(pp.get(5)),
    gatewayKeyDigest: asBytes(pp.get(6), 'gateway key digest', 32),
  };
  ensure(claims.minVersion >= MIN_PROTOCOL_VERSION, ErrorCode.UNEXPECTED_TYPE, 'minv below 1');
  ensure(claims.notBefore <= claims.expiresAt, ErrorCode.UNEXPECTED_TYPE, 'nbf after exp');
  ensure(claims.issuedAt <= claims.expiresAt, ErrorCode.UNEXPECTED_TYPE, 'iat after exp');
  ensure(claims.hold.amount > 0, ErrorCode.UNEXPECTED_TYPE, 'hold must be positive');
  return claims;
}

/** Signs a voucher with an issuer key (low-S). */
export async function issueVoucher(
  issuerKey: SigningKey,
  kid: Uint8Array,
  claims: VoucherClaims,
): Promise<Voucher> {
  const bytes = await signSign1(issuerKey, kid, encodeClaims(claims));
  return parseVoucher(bytes);
}

/** Parses a voucher's structure and claims (canonical only); does not verify the signature. */
export function parseVoucher(bytes: Uint8Array): Voucher {
  const sign1 = decodeSign1(bytes, { maxBytes: MAX_VOUCHER_BYTES, maxDepth: 2, maxItems: 8 });
  return { bytes, sign1, claims: decodeClaims(sign1.payload) };
}

/**
 * Checks the issuer signature against the keyring: known kid, kid not revoked, algorithm is
 * the kid's, low-S, signature valid, and `iat` within the key's validity.
 */
export async function verifyVoucherSignature(
  crypto: CryptoProvider,
  voucher: Voucher,
  keyring: IssuerKeyring,
): Promise<void> {
  const found = keyring.lookup(voucher.sign1.kid);
  if (found.status === 'unknown') throw new ProtocolError(ErrorCode.UNKNOWN_KID);
  if (found.status === 'revoked') throw new ProtocolError(ErrorCode.ISSUER_KEY_REVOKED);
  const key = found.key;
  await verifySign1(
    crypto,
    voucher.sign1,
    { alg: key.alg, publicKey: key.publicKey, requireLowS: true },
    ErrorCode.ISSUER_SIGNATURE_INVALID,
  );
  const iat = voucher.claims.issuedAt;
  if (iat < key.notBefore || iat > key.notAfter) throw new ProtocolError(ErrorCode.ISSUER_KEY_NOT_VALID);
}

/** `nbf`/`exp` against a clock (Unix s) with a tolerance for clock error either way. */
export function checkVoucherTime(claims: VoucherClaims, nowSeconds: number, toleranceSeconds: number): void {
  if (nowSeconds + toleranceSeconds < claims.notBefore)
    throw new ProtocolError(ErrorCode.VOUCHER_NOT_YET_VALID);
  if (nowSeconds - toleranceSeconds >= claims.expiresAt) throw new ProtocolError(ErrorCode.VOUCHER_EXPIRED);
}

/** The voucher targets this gateway and, when it names one, this connector. */
export function checkVoucherTarget(claims: VoucherClaims, gatewayId: string, connector: number): void {
  if (claims.gatewayId !== gatewayId) throw new ProtocolError(ErrorCode.WRONG_GATEWAY);
  if (claims.connector !== undefined && claims.connector !== connector)
    throw new ProtocolError(ErrorCode.WRONG_CONNECTOR);
}
