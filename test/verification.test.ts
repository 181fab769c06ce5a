/**
 * The gateway's token authorization (shared/src/authorize.ts): a valid token passes, and each
 * check fails **alone** with its own error code — every other input stays valid, so a test
 * cannot pass because some earlier check happened to reject it.
 */

import { describe, expect, it } from 'vitest';
import { nodeCrypto } from '../shared/src/crypto/node.ts';
import {
  type AuthorizationContext,
  authorizeToken,
  type CborValue,
  createTokenPresentation,
  ErrorCode,
  encodeCbor,
  equalBytes,
  type GatewayHandshake,
  IssuerKeyring,
  type OpenedToken,
  openPresentation,
  PresentationKind,
  ProtocolError,
  parseBundle,
  parseVoucher,
  revocationHash,
  signBundle,
  toHighS,
  verifyBundle,
} from '../shared/src/index.ts';
import { rogueToken, signWithHeader } from './support/rogue.ts';
import { buildWorld, issueTestVoucher, newHandshake, T0, type World } from './support/world.ts';

const crypto = nodeCrypto;
const world: World = await buildWorld(crypto);

interface Knobs {
  now?: number;
  tolerance?: number;
  keyring?: IssuerKeyring;
  spent?: Uint8Array[];
  revoked?: Uint8Array[];
  minimumAmount?: number;
  helloAgeSeconds?: number;
}

function context(knobs: Knobs = {}): AuthorizationContext & { floor: number } {
  let helloUsed = false;
  const ctx = {
    crypto,
    keyring: knobs.keyring ?? world.keyring,
    gatewayId: world.gateway.id,
    toleranceSeconds: knobs.tolerance ?? 300,
    minimumAmount: knobs.minimumAmount ?? 100,
    currency: 'CNY',
    floor: knobs.now ?? T0 + 60,
    observeIssuedAt(iat: number) {
      ctx.floor = Math.max(ctx.floor, iat);
      return ctx.floor;
    },
    isSpent: (cti: Uint8Array) => (knobs.spent ?? []).some((s) => equalBytes(s, cti)),
    isRevoked: (h: Uint8Array) => (knobs.revoked ?? []).some((s) => equalBytes(s, h)),
    consumeHello() {
      if ((knobs.helloAgeSeconds ?? 0) > 30) return { ok: false as const, code: ErrorCode.HELLO_EXPIRED };
      if (helloUsed) return { ok: false as const, code: ErrorCode.HELLO_REUSED };
      helloUsed = true;
      return { ok: true as const };
    },
  };
  return ctx;
}

async function present(envelope: Uint8Array, handshake: GatewayHandshake, knobs?: Knobs) {
  const opened = await openPresentation(crypto, handshake, envelope);
  if (opened.kind !== PresentationKind.TOKEN) throw new Error('token expected');
  return authorizeToken(context(knobs), handshake, opened as OpenedToken);
}

async function honestTap(
  overrides: Parameters<typeof issueTestVoucher>[1] = {},
  connector = 1,
  issueOptions = {},
) {
  const { voucher, deviceKey } = await issueTestVoucher(world, overrides, issueOptions);
  const handshake = await newHandshake(world);
  const phone = await createTokenPresentation(crypto, {
    helloBytes: handshake.hello.bytes,
    voucherBytes: voucher.bytes,
    deviceKey,
    connector,
  });
  return { voucher, deviceKey, handshake, envelope: phone.envelope, phone };
}

