/**
 * `npm run bench:protocol`: the protocol library's costs in one run.
 *
 * 1. ops/s of every hot operation under both crypto providers (`node` = node:crypto/OpenSSL,
 *    the gateway's and cloud's; `noble` = pure JS, the portable one), time-boxed;
 * 2. byte sizes of every message, and of the token as it goes on the air;
 * 3. ATT round trips of one tap at MTU 23, 185 and 247.
 *
 * Writes bench/results/protocol.json. Both providers use the same keys (one seeded world per
 * provider), so a message made by one verifies under the other: states that only feed the
 * operation under test (vouchers, tokens, hellos) are built with the fast provider, untimed.
 */

import { nodeCrypto } from '../shared/src/crypto/node.ts';
import {
  type AuthorizationContext,
  authorizeToken,
  ConnectorState,
  type CryptoProvider,
  chargedAmount,
  chunkMessage,
  computeFee,
  createGatewayHandshake,
  createTokenPresentation,
  encodePdu,
  encodeSessionMessage,
  type GatewayHandshake,
  GENESIS_RECEIPT_HASH,
  issueVoucher,
  MAX_WRITE_BYTES,
  nobleCrypto,
  openPresentation,
  PduType,
  PresentationKind,
  parseBundle,
  parseReceipt,
  parseVoucher,
  type ReceiptBody,
  type RootKey,
  receiptHash,
  revocationHash,
  SessionMessageType,
  SessionState,
  StopReason,
  signBundle,
  signHello,
  signReceipt,
  signReport,
  verifyBundle,
  verifyReceipt,
  verifyVoucherSignature,
} from '../shared/src/index.ts';
import {
  buildWorld,
  issueTestVoucher,
  simpleAuthorizationContext,
  T0,
  type World,
} from '../test/support/world.ts';
import {
  DEFAULT_DURATION_MS,
  DEFAULT_SAMPLES,
  DEFAULT_WARMUP_MS,
  type Measurement,
  machineInfo,
  measure,
  measurePrepared,
} from './lib/measure.ts';
import { printTable, writeResults } from './lib/table.ts';

const SEED = 'pilepass-bench';
const TOKEN_BUDGET_BYTES = 400;
const MTUS = [23, 185, 247] as const;
const REPORT_RECEIPTS = 10;
const BUNDLE_REVOCATIONS = 1_000;

const started = performance.now();
const machine = machineInfo();
const providers: readonly CryptoProvider[] = [nodeCrypto, nobleCrypto];
const worlds = new Map<string, World>();
for (const crypto of providers) worlds.set(crypto.name, await buildWorld(crypto, SEED));
/** The world whose keys build untimed inputs (node: fast). Same keys as every other world. */
const helper = worlds.get('node')!;
const handshakeParams = {
  gatewayId: helper.gateway.id,
  connectors: [
    { id: 1, state: ConnectorState.AVAILABLE },
    { id: 2, state: ConnectorState.PREPARING },
  ],
  gatewayTime: T0 + 60,
};

/** A gateway-side authorization context like the demo's, fresh per tap (hello single use). */
function authContext(crypto: CryptoProvider, world: World): AuthorizationContext {
  return simpleAuthorizationContext(world, { crypto });
}

/** One full tap with the helper world: voucher, handshake, token, authorization. */
async function tap(world: World) {
  const issued = await issueTestVoucher(world);
  const handshake = await createGatewayHandshake(world.crypto, world.gateway.key, handshakeParams);
  const phone = await createTokenPresentation(world.crypto, {
    helloBytes: handshake.hello.bytes,
    voucherBytes: issued.voucher.bytes,
    deviceKey: issued.deviceKey,
    connector: 1,
  });
  const opened = await openPresentation(world.crypto, handshake, phone.envelope);
  if (opened.kind !== PresentationKind.TOKEN) throw new Error('expected a token');
  const auth = await authorizeToken(authContext(world.crypto, world), handshake, opened);
  return { ...issued, handshake, phone, auth };
}

function receiptBody(
  proof: ReceiptBody['proof'],
  cti: Uint8Array,
  sequence: number,
  previous: Uint8Array,
): ReceiptBody {
  const tariff = helper.bundle.body.tariffs[0]!.tariff;
  const energyWh = 12_345;
  const seconds = 40 * 60;
  return {
    cti,
    sessionId: new Uint8Array(16).fill(sequence),
    gatewayId: helper.gateway.id,
    connector: 1,
    meterId: 'SIM-METER-1',
    meterStartWh: 1_000_000,
    meterStopWh: 1_000_000 + energyWh,
    startedAt: T0 + 60,
    stoppedAt: T0 + 60 + seconds,
    energyWh,
    tariff,
    computedAmount: computeFee(tariff, energyWh, seconds),
    chargedAmount: chargedAmount(tariff, energyWh, seconds, 5_000),
    currency: 'CNY',
    proof,
    sequence,
    previousReceiptHash: previous,
    stopReason: StopReason.DRIVER_REQUEST,
  };
}

