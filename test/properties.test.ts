/**
 * Property tests (fast-check) over every message:
 * - round trip: encode → decode gives back the same fields;
 * - every single-byte change (XOR 0x01 and XOR 0x80 at every position) and every truncation
 *   of a signed or sealed message is rejected with a defined ProtocolError code;
 * - random bytes never throw anything but a ProtocolError, never hang, and size and nesting
 *   limits hold;
 * - non-canonical encodings of valid values are rejected.
 * Uses the node:crypto provider for speed.
 */

import { encode as looseEncode } from 'cbor2';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { nodeCrypto } from '../shared/src/crypto/node.ts';
import {
  asMap,
  authorizeToken,
  type CborValue,
  chunkMessage,
  createTokenPresentation,
  DEFAULT_LIMITS,
  decodeCbor,
  decodePdu,
  decodeSessionMessage,
  ErrorCode,
  encodeCbor,
  encodeSessionMessage,
  isErrorCode,
  openPresentation,
  PresentationKind,
  ProtocolError,
  parseBundle,
  parseHello,
  parseReceipt,
  parseReport,
  parseVoucher,
  Reassembler,
  type ReceiptBody,
  SessionMessageType,
  signBundle,
  signReceipt,
  signReport,
  type VoucherClaims,
  verifyBundle,
  verifyHello,
  verifyReceipt,
  verifyVoucherSignature,
} from '../shared/src/index.ts';
import {
  buildWorld,
  issueTestVoucher,
  newHandshake,
  simpleAuthorizationContext,
  T0,
  TARIFF,
} from './support/world.ts';

const crypto = nodeCrypto;
const world = await buildWorld(crypto);
const root = { kid: world.root.kid, publicKey: world.root.key.publicKey };

/** Runs `fn`; returns the ProtocolError code it threw, or 'accepted'. Fails on any other throw. */
async function outcome(fn: () => Promise<unknown> | unknown): Promise<number | 'accepted'> {
  try {
    await fn();
    return 'accepted';
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw new Error(`untyped exception: ${String(err)}`);
    if (!isErrorCode(err.code)) throw new Error(`undefined error code ${err.code}`);
    return err.code;
  }
}

/** Every XOR 0x01 / 0x80 variant and every truncation must be rejected with a defined code. */
async function expectTamperRejected(
  name: string,
  bytes: Uint8Array,
  accept: (b: Uint8Array) => Promise<unknown>,
) {
  expect(await outcome(() => accept(bytes)), `${name}: the original must be accepted`).toBe('accepted');
  const accepted: string[] = [];
  const codes = new Set<number>();
  for (let i = 0; i < bytes.length; i++) {
    for (const mask of [0x01, 0x80]) {
      const changed = bytes.slice();
      changed[i]! ^= mask;
      const result = await outcome(() => accept(changed));
      if (result === 'accepted') accepted.push(`byte ${i} ^ 0x${mask.toString(16)}`);
      else codes.add(result);
    }
  }
  for (let length = 0; length < bytes.length; length++) {
    const result = await outcome(() => accept(bytes.subarray(0, length)));
    if (result === 'accepted') accepted.push(`truncated to ${length}`);
    else codes.add(result);
  }
  expect(accepted, `${name}: tampered variants accepted`).toEqual([]);
  return codes;
}