async function expectCode(promise: Promise<unknown>, code: number) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ProtocolError ${code}`).toBeInstanceOf(ProtocolError);
  expect((err as ProtocolError).code).toBe(code);
}

describe('token authorization: the honest path', () => {
  it('accepts a valid token and both sides share a working channel', async () => {
    const tap = await honestTap();
    const auth = await present(tap.envelope, tap.handshake);
    expect(equalBytes(auth.voucher.claims.cti, tap.voucher.claims.cti)).toBe(true);
    expect(auth.connector).toBe(1);
    const frame = await auth.channel.seal(Uint8Array.of(1, 2, 3));
    expect(await tap.phone.channel.open(frame)).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('accepts a high-S device signature (WebCrypto emits them half the time)', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const handshake = await newHandshake(world);
    const envelope = await rogueToken(crypto, handshake.hello, voucher, deviceKey, {
      signature: async (b) => toHighS(await deviceKey.sign(b)),
    });
    await expect(present(envelope, handshake)).resolves.toBeDefined();
  });

  it('accepts a voucher without a connector on any connector', async () => {
    const tap = await honestTap({ connector: undefined }, 2);
    const auth = await present(tap.envelope, tap.handshake);
    expect(auth.connector).toBe(2);
  });
});

describe('token authorization: each check failing alone', () => {
  it('issuer signature invalid (voucher signed by another key under the issuer kid)', async () => {
    const impostor = await crypto.generateSigningKey();
    const tap = await honestTap({}, 1, { issuerKey: impostor });
    await expectCode(present(tap.envelope, tap.handshake), ErrorCode.ISSUER_SIGNATURE_INVALID);
  });

  it('unknown kid', async () => {
    const tap = await honestTap({}, 1, { kid: Uint8Array.of(0x49, 0x99) });
    await expectCode(present(tap.envelope, tap.handshake), ErrorCode.UNKNOWN_KID);
  });

  it('revoked kid', async () => {
    const tap = await honestTap();
    const keyring = new IssuerKeyring(world.bundle.body.issuers, [world.issuer.kid]);
    await expectCode(present(tap.envelope, tap.handshake, { keyring }), ErrorCode.ISSUER_KEY_REVOKED);
  });

  it("algorithm not the kid's (ES384 in the header, valid ES256 signature)", async () => {
    const honest = await issueTestVoucher(world);
    const header = new Map<number, CborValue>([
      [1, -35],
      [4, world.issuer.kid],
    ]);
    const forged = parseVoucher(await signWithHeader(world.issuer.key, header, honest.voucher.sign1.payload));
    const handshake = await newHandshake(world);
    const envelope = await rogueToken(crypto, handshake.hello, forged, honest.deviceKey);
    await expectCode(present(envelope, handshake), ErrorCode.ALGORITHM_MISMATCH);
  });

  it('high-S issuer signature (the malleated twin of a valid signature)', async () => {
    const honest = await issueTestVoucher(world);
    const s1 = honest.voucher.sign1;
    const twin = parseVoucher(encodeCbor([s1.protectedBytes, new Map(), s1.payload, toHighS(s1.signature)]));
    // The twin is a valid ECDSA signature: only the low-S rule refuses it.
    const tbs = encodeCbor(['Signature1', s1.protectedBytes, new Uint8Array(0), s1.payload]);
    expect(await crypto.verifyP256(world.issuer.key.publicKey, tbs, twin.sign1.signature)).toBe(true);
    const handshake = await newHandshake(world);
    const envelope = await rogueToken(crypto, handshake.hello, twin, honest.deviceKey);
    await expectCode(present(envelope, handshake), ErrorCode.SIGNATURE_HIGH_S);
  });

  it('issuer key not valid when the voucher was issued', async () => {
    const tap = await honestTap({ issuedAt: T0 - 2 * 86_400, notBefore: T0 - 2 * 86_400 });
    await expectCode(present(tap.envelope, tap.handshake), ErrorCode.ISSUER_KEY_NOT_VALID);
  });

  it('expired, with the tolerance deciding at the boundary', async () => {
    const tap = await honestTap({ expiresAt: T0 + 1_000 });
    await expectCode(present(tap.envelope, tap.handshake, { now: T0 + 1_400 }), ErrorCode.VOUCHER_EXPIRED);
    const again = await honestTap({ expiresAt: T0 + 1_000 });
    await expect(present(again.envelope, again.handshake, { now: T0 + 1_299 })).resolves.toBeDefined();
    const strict = await honestTap({ expiresAt: T0 + 1_000 });
    await expectCode(
      present(strict.envelope, strict.handshake, { now: T0 + 1_299, tolerance: 0 }),
      ErrorCode.VOUCHER_EXPIRED,
    );
  });

  it('not yet valid, with the tolerance deciding at the boundary', async () => {
    const tap = await honestTap({ notBefore: T0 + 1_000 });
    await expectCode(
      present(tap.envelope, tap.handshake, { now: T0 + 600 }),
      ErrorCode.VOUCHER_NOT_YET_VALID,
    );
    const ok = await honestTap({ notBefore: T0 + 1_000 });
    await expect(present(ok.envelope, ok.handshake, { now: T0 + 700 })).resolves.toBeDefined();
  });

  it('a cold start with the clock days behind is lifted by the voucher iat, not deadlocked', async () => {
    const tap = await honestTap();
    const auth = await present(tap.envelope, tap.handshake, { now: T0 - 5 * 86_400, tolerance: 0 });
    expect(auth).toBeDefined();
  });

  it('wrong gateway (the honest phone refuses first; the gateway refuses a phone that does not)', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world, { gatewayId: 'gw-other' });
    const handshake = await newHandshake(world);
    await expectCode(
      createTokenPresentation(crypto, {
        helloBytes: handshake.hello.bytes,
        voucherBytes: voucher.bytes,
        deviceKey,
        connector: 1,
      }),
      ErrorCode.WRONG_GATEWAY,
    );
    const envelope = await rogueToken(crypto, handshake.hello, voucher, deviceKey);
    await expectCode(present(envelope, handshake), ErrorCode.WRONG_GATEWAY);
  });

  it('wrong connector', async () => {
    const tap = await honestTap({ connector: 2 }, 1);
    await expectCode(present(tap.envelope, tap.handshake), ErrorCode.WRONG_CONNECTOR);
  });

  it('downgraded version (token v1 for a voucher that requires v2)', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world, { minVersion: 2 });
    const handshake = await newHandshake(world);
    // The honest phone refuses to downgrade by itself…
    await expectCode(
      createTokenPresentation(crypto, {
        helloBytes: handshake.hello.bytes,
        voucherBytes: voucher.bytes,
        deviceKey,
        connector: 1,
      }),
      ErrorCode.VERSION_DOWNGRADE,
    );
    // …and the gateway refuses a phone that tries.
    const envelope = await rogueToken(crypto, handshake.hello, voucher, deviceKey, { version: 1 });
    await expectCode(present(envelope, handshake), ErrorCode.VERSION_DOWNGRADE);
  });

  it('a version above the hello is unsupported', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const handshake = await newHandshake(world);
    const envelope = await rogueToken(crypto, handshake.hello, voucher, deviceKey, { version: 2 });
    await expectCode(present(envelope, handshake), ErrorCode.UNSUPPORTED_VERSION);
  });

  it('voucher already spent', async () => {
    const tap = await honestTap();
    await expectCode(
      present(tap.envelope, tap.handshake, { spent: [tap.voucher.claims.cti] }),
      ErrorCode.VOUCHER_SPENT,
    );
  });

  it('voucher revoked by H(cti)', async () => {
    const tap = await honestTap();
    const revoked = [await revocationHash(crypto, tap.voucher.claims.cti)];
    await expectCode(present(tap.envelope, tap.handshake, { revoked }), ErrorCode.VOUCHER_REVOKED);
  });

  it('wrong device signature (another key signed the transcript)', async () => {
    const { voucher } = await issueTestVoucher(world);
    const thief = await crypto.generateSigningKey();
    const handshake = await newHandshake(world);
    const envelope = await rogueToken(crypto, handshake.hello, voucher, thief);
    await expectCode(present(envelope, handshake), ErrorCode.DEVICE_SIGNATURE_INVALID);
  });

  it('transcript bound to another hello (signature from a recorded session)', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const earlier = await newHandshake(world);
    const now = await newHandshake(world);
    const envelope = await rogueToken(crypto, now.hello, voucher, deviceKey, { signedHello: earlier.hello });
    await expectCode(present(envelope, now), ErrorCode.DEVICE_SIGNATURE_INVALID);
  });

  it('a whole token replayed on a new connection does not even decrypt', async () => {
    const tap = await honestTap();
    await present(tap.envelope, tap.handshake);
    const next = await newHandshake(world);
    await expectCode(present(tap.envelope, next), ErrorCode.DECRYPT_FAILED);
  });

  it('hello used twice, and hello expired', async () => {
    const tap = await honestTap();
    const opened = (await openPresentation(crypto, tap.handshake, tap.envelope)) as OpenedToken;
    const ctx = context();
    await authorizeToken(ctx, tap.handshake, opened);
    await expectCode(authorizeToken(ctx, tap.handshake, opened), ErrorCode.HELLO_REUSED);
    const late = await honestTap();
    await expectCode(
      present(late.envelope, late.handshake, { helloAgeSeconds: 31 }),
      ErrorCode.HELLO_EXPIRED,
    );
  });

  it('amount below the station minimum', async () => {
    const tap = await honestTap({ hold: { amount: 99, currency: 'CNY' } });
    await expectCode(present(tap.envelope, tap.handshake), ErrorCode.AMOUNT_TOO_LOW);
  });

  it("currency not the station's", async () => {
    const usd = await honestTap({ hold: { amount: 5_000, currency: 'USD' } });
    await expectCode(present(usd.envelope, usd.handshake), ErrorCode.CURRENCY_MISMATCH);
  });

  it('phone refuses a hello from a device that is not the voucher target (clone)', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const clone = await buildWorld(crypto); // same gateway id, different key
    const handshake = await newHandshake(clone);
    await expectCode(
      createTokenPresentation(crypto, {
        helloBytes: handshake.hello.bytes,
        voucherBytes: voucher.bytes,
        deviceKey,
        connector: 1,
      }),
      ErrorCode.HELLO_SIGNATURE_INVALID,
    );
  });
});

describe('sync bundle: each check failing alone', () => {
  const root = { kid: world.root.kid, publicKey: world.root.key.publicKey };
  const body = world.bundle.body;

  it('installs a newer bundle from the pinned root', async () => {
    const b2 = await signBundle(world.root.key, world.root.kid, { ...body, version: 2 });
    await expect(
      verifyBundle(crypto, b2, root, { installedVersion: 1, gatewayId: world.gateway.id }),
    ).resolves.toEqual({
      cloudTimeTrusted: false,
    });
  });

  it('older (or equal) bundle version refused', async () => {
    await expectCode(
      verifyBundle(crypto, world.bundle, root, { installedVersion: 1, gatewayId: world.gateway.id }),
      ErrorCode.BUNDLE_OUTDATED,
    );
    await expectCode(
      verifyBundle(crypto, world.bundle, root, { installedVersion: 5, gatewayId: world.gateway.id }),
      ErrorCode.BUNDLE_OUTDATED,
    );
  });

  it('bundle not signed by the pinned root (another key under the root kid)', async () => {
    const impostor = await crypto.generateSigningKey();
    const forged = await signBundle(impostor, world.root.kid, { ...body, version: 9 });
    await expectCode(
      verifyBundle(crypto, forged, root, { installedVersion: 1, gatewayId: world.gateway.id }),
      ErrorCode.BUNDLE_SIGNATURE_INVALID,
    );
  });

  it('bundle signed by an issuer key (right key type, wrong role) refused', async () => {
    const forged = await signBundle(world.issuer.key, world.issuer.kid, { ...body, version: 9 });
    await expectCode(
      verifyBundle(crypto, forged, root, { installedVersion: 1, gatewayId: world.gateway.id }),
      ErrorCode.BUNDLE_SIGNATURE_INVALID,
    );
  });

  it('high-S root signature refused', async () => {
    const b = await signBundle(world.root.key, world.root.kid, { ...body, version: 3 });
    const twin = parseBundle(
      encodeCbor([b.sign1.protectedBytes, new Map(), b.sign1.payload, toHighS(b.sign1.signature)]),
    );
    await expectCode(
      verifyBundle(crypto, twin, root, { installedVersion: 1, gatewayId: world.gateway.id }),
      ErrorCode.SIGNATURE_HIGH_S,
    );
  });

  it('bundle for other gateways refused', async () => {
    const b = await signBundle(world.root.key, world.root.kid, {
      ...body,
      version: 4,
      audience: ['gw-elsewhere'],
    });
    await expectCode(
      verifyBundle(crypto, b, root, { installedVersion: 1, gatewayId: world.gateway.id }),
      ErrorCode.BUNDLE_WRONG_AUDIENCE,
    );
  });

  it('live fetch: only a bundle bound to this request nonce is trusted as time', async () => {
    const nonce = crypto.randomBytes(16);
    const bound = await signBundle(world.root.key, world.root.kid, {
      ...body,
      version: 5,
      binding: { gatewayNonce: nonce, gatewayId: world.gateway.id },
    });
    const acceptance = { installedVersion: 1, gatewayId: world.gateway.id, pendingNonce: nonce };
    await expect(verifyBundle(crypto, bound, root, acceptance)).resolves.toEqual({ cloudTimeTrusted: true });
    await expectCode(
      verifyBundle(crypto, bound, root, { ...acceptance, pendingNonce: crypto.randomBytes(16) }),
      ErrorCode.BUNDLE_NONCE_MISMATCH,
    );
    const unbound = await signBundle(world.root.key, world.root.kid, { ...body, version: 6 });
    await expectCode(verifyBundle(crypto, unbound, root, acceptance), ErrorCode.BUNDLE_NONCE_MISMATCH);
    // Carried by a phone, the same bound bundle installs but its time is not trusted.
    await expect(
      verifyBundle(crypto, bound, root, { installedVersion: 1, gatewayId: world.gateway.id }),
    ).resolves.toEqual({
      cloudTimeTrusted: false,
    });
  });
});
