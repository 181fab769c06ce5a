/**
 * Checks every vector in test/vectors against one CryptoProvider. Pure (no Node APIs), so the
 * same checks run in Node for node:crypto, noble and Node's WebCrypto, and in real Chromium
 * for the browser's WebCrypto. Returns one result per check instead of throwing, so a report
 * shows every failure at once.
 */

import {
  type AuthorizationContext,
  acceptPresentation,
  authorizeToken,
  type CryptoProvider,
  chargedAmount,
  computeFee,
  createTokenPresentation,
  DevicePurpose,
  decodeCbor,
  deviceSignedBytes,
  equalBytes,
  fromHex,
  isLowS,
  issueVoucher,
  keyringFromBundle,
  openPresentation,
  PresentationKind,
  ProtocolError,
  parseBundle,
  parseHello,
  parseReceipt,
  parseReport,
  parseVoucher,
  receiptHash,
  revocationHash,
  type Tariff,
  toHex,
  verifyBundle,
  verifyHello,
  verifyPresentationProof,
  verifyReceipt,
  verifyReport,
  verifyVoucherSignature,
} from '../../shared/src/index.ts';

// biome-ignore lint/suspicious/noExplicitAny: vectors are JSON read at run time
export type Vectors = Record<string, any>;

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail?: string;
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

function sameHex(actual: Uint8Array, expectedHex: string, what: string): void {
  assert(toHex(actual) === expectedHex, `${what}: got ${toHex(actual)}, expected ${expectedHex}`);
}

async function expectCode(
  promise: Promise<unknown> | (() => unknown),
  code: number,
  what: string,
): Promise<void> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (err) {
    assert(err instanceof ProtocolError, `${what}: threw a non-protocol error ${String(err)}`);
    assert(err.code === code, `${what}: code ${err.code}, expected ${code}`);
    return;
  }
  throw new Error(`${what}: accepted, expected error ${code}`);
}