describe('every byte change and truncation is rejected with a defined code', () => {
  it('voucher (issuer-signed)', async () => {
    const { voucher } = await issueTestVoucher(world);
    const codes = await expectTamperRejected('voucher', voucher.bytes, (b) =>
      verifyVoucherSignature(crypto, parseVoucher(b), world.keyring),
    );
    expect(codes.has(ErrorCode.ISSUER_SIGNATURE_INVALID)).toBe(true);
    expect(codes.has(ErrorCode.MALFORMED)).toBe(true);
  });

  it('hello (gateway-signed, checked by the phone)', async () => {
    const { hello } = await newHandshake(world);
    const codes = await expectTamperRejected('hello', hello.bytes, (b) =>
      verifyHello(crypto, parseHello(b), world.gateway.keyDigest),
    );
    expect(codes.has(ErrorCode.HELLO_SIGNATURE_INVALID)).toBe(true);
  });

  it('sealed identification token (opened and authorized by the gateway)', async () => {
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const handshake = await newHandshake(world);
    const phone = await createTokenPresentation(crypto, {
      helloBytes: handshake.hello.bytes,
      voucherBytes: voucher.bytes,
      deviceKey,
      connector: 1,
    });
    // Every variant gets its own try at the same hello.
    const ctx = simpleAuthorizationContext(world, { reusableHello: true });

    const codes = await expectTamperRejected('token', phone.envelope, async (b) => {
      const opened = await openPresentation(crypto, handshake, b);
      if (opened.kind !== PresentationKind.TOKEN) throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE);
      return authorizeToken(ctx, handshake, opened);
    });
    expect(codes.has(ErrorCode.DECRYPT_FAILED)).toBe(true);
  });

  it('receipt (gateway-signed)', async () => {
    const receipt = await signReceipt(world.gateway.key, world.gateway.kid, sampleReceipt());
    const codes = await expectTamperRejected('receipt', receipt.bytes, (b) =>
      verifyReceipt(crypto, parseReceipt(b), world.gateway.key.publicKey),
    );
    expect(codes.has(ErrorCode.RECEIPT_SIGNATURE_INVALID)).toBe(true);
  });

  it('sync bundle (root-signed)', async () => {
    const bundle = await signBundle(world.root.key, world.root.kid, {
      ...world.bundle.body,
      version: 2,
      revokedVouchers: [crypto.randomBytes(16), crypto.randomBytes(16)],
    });
    const codes = await expectTamperRejected('bundle', bundle.bytes, (b) =>
      verifyBundle(crypto, parseBundle(b), root, { installedVersion: 1, gatewayId: world.gateway.id }),
    );
    expect(codes.has(ErrorCode.BUNDLE_SIGNATURE_INVALID)).toBe(true);
  });
});

function sampleReceipt(overrides: Partial<ReceiptBody> = {}): ReceiptBody {
  return {
    cti: new Uint8Array(16).fill(1),
    sessionId: new Uint8Array(16).fill(2),
    gatewayId: world.gateway.id,
    connector: 1,
    meterId: 'SIM-METER-1',
    meterStartWh: 1_000,
    meterStopWh: 8_500,
    startedAt: T0,
    stoppedAt: T0 + 1_800,
    energyWh: 7_500,
    tariff: TARIFF,
    computedAmount: 1_200,
    chargedAmount: 1_200,
    currency: 'CNY',
    proof: {
      deviceSignature: new Uint8Array(64).fill(3),
      version: 1,
      helloBytes: new Uint8Array(186).fill(4),
      phoneEphemeralKey: new Uint8Array(33).fill(5),
    },
    sequence: 1,
    previousReceiptHash: new Uint8Array(32),
    stopReason: 1,
    ...overrides,
  };
}

// ---- round trips ----------------------------------------------------------------------------

const bytes = (min: number, max = min) => fc.uint8Array({ minLength: min, maxLength: max });
const gatewayId = fc.stringMatching(/^[A-Za-z0-9._-]{1,32}$/);
const time = fc.integer({ min: 0, max: 7_000_000_000 });
const tariffArb = fc.record({
  energyPrice: fc.integer({ min: 0, max: 1_000_000_000 }),
  serviceFee: fc.integer({ min: 0, max: 1_000_000_000 }),
  timeFee: fc.integer({ min: 0, max: 1_000_000_000 }),
});

