/**
 * A small, complete PilePass world for tests, vectors, benchmarks and the protocol demo:
 * root, issuer and gateway keys, a root-signed bundle, and helpers to issue vouchers and run
 * a presentation. With `seed` every key is derived from it, so vectors are reproducible.
 */

import { sha256 } from '@noble/hashes/sha2.js';
import {
  type AuthorizationContext,
  type Bundle,
  ConnectorState,
  type CryptoProvider,
  createGatewayHandshake,
  ErrorCode,
  type GatewayHandshake,
  IssuerKeyring,
  issueVoucher,
  keyringFromBundle,
  type SigningKey,
  signBundle,
  type Tariff,
  utf8,
  type Voucher,
  type VoucherClaims,
} from '../../shared/src/index.ts';

export const T0 = 1_795_000_000; // 2026-11-17T09:46:40Z, a fixed "now" for reproducible worlds
export const GATEWAY_ID = 'gw-demo-01';
export const TARIFF: Tariff = { energyPrice: 1_200_000, serviceFee: 400_000, timeFee: 0 }; // 1.20 + 0.40 CNY per kWh

export interface World {
  readonly crypto: CryptoProvider;
  readonly root: { readonly key: SigningKey; readonly kid: Uint8Array };
  readonly issuer: { readonly key: SigningKey; readonly kid: Uint8Array };
  readonly gateway: {
    readonly key: SigningKey;
    readonly kid: Uint8Array;
    readonly id: string;
    readonly keyDigest: Uint8Array;
  };
  readonly bundle: Bundle;
  readonly keyring: IssuerKeyring;
  readonly seed: string | undefined;
}

/** 32-byte scalar derived from a seed and a label (valid for P-256 with overwhelming odds). */
export function derivedScalar(seed: string, label: string): Uint8Array {
  return sha256(utf8(`${seed}/${label}`));
}

async function keyFor(crypto: CryptoProvider, seed: string | undefined, label: string): Promise<SigningKey> {
  return seed === undefined
    ? crypto.generateSigningKey()
    : crypto.importSigningKey(derivedScalar(seed, label));
}

export async function buildWorld(crypto: CryptoProvider, seed?: string): Promise<World> {
  const root = { key: await keyFor(crypto, seed, 'root'), kid: Uint8Array.of(0x52, 0x01) };
  const issuer = { key: await keyFor(crypto, seed, 'issuer'), kid: Uint8Array.of(0x49, 0x01) };
  const gatewayKey = await keyFor(crypto, seed, 'gateway');
  const keyDigest = await crypto.sha256(gatewayKey.publicKey);
  const gateway = { key: gatewayKey, kid: keyDigest.slice(0, 8), id: GATEWAY_ID, keyDigest };
  const bundle = await signBundle(root.key, root.kid, {
    version: 1,
    issuedAt: T0 - 3_600,
    issuers: [
      {
        kid: issuer.kid,
        alg: -7,
        publicKey: issuer.key.publicKey,
        notBefore: T0 - 86_400,
        notAfter: T0 + 365 * 86_400,
      },
    ],
    revokedKids: [],
    revokedVouchers: [],
    tariffs: [{ gatewayId: GATEWAY_ID, tariff: TARIFF }],
    audience: [],
    receiptAcks: [],
  });
  return { crypto, root, issuer, gateway, bundle, keyring: keyringFromBundle(bundle), seed };
}

export interface IssuedVoucher {
  readonly voucher: Voucher;
  readonly deviceKey: SigningKey;
}

let counter = 0;
/** Issues a voucher for the world's gateway bound to a fresh (or seeded) device key. */
export async function issueTestVoucher(
  world: World,
  overrides: Partial<VoucherClaims> = {},
  options: { issuerKey?: SigningKey; kid?: Uint8Array; deviceKey?: SigningKey; label?: string } = {},
): Promise<IssuedVoucher> {
  const label = options.label ?? `voucher-${counter++}`;
  const deviceKey = options.deviceKey ?? (await keyFor(world.crypto, world.seed, `${label}/device`));
  const random = (n: number, what: string) =>
    world.seed === undefined
      ? world.crypto.randomBytes(n)
      : derivedScalar(world.seed, `${label}/${what}`).slice(0, n);
  const claims: VoucherClaims = {
    issuer: 'pilepass',
    subject: random(8, 'sub'),
    issuedAt: T0,
    notBefore: T0,
    expiresAt: T0 + 7 * 86_400,
    cti: random(16, 'cti'),
    deviceKey: deviceKey.publicKey,
    minVersion: 1,
    gatewayId: GATEWAY_ID,
    connector: 1,
    hold: { amount: 5_000, currency: 'CNY' },
    tariff: TARIFF,
    gatewayKeyDigest: world.gateway.keyDigest,
    ...overrides,
  };
  const voucher = await issueVoucher(
    options.issuerKey ?? world.issuer.key,
    options.kid ?? world.issuer.kid,
    claims,
  );
  return { voucher, deviceKey };
}

export async function newHandshake(world: World, label?: string): Promise<GatewayHandshake> {
  const seeded = world.seed !== undefined && label !== undefined;
  return createGatewayHandshake(
    world.crypto,
    world.gateway.key,
    {
      gatewayId: world.gateway.id,
      connectors: [
        { id: 1, state: ConnectorState.AVAILABLE },
        { id: 2, state: ConnectorState.PREPARING },
      ],
      gatewayTime: T0 + 60,
    },
    seeded ? await world.crypto.importEcdhKey(derivedScalar(world.seed!, `${label}/gateway-eph`)) : undefined,
    seeded ? derivedScalar(world.seed!, `${label}/nonce`).slice(0, 16) : undefined,
  );
}

export { IssuerKeyring };

/**
 * A gateway-side authorization context for this world with nothing spent or revoked and the
 * working clock at T0 + 60 (lifted by `iat`); the hello is single use unless `reusableHello`.
 */
export function simpleAuthorizationContext(
  world: World,
  options: { crypto?: CryptoProvider; reusableHello?: boolean } = {},
): AuthorizationContext {
  let helloUsed = false;
  return {
    crypto: options.crypto ?? world.crypto,
    keyring: world.keyring,
    gatewayId: world.gateway.id,
    toleranceSeconds: 300,
    minimumAmount: 100,
    currency: 'CNY',
    observeIssuedAt: (iat) => Math.max(iat, T0 + 60),
    isSpent: () => false,
    isRevoked: () => false,
    consumeHello: () => {
      if (helloUsed && !options.reusableHello) return { ok: false, code: ErrorCode.HELLO_REUSED };
      helloUsed = true;
      return { ok: true };
    },
  };
}