// ---- sample messages (sizes; fixed inputs for the timed operations) --------------------------

const sample = await tap(helper);
const receipt = await signReceipt(
  helper.gateway.key,
  helper.gateway.kid,
  receiptBody(sample.auth.proof, sample.voucher.claims.cti, 1, GENESIS_RECEIPT_HASH),
);

const reportReceipts: Uint8Array[] = [];
let head: Uint8Array = GENESIS_RECEIPT_HASH;
for (let sequence = 1; sequence <= REPORT_RECEIPTS; sequence++) {
  const r = await signReceipt(
    helper.gateway.key,
    helper.gateway.kid,
    receiptBody(sample.auth.proof, helper.crypto.randomBytes(16), sequence, head),
  );
  reportReceipts.push(r.bytes);
  head = await receiptHash(helper.crypto, r.bytes);
}
const report = await signReport(helper.gateway.key, helper.gateway.kid, {
  gatewayId: helper.gateway.id,
  createdAt: T0 + 7_200,
  receipts: reportReceipts,
  checkpoint: { sequence: REPORT_RECEIPTS, head },
  revocations: [{ bundleVersion: 1, ledgerSequence: 0, spentBeforeInstall: [] }],
});

const revoked: Uint8Array[] = [];
for (let i = 0; i < BUNDLE_REVOCATIONS; i++)
  revoked.push(await revocationHash(helper.crypto, helper.crypto.randomBytes(16)));
const bundle1000 = await signBundle(helper.root.key, helper.root.kid, {
  ...helper.bundle.body,
  version: 2,
  revokedVouchers: revoked,
});

// The first status frame after authorization, as the gateway sends it.
const firstStatus = await sample.auth.channel.seal(
  encodeSessionMessage({
    type: SessionMessageType.STATUS,
    status: {
      sessionId: new Uint8Array(16).fill(7),
      state: SessionState.AUTHORIZED,
      connector: 1,
      energyWh: 0,
      amount: 0,
      hold: sample.voucher.claims.hold.amount,
      elapsedSeconds: 0,
    },
  }),
);
const tokenPdu = encodePdu(PduType.PRESENTATION, sample.phone.envelope);
const statusPdu = encodePdu(PduType.FRAME, firstStatus);
const onAir = (pdu: Uint8Array) => chunkMessage(pdu, MAX_WRITE_BYTES).reduce((n, u) => n + u.length, 0);

const sizes = {
  voucherBytes: sample.voucher.bytes.length,
  helloBytes: sample.handshake.hello.bytes.length,
  tokenBytes: sample.phone.envelope.length,
  tokenOnAirBytes: onAir(tokenPdu),
  statusFrameBytes: firstStatus.length,
  statusOnAirBytes: onAir(statusPdu),
  receiptBytes: receipt.bytes.length,
  bundleBytes: helper.bundle.bytes.length,
  bundle1000RevocationsBytes: bundle1000.bytes.length,
  reportBytes: report.bytes.length,
  reportReceipts: REPORT_RECEIPTS,
};

// ---- ATT round trips for one tap -------------------------------------------------------------

/**
 * ATT request/response pairs of one tap (service discovery and MTU exchange not counted):
 *
 * - hello (long read): an ATT Read Response / Read Blob Response carries at most MTU−1
 *   bytes, and the client stops at the first response shorter than that, so a last response
 *   that is exactly full costs one more (empty) Read Blob:
 *       helloReads = floor(helloLen / (MTU−1)) + 1    (= ceil(len/(MTU−1)), +1 if exact multiple)
 * - token: the message (2-byte length ‖ PDU type ‖ envelope, see `chunkMessage`) is cut into
 *   write units of ≤ 512 B; a unit of length L ≤ MTU−3 is 1 Write Request, otherwise a long
 *   write: ceil(L / (MTU−5)) Prepare Write Requests + 1 Execute Write Request.
 * - notifications on: 1 Write Request to the events CCCD.
 * - first status frame: sealed frame as a FRAME PDU with length prefix, cut into MTU−3 byte
 *   notifications; notifications get no response, so they are counted apart, not as round trips.
 */