describe('round trip of every message', () => {
  it('receipt: empty signed meter data is the same as none', async () => {
    const receipt = await signReceipt(
      world.gateway.key,
      world.gateway.kid,
      sampleReceipt({ signedMeterData: new Uint8Array(0) }),
    );
    expect(parseReceipt(receipt.bytes).body.signedMeterData).toBeUndefined();
  });

  it('voucher claims', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          issuer: fc.stringMatching(/^[A-Za-z0-9.:_-]{1,32}$/),
          subject: bytes(8, 16),
          issuedAt: time,
          notBefore: time,
          lifetime: fc.integer({ min: 0, max: 100_000_000 }),
          cti: bytes(16, 32),
          minVersion: fc.integer({ min: 1, max: 255 }),
          gatewayId,
          connector: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
          amount: fc.integer({ min: 1, max: 1_000_000_000_000 }),
          currency: fc.stringMatching(/^[A-Z]{3}$/),
          tariff: tariffArb,
          gatewayKeyDigest: bytes(32),
        }),
        async (r) => {
          const claims: VoucherClaims = {
            issuer: r.issuer,
            subject: r.subject,
            issuedAt: r.issuedAt,
            notBefore: Math.min(r.notBefore, r.issuedAt),
            expiresAt: Math.max(r.issuedAt, r.notBefore) + r.lifetime,
            cti: r.cti,
            deviceKey: world.gateway.key.publicKey,
            minVersion: r.minVersion,
            gatewayId: r.gatewayId,
            connector: r.connector,
            hold: { amount: r.amount, currency: r.currency },
            tariff: r.tariff,
            gatewayKeyDigest: r.gatewayKeyDigest,
          };
          const { voucher } = await issueTestVoucher(world, claims);
          expect(parseVoucher(voucher.bytes).claims).toEqual(claims);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('receipt body', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          meterStartWh: fc.integer({ min: 0, max: 2 ** 40 }),
          energyWh: fc.integer({ min: 0, max: 2 ** 30 }),
          startedAt: time,
          duration: fc.integer({ min: 0, max: 10 ** 6 }),
          tariff: tariffArb,
          computed: fc.integer({ min: 0, max: 10 ** 9 }),
          hold: fc.integer({ min: 0, max: 10 ** 9 }),
          sequence: fc.integer({ min: 0, max: 2 ** 40 }),
          previous: bytes(32),
          stopReason: fc.integer({ min: 1, max: 7 }),
          signedMeterData: fc.option(bytes(1, 200), { nil: undefined }),
        }),
        async (r) => {
          const body = sampleReceipt({
            meterStartWh: r.meterStartWh,
            meterStopWh: r.meterStartWh + r.energyWh,
            energyWh: r.energyWh,
            startedAt: r.startedAt,
            stoppedAt: r.startedAt + r.duration,
            tariff: r.tariff,
            computedAmount: r.computed,
            chargedAmount: Math.min(r.computed, r.hold),
            sequence: r.sequence,
            previousReceiptHash: r.previous,
            stopReason: r.stopReason as ReceiptBody['stopReason'],
            signedMeterData: r.signedMeterData,
          });
          const receipt = await signReceipt(world.gateway.key, world.gateway.kid, body);
          expect(parseReceipt(receipt.bytes).body).toEqual(body);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('sync bundle body', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          version: fc.integer({ min: 0, max: 2 ** 40 }),
          issuedAt: time,
          revokedKids: fc.array(bytes(1, 8), { maxLength: 5 }),
          revokedVouchers: fc.array(bytes(16), { maxLength: 50 }),
          audience: fc.array(gatewayId, { maxLength: 4 }),
          receiptAcks: fc.array(fc.record({ gatewayId, upToSequence: fc.nat() }), { maxLength: 3 }),
          binding: fc.option(fc.record({ gatewayNonce: bytes(16), gatewayId }), { nil: undefined }),
          tariffs: fc.array(
            fc.record({
              gatewayId,
              tariff: tariffArb,
              connector: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
            }),
            { maxLength: 4 },
          ),
        }),
        async (r) => {
          const body = { ...r, issuers: world.bundle.body.issuers };
          const bundle = await signBundle(world.root.key, world.root.kid, body);
          expect(parseBundle(bundle.bytes).body).toEqual(body);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('gateway report', async () => {
    const receipt = await signReceipt(world.gateway.key, world.gateway.kid, sampleReceipt());
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          createdAt: time,
          count: fc.integer({ min: 0, max: 24 }),
          sequence: fc.integer({ min: 0, max: 2 ** 40 }),
          head: bytes(32),
          revocations: fc.array(
            fc.record({
              bundleVersion: fc.integer({ min: 0, max: 2 ** 32 }),
              ledgerSequence: fc.integer({ min: 0, max: 2 ** 40 }),
              spentBeforeInstall: fc.array(bytes(16), { maxLength: 3 }),
            }),
            { maxLength: 5 },
          ),
          cloudNonce: fc.option(bytes(16), { nil: undefined }),
        }),
        async (r) => {
          const body = {
            gatewayId: world.gateway.id,
            createdAt: r.createdAt,
            receipts: Array.from({ length: r.count }, () => receipt.bytes),
            checkpoint: { sequence: r.sequence, head: r.head },
            revocations: r.revocations,
            cloudNonce: r.cloudNonce,
          };
          const report = await signReport(world.gateway.key, world.gateway.kid, body);
          expect(parseReport(report.bytes).body).toEqual(body);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('hello', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          gatewayTime: time,
          connectors: fc.array(
            fc.record({ id: fc.integer({ min: 0, max: 255 }), state: fc.integer({ min: 0, max: 5 }) }),
            {
              maxLength: 16,
            },
          ),
        }),
        async (r) => {
          const { createGatewayHandshake } = await import('../shared/src/index.ts');
          const hs = await createGatewayHandshake(crypto, world.gateway.key, {
            gatewayId: world.gateway.id,
            gatewayTime: r.gatewayTime,
            connectors: r.connectors as never,
          });
          const parsed = parseHello(hs.hello.bytes).body;
          expect(parsed.connectors).toEqual(r.connectors);
          expect(parsed.gatewayTime).toBe(r.gatewayTime);
          await verifyHello(crypto, parseHello(hs.hello.bytes), world.gateway.keyDigest);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('session messages', () => {
    const status = fc.record({
      sessionId: bytes(16),
      state: fc.integer({ min: 0, max: 4 }),
      connector: fc.integer({ min: 0, max: 255 }),
      energyWh: fc.nat(),
      amount: fc.integer({ min: 0, max: 10 ** 12 }),
      hold: fc.integer({ min: 0, max: 10 ** 12 }),
      elapsedSeconds: fc.nat(),
    });
    const message = fc.oneof(
      status.map((s) => ({ type: SessionMessageType.STATUS, status: s }) as const),
      bytes(64).map((d) => ({ type: SessionMessageType.STOP, deviceSignature: d }) as const),
      bytes(1, 2048).map((r) => ({ type: SessionMessageType.RECEIPT, receipt: r }) as const),
      fc
        .constantFrom(...Object.values(ErrorCode))
        .map((c) => ({ type: SessionMessageType.ERROR, code: c }) as const),
      bytes(1, 4000).map((b) => ({ type: SessionMessageType.BUNDLE, bundle: b }) as const),
      fc.constant({ type: SessionMessageType.REPORT_REQUEST } as const),
      bytes(1, 4000).map((b) => ({ type: SessionMessageType.REPORT, report: b }) as const),
      fc
        .record({
          acknowledged: fc.integer({ min: 0, max: 255 }),
          code: fc.constantFrom(0, ...Object.values(ErrorCode)),
        })
        .map((a) => ({ type: SessionMessageType.ACK, ...a }) as const),
    );
    fc.assert(
      fc.property(message, (m) => {
        expect(decodeSessionMessage(encodeSessionMessage(m as never))).toEqual(m);
      }),
      { numRuns: 300 },
    );
  });
});

// ---- hostile input --------------------------------------------------------------------------

describe('random bytes: only typed errors, no hangs, limits hold', () => {
  const decoders: [string, (b: Uint8Array) => unknown][] = [
    ['cbor', (b) => decodeCbor(b)],
    ['voucher', parseVoucher],
    ['hello', parseHello],
    ['receipt', parseReceipt],
    ['bundle', parseBundle],
    ['report', parseReport],
    ['session message', decodeSessionMessage],
    ['pdu', decodePdu],
  ];

  it('never throws anything but a ProtocolError', async () => {
    const handshake = await newHandshake(world);
    const all = [
      ...decoders,
      ['presentation', (b: Uint8Array) => openPresentation(crypto, handshake, b)] as const,
    ];
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), async (input) => {
        for (const [, decode] of all) await outcome(() => decode(input));
      }),
      { numRuns: 1_500 },
    );
  });

  it('structured garbage (valid CBOR of the wrong shape) gets typed errors too', async () => {
    await fc.assert(
      fc.asyncProperty(cborValue(), async (value) => {
        const input = encodeCbor(value);
        for (const [, decode] of decoders) await outcome(() => decode(input));
      }),
      { numRuns: 800 },
    );
  });

  it('refuses inputs above maxBytes before decoding', () => {
    const big = encodeCbor(new Uint8Array(70_000));
    expect(() => decodeCbor(big)).toThrow(expect.objectContaining({ code: ErrorCode.TOO_LARGE }));
    expect(() => parseVoucher(encodeCbor(new Uint8Array(700)))).toThrow(
      expect.objectContaining({ code: ErrorCode.TOO_LARGE }),
    );
  });

  it('refuses nesting deeper than maxDepth, even 10,000 levels, without recursion trouble', () => {
    for (const depth of [9, 100, 10_000]) {
      const deep = new Uint8Array(depth + 1).fill(0x81);
      deep[depth] = 0x00;
      expect(() => decodeCbor(deep)).toThrow(expect.objectContaining({ code: ErrorCode.TOO_DEEP }));
    }
    const ok = new Uint8Array(9).fill(0x81);
    ok[8] = 0x00;
    expect(decodeCbor(ok)).toBeDefined();
  });

  it('refuses huge declared lengths without allocating them', () => {
    for (const hex of ['9b00000001ffffffff', 'bb0000000100000000', '5b0000000100000000', '7affffffff']) {
      const input = Uint8Array.from(hex.match(/../g)!.map((h) => Number.parseInt(h, 16)));
      expect(() => decodeCbor(input)).toThrow(expect.objectContaining({ code: ErrorCode.MALFORMED }));
    }
  });

  it('refuses too many items', () => {
    const many = encodeCbor(Array.from({ length: 5_000 }, () => 0));
    expect(() => decodeCbor(many)).toThrow(expect.objectContaining({ code: ErrorCode.TOO_LARGE }));
  });

  it('the reassembler refuses oversize, overrun and stale messages with typed errors', () => {
    const r = new Reassembler(1_000, 2_000);
    expect(() => r.push(Uint8Array.of(0x10, 0x00, 1), 0)).toThrow(
      expect.objectContaining({ code: ErrorCode.FRAME_TOO_LARGE }),
    );
    expect(r.push(Uint8Array.of(0x00, 0x04, 1, 2), 0)).toBeUndefined();
    expect(() => r.push(Uint8Array.of(3, 4, 5), 10)).toThrow(
      expect.objectContaining({ code: ErrorCode.MALFORMED }),
    );
    expect(r.push(Uint8Array.of(0x00, 0x04, 1, 2), 100)).toBeUndefined();
    expect(() => r.push(Uint8Array.of(3, 4), 2_101)).toThrow(
      expect.objectContaining({ code: ErrorCode.REASSEMBLY_TIMEOUT }),
    );
    expect(r.pending).toBe(false);
  });
});