export async function checkAllVectors(crypto: CryptoProvider, v: Vectors): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const run = async (name: string, fn: () => Promise<void> | void) => {
    try {
      await fn();
      results.push({ name, ok: true });
    } catch (err) {
      results.push({ name, ok: false, detail: err instanceof Error ? err.message : String(err) });
    }
  };

  const keys = v.keys;
  const root = { kid: fromHex(keys.root.kid), publicKey: fromHex(keys.root.publicKey) };
  const gatewayPub = fromHex(keys.gateway.publicKey);
  const devicePub = fromHex(keys.device.publicKey);
  const bundle1 = parseBundle(fromHex(v.bundle.v1));
  const keyring = keyringFromBundle(bundle1);
  const voucher = parseVoucher(fromHex(v.voucher.bytes));
  const helloBytes = fromHex(v.hello.bytes);

  await run('keys: public keys derive from private keys', async () => {
    for (const role of ['root', 'issuer', 'gateway', 'device'] as const) {
      const key = await crypto.importSigningKey(fromHex(keys[role].privateKey));
      sameHex(key.publicKey, keys[role].publicKey, role);
    }
    sameHex(await crypto.sha256(gatewayPub), keys.gateway.keyDigest, 'gateway key digest');
  });

  await run('bundle v1: root signature verifies and installs', async () => {
    const r = await verifyBundle(crypto, bundle1, root, {
      installedVersion: undefined,
      gatewayId: keys.gateway.id,
    });
    assert(!r.cloudTimeTrusted, 'a bundle read without a nonce must not be trusted as time');
  });

  await run('bundle v2: live-bound to its nonce, revocation listed, v1 refused after it', async () => {
    const b2 = parseBundle(fromHex(v.bundle.v2));
    const r = await verifyBundle(crypto, b2, root, {
      installedVersion: 1,
      gatewayId: keys.gateway.id,
      pendingNonce: fromHex(v.bundle.v2Nonce),
    });
    assert(r.cloudTimeTrusted, 'nonce-bound cloud time must be trusted');
    const h = await revocationHash(crypto, fromHex(v.bundle.revokedCti));
    assert(
      b2.body.revokedVouchers.some((x) => equalBytes(x, h)),
      'revocation hash missing',
    );
    await expectCode(
      verifyBundle(crypto, bundle1, root, { installedVersion: 2, gatewayId: keys.gateway.id }),
      601,
      'older bundle',
    );
    await expectCode(
      verifyBundle(crypto, b2, root, {
        installedVersion: 1,
        gatewayId: keys.gateway.id,
        pendingNonce: new Uint8Array(16),
      }),
      603,
      'bundle for another nonce',
    );
  });

  await run('voucher: claims decode as stated', () => {
    const c = voucher.claims;
    const e = v.voucher.claims;
    assert(c.issuer === e.issuer && c.gatewayId === e.gatewayId && c.connector === e.connector, 'names');
    assert(c.issuedAt === e.issuedAt && c.notBefore === e.notBefore && c.expiresAt === e.expiresAt, 'times');
    assert(c.hold.amount === e.hold.amount && c.hold.currency === e.hold.currency, 'hold');
    assert(JSON.stringify(c.tariff) === JSON.stringify(e.tariff), 'tariff');
    sameHex(c.cti, e.cti, 'cti');
    sameHex(c.subject, e.subject, 'sub');
    sameHex(c.deviceKey, e.deviceKey, 'cnf');
    sameHex(c.gatewayKeyDigest, e.gatewayKeyDigest, 'gkd');
  });

  await run('voucher: issuer signature verifies (low-S) and revocation hash matches', async () => {
    await verifyVoucherSignature(crypto, voucher, keyring);
    assert(isLowS(voucher.sign1.signature), 'issuer signature must be low-S');
    sameHex(await revocationHash(crypto, voucher.claims.cti), v.voucher.revocationHash, 'revocation hash');
  });

  await run('voucher: this implementation signs one the others accept', async () => {
    const issuer = await crypto.importSigningKey(fromHex(keys.issuer.privateKey));
    const again = await issueVoucher(issuer, fromHex(keys.issuer.kid), voucher.claims);
    assert(isLowS(again.sign1.signature), 'emitted issuer signature must be low-S');
    assert(equalBytes(again.sign1.payload, voucher.sign1.payload), 'payload must be byte-identical');
    await verifyVoucherSignature(crypto, again, keyring);
  });

  await run('hello: decodes and verifies against the voucher key digest', async () => {
    const hello = parseHello(helloBytes);
    sameHex(hello.body.nonce, v.hello.body.nonce, 'nonce');
    sameHex(hello.body.ephemeralKey, v.hello.body.ephemeralKey, 'ephemeral key');
    assert(hello.body.gatewayTime === v.hello.body.gatewayTime, 'gateway time');
    await verifyHello(crypto, hello, voucher.claims.gatewayKeyDigest);
    await expectCode(verifyHello(crypto, hello, new Uint8Array(32)), 305, 'hello for another key digest');
  });

  const gatewayHandshake = async (helloHex: string, ephHex: string) => ({
    hello: parseHello(fromHex(helloHex)),
    ephemeral: await crypto.importEcdhKey(fromHex(ephHex)),
  });

  await run('token: gateway opens, authorizes, and derives the pinned session keys', async () => {
    const handshake = await gatewayHandshake(v.hello.bytes, v.hello.gatewayEphemeralPrivateKey);
    const opened = await openPresentation(crypto, handshake, fromHex(v.token.envelope));
    assert(opened.kind === PresentationKind.TOKEN, 'kind');
    assert(equalBytes(opened.voucher.bytes, voucher.bytes), 'voucher inside token');
    assert(opened.connector === v.token.connector, 'connector');
    sameHex(opened.deviceSignature, v.token.deviceSignature, 'device signature');
    let used = false;
    const ctx: AuthorizationContext = {
      crypto,
      keyring,
      gatewayId: keys.gateway.id,
      toleranceSeconds: 300,
      minimumAmount: 100,
      currency: 'CNY',
      observeIssuedAt: (iat) => Math.max(iat, v.hello.body.gatewayTime),
      isSpent: () => false,
      isRevoked: () => false,
      consumeHello: () => {
        if (used) return { ok: false, code: 304 };
        used = true;
        return { ok: true };
      },
    };
    const auth = await authorizeToken(ctx, handshake, opened);
    sameHex(auth.channel.transcriptDigest, v.token.transcriptDigest, 'transcript digest');
    const stop = await auth.channel.open(fromHex(v.token.stopFrame.frame));
    sameHex(stop, v.token.stopFrame.plaintext, 'stop plaintext');
    const ok = await crypto.verifyP256(
      devicePub,
      fromHex(v.token.stopSignedBytes),
      stop.subarray(stop.length - 64),
    );
    assert(ok, 'stop signature');
    sameHex(
      await auth.channel.seal(fromHex(v.token.statusFrame.plaintext)),
      v.token.statusFrame.frame,
      'status frame',
    );
    await expectCode(authorizeToken(ctx, handshake, opened), 304, 'second use of the hello');
  });

  await run('token: phone side builds a token the vector gateway accepts', async () => {
    const deviceKey = await crypto.importSigningKey(fromHex(keys.device.privateKey));
    const phone = await createTokenPresentation(crypto, {
      helloBytes,
      voucherBytes: voucher.bytes,
      deviceKey,
      connector: v.token.connector,
      ephemeral: await crypto.importEcdhKey(fromHex(v.token.phoneEphemeralPrivateKey)),
    });
    // Deterministic providers reproduce the exact bytes; randomized ECDSA differs only there.
    if (crypto.name === 'noble') sameHex(phone.envelope, v.token.envelope, 'envelope');
    sameHex(phone.channel.transcriptDigest, v.token.transcriptDigest, 'transcript digest');
    sameHex(
      await phone.channel.open(fromHex(v.token.statusFrame.frame)),
      v.token.statusFrame.plaintext,
      'status',
    );
    const handshake = await gatewayHandshake(v.hello.bytes, v.hello.gatewayEphemeralPrivateKey);
    const opened = await openPresentation(crypto, handshake, phone.envelope);
    await acceptPresentation(crypto, handshake, opened, devicePub, voucher.claims.cti);
  });

  await run('attach: opens on its connection and proves the same device', async () => {
    const handshake = await gatewayHandshake(v.attach.helloBytes, v.attach.gatewayEphemeralPrivateKey);
    const opened = await openPresentation(crypto, handshake, fromHex(v.attach.envelope));
    assert(opened.kind === PresentationKind.ATTACH, 'kind');
    sameHex(opened.cti, v.voucher.claims.cti, 'cti');
    const { channel } = await acceptPresentation(crypto, handshake, opened, devicePub, opened.cti);
    sameHex(channel.transcriptDigest, v.attach.transcriptDigest, 'transcript digest');
    const stranger = await crypto.generateSigningKey();
    await expectCode(
      acceptPresentation(crypto, handshake, opened, stranger.publicKey, opened.cti),
      306,
      'attach with another device key',
    );
  });

  await run('receipt: verifies, chains from genesis, carries a valid presentation proof', async () => {
    const receipt = parseReceipt(fromHex(v.receipt.bytes));
    await verifyReceipt(crypto, receipt, gatewayPub);
    sameHex(await receiptHash(crypto, receipt.bytes), v.receipt.hash, 'receipt hash');
    assert(
      receipt.body.previousReceiptHash.every((b) => b === 0),
      'genesis link',
    );
    assert(receipt.body.chargedAmount === v.receipt.chargedAmount, 'charged amount');
    assert(
      receipt.body.computedAmount ===
        computeFee(
          receipt.body.tariff,
          receipt.body.energyWh,
          receipt.body.stoppedAt - receipt.body.startedAt,
        ),
      'amount recomputes',
    );
    const expected = {
      deviceKey: devicePub,
      cti: voucher.claims.cti,
      gatewayKey: gatewayPub,
      gatewayId: keys.gateway.id,
    };
    assert(await verifyPresentationProof(crypto, receipt.body.proof, expected), 'presentation proof');
    assert(toHex(receipt.body.proof.helloBytes) === v.hello.bytes, 'proof carries the session hello');
    const otherCti = { ...expected, cti: new Uint8Array(16) };
    assert(
      !(await verifyPresentationProof(crypto, receipt.body.proof, otherCti)),
      'proof must not fit another voucher',
    );
    const otherGateway = { ...expected, gatewayKey: fromHex(keys.root.publicKey) };
    assert(
      !(await verifyPresentationProof(crypto, receipt.body.proof, otherGateway)),
      'proof must not fit another gateway',
    );
    const tampered = receipt.bytes.slice();
    tampered[tampered.length - 1]! ^= 1;
    await expectCode(verifyReceipt(crypto, parseReceipt(tampered), gatewayPub), 604, 'tampered receipt');
  });

  await run('report: verifies and carries the receipt', async () => {
    const report = parseReport(fromHex(v.report.bytes));
    await verifyReport(crypto, report, gatewayPub);
    assert(
      report.body.receipts.length === 1 && toHex(report.body.receipts[0]!) === v.receipt.bytes,
      'receipt inside',
    );
    await expectCode(
      verifyReport(crypto, report, fromHex(keys.root.publicKey)),
      605,
      'report under another key',
    );
  });

  await run('tariff: every case computes as pinned', () => {
    for (const c of v.tariff.cases as {
      tariff: Tariff;
      energyWh: number;
      seconds: number;
      hold: number;
      computed: number;
      charged: number;
    }[]) {
      assert(computeFee(c.tariff, c.energyWh, c.seconds) === c.computed, `computed ${JSON.stringify(c)}`);
      assert(
        chargedAmount(c.tariff, c.energyWh, c.seconds, c.hold) === c.charged,
        `charged ${JSON.stringify(c)}`,
      );
    }
  });

  await run('cbor: non-canonical and out-of-model inputs refused with their codes', async () => {
    for (const c of v.cbor.rejected as { name: string; hex: string; code: number }[]) {
      await expectCode(() => decodeCbor(fromHex(c.hex)), c.code, c.name);
    }
    for (const c of v.cbor.accepted as { name: string; hex: string }[]) decodeCbor(fromHex(c.hex));
  });

  await run('device signature: domain-separated purposes do not cross', async () => {
    const digest = fromHex(v.token.transcriptDigest);
    const sig = fromHex(v.token.deviceSignature);
    assert(
      await crypto.verifyP256(devicePub, deviceSignedBytes(DevicePurpose.TOKEN, digest), sig),
      'token purpose',
    );
    assert(
      !(await crypto.verifyP256(devicePub, deviceSignedBytes(DevicePurpose.ATTACH, digest), sig)),
      'attach purpose',
    );
  });

  return results;
}