function attForTap(mtu: number) {
  const helloReads = Math.floor(sizes.helloBytes / (mtu - 1)) + 1;
  let tokenWrites = 0;
  for (const unit of chunkMessage(tokenPdu, MAX_WRITE_BYTES))
    tokenWrites += unit.length <= mtu - 3 ? 1 : Math.ceil(unit.length / (mtu - 5)) + 1;
  const cccdWrites = 1;
  const notifications = chunkMessage(statusPdu, mtu - 3).length;
  return { mtu, roundTrips: helloReads + tokenWrites + cccdWrites, notifications, helloReads, tokenWrites };
}
const attRoundTrips = MTUS.map(attForTap);

// ---- throughput ------------------------------------------------------------------------------

interface Op {
  readonly key: string;
  readonly label: string;
  readonly bench: (crypto: CryptoProvider, world: World) => ReturnType<typeof measure>;
}

const rawMessage = helper.crypto.randomBytes(200);
const rawSignature = await helper.issuer.key.sign(rawMessage);
/** Distinct keys, more than node.ts caches (512), cycled: every verification imports its key. */
const uncached = await Promise.all(
  Array.from({ length: 1_024 }, async () => {
    const key = await nodeCrypto.generateSigningKey();
    return { publicKey: key.publicKey, signature: await key.sign(rawMessage) };
  }),
);
const rootKey: RootKey = { kid: helper.root.kid, publicKey: helper.root.key.publicKey };
/** A device key (and its voucher) that `token.build` imports into each provider under test. */
const deviceScalar = helper.crypto.randomBytes(32);
const deviceVoucher = await issueTestVoucher(
  helper,
  {},
  { deviceKey: await nodeCrypto.importSigningKey(deviceScalar) },
);

const ops: readonly Op[] = [
  {
    key: 'voucher.issue',
    label: 'voucher encode+sign (issueVoucher)',
    bench: (_crypto, world) =>
      measure(() => issueVoucher(world.issuer.key, world.issuer.kid, sample.voucher.claims)),
  },
  {
    key: 'voucher.parse',
    label: 'voucher decode (parseVoucher)',
    bench: () => measure(() => parseVoucher(sample.voucher.bytes)),
  },
  {
    key: 'voucher.verify',
    label: 'voucher verify (verifyVoucherSignature)',
    bench: (crypto, world) => measure(() => verifyVoucherSignature(crypto, sample.voucher, world.keyring)),
  },
  {
    key: 'p256.verify',
    label: 'raw P-256 verify (verifyP256)',
    bench: (crypto) =>
      measure(async () => {
        if (!(await crypto.verifyP256(helper.issuer.key.publicKey, rawMessage, rawSignature)))
          throw new Error('verify failed');
      }),
  },
  {
    key: 'p256.verifyNewKey',
    label: 'raw P-256 verify, new key each call',
    bench: (crypto) => {
      let i = 0;
      return measure(async () => {
        const { publicKey, signature } = uncached[i++ % uncached.length]!;
        if (!(await crypto.verifyP256(publicKey, rawMessage, signature))) throw new Error('verify failed');
      });
    },
  },
  {
    key: 'hello.sign',
    label: 'hello sign (signHello)',
    bench: (crypto, world) =>
      measure(() =>
        signHello(world.gateway.key, { ...sample.handshake.hello.body, nonce: crypto.randomBytes(16) }),
      ),
  },
  {
    key: 'handshake.create',
    label: 'handshake (eph. ECDH key + hello sign)',
    bench: (crypto, world) =>
      measure(() => createGatewayHandshake(crypto, world.gateway.key, handshakeParams)),
  },
  {
    key: 'token.build',
    label: 'token build, phone (createTokenPresentation)',
    bench: async (crypto) => {
      const deviceKey = await crypto.importSigningKey(deviceScalar);
      return measurePrepared(
        (count) =>
          Promise.all(
            Array.from({ length: count }, () =>
              createGatewayHandshake(helper.crypto, helper.gateway.key, handshakeParams),
            ),
          ),
        (handshake: GatewayHandshake) =>
          createTokenPresentation(crypto, {
            helloBytes: handshake.hello.bytes,
            voucherBytes: deviceVoucher.voucher.bytes,
            deviceKey,
            connector: 1,
          }),
      );
    },
  },
  {
    // A tap as the gateway sees it: fresh handshake (its ephemeral key from the provider under
    // test), fresh voucher and fresh device key, so only the issuer key may be cached.
    key: 'token.openAuthorize',
    label: 'token open+authorize, gateway',
    bench: (crypto, world) =>
      measurePrepared(
        (count) =>
          Promise.all(
            Array.from({ length: count }, async () => {
              const issued = await issueTestVoucher(helper);
              const handshake = await createGatewayHandshake(crypto, helper.gateway.key, handshakeParams);
              const phone = await createTokenPresentation(helper.crypto, {
                helloBytes: handshake.hello.bytes,
                voucherBytes: issued.voucher.bytes,
                deviceKey: issued.deviceKey,
                connector: 1,
              });
              return { handshake, envelope: phone.envelope, ctx: authContext(crypto, world) };
            }),
          ),
        async ({ handshake, envelope, ctx }) => {
          const opened = await openPresentation(crypto, handshake, envelope);
          if (opened.kind !== PresentationKind.TOKEN) throw new Error('expected a token');
          await authorizeToken(ctx, handshake, opened);
        },
        { maxBatch: 256 },
      ),
  },
  {
    key: 'receipt.sign',
    label: 'receipt sign (signReceipt)',
    bench: (_crypto, world) => measure(() => signReceipt(world.gateway.key, world.gateway.kid, receipt.body)),
  },
  {
    key: 'receipt.parseVerify',
    label: 'receipt parse+verify',
    bench: (crypto, world) =>
      measure(() => verifyReceipt(crypto, parseReceipt(receipt.bytes), world.gateway.key.publicKey)),
  },
  {
    key: 'bundle.parseVerify',
    label: 'bundle parse+verify',
    bench: (crypto, world) =>
      measure(() =>
        verifyBundle(crypto, parseBundle(world.bundle.bytes), rootKey, {
          installedVersion: undefined,
          gatewayId: world.gateway.id,
        }),
      ),
  },
  {
    key: 'bundle1000.parseVerify',
    label: `bundle parse+verify, ${BUNDLE_REVOCATIONS} revocations`,
    bench: (crypto, world) =>
      measure(() =>
        verifyBundle(crypto, parseBundle(bundle1000.bytes), rootKey, {
          installedVersion: 1,
          gatewayId: world.gateway.id,
        }),
      ),
  },
];