function nesting(value: CborValue): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(nesting));
  if (value instanceof Map) return 1 + Math.max(0, ...[...value.values()].map(nesting));
  return 0;
}

/** Values of the protocol data model within the default nesting limit. */
function cborValue(): fc.Arbitrary<CborValue> {
  const leaf: fc.Arbitrary<CborValue> = fc.oneof(
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.string({ maxLength: 20 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.boolean(),
    fc.constant(null),
  );
  return fc
    .letrec<{ value: CborValue }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.array(tie('value'), { maxLength: 8 }),
        fc
          .array(
            fc.tuple(fc.oneof(fc.integer({ min: -30, max: 30 }), fc.string({ maxLength: 4 })), tie('value')),
            { maxLength: 6 },
          )
          .map((entries) => new Map(entries)),
      ),
    }))
    .value.filter((v) => nesting(v) <= DEFAULT_LIMITS.maxDepth);
}

describe('non-canonical encodings are rejected (RFC 8949 §4.2.1)', () => {
  it('a head widened to a longer argument form', () => {
    fc.assert(
      fc.property(cborValue(), (value) => {
        const canonical = encodeCbor(value);
        const first = canonical[0]!;
        const info = first & 0x1f;
        const major = first & 0xe0;
        if (major === 0xe0) return; // booleans and null have no longer form
        let widened: Uint8Array;
        if (info < 24) widened = Uint8Array.of(major | 24, info, ...canonical.subarray(1));
        else if (info === 24) widened = Uint8Array.of(major | 25, 0, canonical[1]!, ...canonical.subarray(2));
        else return;
        expect(() => decodeCbor(widened)).toThrow(expect.objectContaining({ code: ErrorCode.NON_CANONICAL }));
      }),
      { numRuns: 500 },
    );
  });

  it('map keys in any order but the canonical one', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: -1000, max: 1000 }), { minLength: 2, maxLength: 8 }),
        (keys) => {
          const canonicalOrder = [
            ...asMap(decodeCbor(encodeCbor(new Map(keys.map((k) => [k, 0])))), 'map').keys(),
          ];
          const reversed = new Map(canonicalOrder.reverse().map((k) => [k, 0]));
          const loose = looseEncode(reversed, { sortKeys: null });
          expect(() => decodeCbor(loose)).toThrow(expect.objectContaining({ code: ErrorCode.NON_CANONICAL }));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a canonical value decodes to itself and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(cborValue(), (value) => {
        const canonical = encodeCbor(value);
        expect(encodeCbor(decodeCbor(canonical))).toEqual(canonical);
      }),
      { numRuns: 500 },
    );
  });

  it('framing: any message chunked at any unit size reassembles to itself', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 3000 }),
        fc.integer({ min: 3, max: 512 }),
        (pdu, unit) => {
          const r = new Reassembler();
          const units = chunkMessage(pdu, unit);
          let out: Uint8Array | undefined;
          units.forEach((u, i) => {
            out = r.push(u, i);
            if (i < units.length - 1) expect(out).toBeUndefined();
          });
          expect(out).toEqual(pdu);
        },
      ),
      { numRuns: 300 },
    );
  });
});