const results: Record<string, Record<string, number>> = {};
const details: Record<string, Record<string, Measurement>> = {};
const rows = [];
for (const op of ops) {
  const perProvider: Record<string, number> = {};
  details[op.key] = {};
  for (const crypto of providers) {
    const measured = await op.bench(crypto, worlds.get(crypto.name)!);
    perProvider[crypto.name] = measured.opsPerSec;
    details[op.key]![crypto.name] = measured;
  }
  results[op.key] = perProvider;
  const node = perProvider.node!;
  const noble = perProvider.noble!;
  rows.push({
    op: op.label,
    'node ops/s': node,
    'noble ops/s': noble,
    ratio: `${(node / noble).toFixed(1)}x`,
  });
}

const verifyPerSec = { node: results['p256.verify']!.node!, noble: results['p256.verify']!.noble! };
const output = {
  ...sizes,
  tokenBudgetBytes: TOKEN_BUDGET_BYTES,
  tokenBudgetOk: sizes.tokenBytes <= TOKEN_BUDGET_BYTES,
  verifyPerSec,
  nodeVsNobleVerifyRatio: Math.round((verifyPerSec.node / verifyPerSec.noble) * 10) / 10,
  /** Median ops/s per operation and provider. */
  ops: results,
  /** Per operation and provider: median, slowest and fastest sample, iterations, mean µs. */
  opsDetail: details,
  attRoundTrips,
  settings: {
    warmupMs: DEFAULT_WARMUP_MS,
    durationMs: DEFAULT_DURATION_MS,
    samples: DEFAULT_SAMPLES,
    seed: SEED,
  },
  machine,
};

console.log(
  `PilePass protocol benchmark — node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}, ` +
    `load ${machine.loadAvg1m}, ${machine.date}\n`,
);
printTable(rows, {
  title: `Throughput (ops/s: median of ${DEFAULT_SAMPLES} samples, sequential, one core; ratio = node/noble)`,
});
printTable(
  Object.entries(sizes)
    .filter(([name]) => name.endsWith('Bytes'))
    .map(([name, bytes]) => ({
      message: name,
      bytes,
      note:
        name === 'tokenBytes'
          ? `budget ${TOKEN_BUDGET_BYTES}: ${output.tokenBudgetOk ? 'ok' : 'OVER'}`
          : name === 'reportBytes'
            ? `${REPORT_RECEIPTS} receipts`
            : '',
    })),
  { title: 'Sizes' },
);
printTable(attRoundTrips, {
  title: 'ATT per tap (roundTrips = helloReads + tokenWrites + 1 CCCD write; notifications = first status)',
});
const path = writeResults('protocol', output);
console.log(`wrote ${path} in ${((performance.now() - started) / 1_000).toFixed(1)} s`);
