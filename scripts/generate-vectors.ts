/**
 * Generates test/vectors/*.json: keys, inputs and expected bytes for every protocol message.
 * Uses the noble provider, whose ECDSA is deterministic (RFC 6979), so every byte is pinned.
 * `--check` regenerates in memory and fails if any committed vector differs (a format change
 * must be deliberate: regenerate and review the diff).
 */

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  chargedAmount,
  computeFee,
  createAttachPresentation,
  createTokenPresentation,
  DevicePurpose,
  deviceSignedBytes,
  encodeCbor,
  encodeSessionMessage,
  GENESIS_RECEIPT_HASH,
  nobleCrypto,
  receiptHash,
  revocationHash,
  SessionMessageType,
  SessionState,
  StopReason,
  signBundle,
  signReceipt,
  signReport,
  type Tariff,
  toHex,
} from '../shared/src/index.ts';
import {
  buildWorld,
  derivedScalar,
  issueTestVoucher,
  newHandshake,
  T0,
  TARIFF,
} from '../test/support/world.ts';

const SEED = 'pilepass-vectors-v1';
const OUT = 'test/vectors';
const crypto = nobleCrypto;
const hex = toHex;

async function generate(): Promise<Record<string, unknown>> {
  const world = await buildWorld(crypto, SEED);
  const { voucher, deviceKey } = await issueTestVoucher(world, {}, { label: 'v1' });
  const handshake = await newHandshake(world, 'h1');
  const phoneEphScalar = derivedScalar(SEED, 'h1/phone-eph');
  const phone = await createTokenPresentation(crypto, {
    helloBytes: handshake.hello.bytes,
    voucherBytes: voucher.bytes,
    deviceKey,
    connector: 1,
    ephemeral: await crypto.importEcdhKey(phoneEphScalar),
  });
  const sessionId = derivedScalar(SEED, 'h1/session').slice(0, 16);
  // The gateway's channel is the mirror of the phone's; the vector pins the phone's view.
  const statusPlain = encodeSessionMessage({
    type: SessionMessageType.STATUS,
    status: {
      sessionId,
      state: SessionState.CHARGING,
      connector: 1,
      energyWh: 7_500,
      amount: computeFee(TARIFF, 7_500, 1_800),
      hold: 5_000,
      elapsedSeconds: 1_800,
    },
  });
  const stopSignature = await deviceKey.sign(
    deviceSignedBytes(DevicePurpose.STOP, phone.channel.transcriptDigest),
  );
  const stopPlain = encodeSessionMessage({ type: SessionMessageType.STOP, deviceSignature: stopSignature });
  const stopFrame = await phone.channel.seal(stopPlain);

  const handshake2 = await newHandshake(world, 'h2');
  const attach = await createAttachPresentation(crypto, {
    helloBytes: handshake2.hello.bytes,
    voucherBytes: voucher.bytes,
    deviceKey,
    ephemeral: await crypto.importEcdhKey(derivedScalar(SEED, 'h2/phone-eph')),
  });

  const token = await import('../shared/src/index.ts').then(async (m) => {
    const opened = await m.openPresentation(crypto, handshake, phone.envelope);
    if (opened.kind !== m.PresentationKind.TOKEN) throw new Error('token expected');
    return m.acceptPresentation(crypto, handshake, opened, voucher.claims.deviceKey, voucher.claims.cti);
  });
  const statusFrame = await token.channel.seal(statusPlain);

  const energyWh = 7_500;
  const seconds = 1_800;
  const receipt = await signReceipt(world.gateway.key, world.gateway.kid, {
    cti: voucher.claims.cti,
    sessionId,
    gatewayId: world.gateway.id,
    connector: 1,
    meterId: 'SIM-METER-1',
    meterStartWh: 1_000_000,
    meterStopWh: 1_000_000 + energyWh,
    startedAt: T0 + 60,
    stoppedAt: T0 + 60 + seconds,
    energyWh,
    tariff: TARIFF,
    computedAmount: computeFee(TARIFF, energyWh, seconds),
    chargedAmount: chargedAmount(TARIFF, energyWh, seconds, 5_000),
    currency: 'CNY',
    proof: token.proof,
    sequence: 1,
    previousReceiptHash: GENESIS_RECEIPT_HASH,
    stopReason: StopReason.DRIVER_REQUEST,
  });
  const revokedCti = derivedScalar(SEED, 'revoked-cti').slice(0, 16);
  const bundle2 = await signBundle(world.root.key, world.root.kid, {
    version: 2,
    issuedAt: T0,
    binding: { gatewayNonce: derivedScalar(SEED, 'sync-nonce').slice(0, 16), gatewayId: world.gateway.id },
    issuers: world.bundle.body.issuers,
    revokedKids: [Uint8Array.of(0x49, 0x00)],
    revokedVouchers: [await revocationHash(crypto, revokedCti)],
    tariffs: [{ gatewayId: world.gateway.id, connector: 2, tariff: { ...TARIFF, timeFee: 5_000 } }],
    audience: [world.gateway.id],
    receiptAcks: [{ gatewayId: world.gateway.id, upToSequence: 0 }],
  });
  const report = await signReport(world.gateway.key, world.gateway.kid, {
    gatewayId: world.gateway.id,
    createdAt: T0 + 2_000,
    receipts: [receipt.bytes],
    checkpoint: { sequence: 3, head: await receiptHash(crypto, receipt.bytes) },
    revocations: [
      { bundleVersion: 2, ledgerSequence: 2, spentBeforeInstall: [await revocationHash(crypto, revokedCti)] },
    ],
  });

  const tariffCases: { tariff: Tariff; energyWh: number; seconds: number; hold: number }[] = [
    { tariff: TARIFF, energyWh: 0, seconds: 0, hold: 5_000 },
    { tariff: TARIFF, energyWh: 7_500, seconds: 1_800, hold: 5_000 },
    { tariff: TARIFF, energyWh: 40_000, seconds: 7_200, hold: 5_000 },
    { tariff: { energyPrice: 12_345, serviceFee: 0, timeFee: 0 }, energyWh: 405, seconds: 0, hold: 100 }, // 0.49997… → 0
    { tariff: { energyPrice: 12_346, serviceFee: 0, timeFee: 0 }, energyWh: 405, seconds: 0, hold: 100 }, // 0.50001… → 1
    { tariff: { energyPrice: 10_000, serviceFee: 0, timeFee: 0 }, energyWh: 500, seconds: 0, hold: 100 }, // 0.5 exactly → 1
    { tariff: { energyPrice: 0, serviceFee: 0, timeFee: 30_000 }, energyWh: 0, seconds: 90, hold: 100 }, // 4.5 → 5
    {
      tariff: { energyPrice: 1_000_000, serviceFee: 250_000, timeFee: 10_000 },
      energyWh: 123_456,
      seconds: 12_345,
      hold: 20_000,
    },
  ];

  return {
    keys: {
      seed: SEED,
      root: {
        kid: hex(world.root.kid),
        privateKey: hex(derivedScalar(SEED, 'root')),
        publicKey: hex(world.root.key.publicKey),
      },
      issuer: {
        kid: hex(world.issuer.kid),
        privateKey: hex(derivedScalar(SEED, 'issuer')),
        publicKey: hex(world.issuer.key.publicKey),
      },
      gateway: {
        id: world.gateway.id,
        kid: hex(world.gateway.kid),
        privateKey: hex(derivedScalar(SEED, 'gateway')),
        publicKey: hex(world.gateway.key.publicKey),
        keyDigest: hex(world.gateway.keyDigest),
      },
      device: { privateKey: hex(derivedScalar(SEED, 'v1/device')), publicKey: hex(deviceKey.publicKey) },
    },
    voucher: {
      description: 'Voucher (CWT in COSE_Sign1) signed by the issuer key, RFC 6979',
      claims: {
        issuer: voucher.claims.issuer,
        subject: hex(voucher.claims.subject),
        issuedAt: voucher.claims.issuedAt,
        notBefore: voucher.claims.notBefore,
        expiresAt: voucher.claims.expiresAt,
        cti: hex(voucher.claims.cti),
        deviceKey: hex(voucher.claims.deviceKey),
        minVersion: voucher.claims.minVersion,
        gatewayId: voucher.claims.gatewayId,
        connector: voucher.claims.connector,
        hold: voucher.claims.hold,
        tariff: voucher.claims.tariff,
        gatewayKeyDigest: hex(voucher.claims.gatewayKeyDigest),
      },
      bytes: hex(voucher.bytes),
      revocationHash: hex(await revocationHash(crypto, voucher.claims.cti)),
    },
    hello: {
      description: 'Gateway hello (COSE_Sign1 by the gateway key) with a pinned ephemeral key and nonce',
      gatewayEphemeralPrivateKey: hex(derivedScalar(SEED, 'h1/gateway-eph')),
      body: {
        version: handshake.hello.body.version,
        gatewayId: handshake.hello.body.gatewayId,
        connectors: handshake.hello.body.connectors,
        nonce: hex(handshake.hello.body.nonce),
        gatewayTime: handshake.hello.body.gatewayTime,
        ephemeralKey: hex(handshake.hello.body.ephemeralKey),
        gatewayKey: hex(handshake.hello.body.gatewayKey),
      },
      bytes: hex(handshake.hello.bytes),
    },
    token: {
      description: 'Sealed identification token for the hello above, connector 1, and the first frames',
      phoneEphemeralPrivateKey: hex(phoneEphScalar),
      connector: 1,
      envelope: hex(phone.envelope),
      transcriptDigest: hex(phone.channel.transcriptDigest),
      deviceSignature: hex(token.proof.deviceSignature),
      statusFrame: {
        direction: 'gateway-to-phone',
        counter: 0,
        plaintext: hex(statusPlain),
        frame: hex(statusFrame),
      },
      stopFrame: {
        direction: 'phone-to-gateway',
        counter: 0,
        plaintext: hex(stopPlain),
        frame: hex(stopFrame),
      },
      stopSignedBytes: hex(deviceSignedBytes(DevicePurpose.STOP, phone.channel.transcriptDigest)),
    },
    attach: {
      description: 'Attach for the same voucher on a second connection (hello h2)',
      helloBytes: hex(handshake2.hello.bytes),
      gatewayEphemeralPrivateKey: hex(derivedScalar(SEED, 'h2/gateway-eph')),
      phoneEphemeralPrivateKey: hex(derivedScalar(SEED, 'h2/phone-eph')),
      envelope: hex(attach.envelope),
      transcriptDigest: hex(attach.channel.transcriptDigest),
    },
    receipt: {
      description: 'Receipt (COSE_Sign1 by the gateway key) for the token session, first in the chain',
      bytes: hex(receipt.bytes),
      hash: hex(await receiptHash(crypto, receipt.bytes)),
      computedAmount: receipt.body.computedAmount,
      chargedAmount: receipt.body.chargedAmount,
    },
    bundle: {
      description: 'Sync bundles signed by the root key: v1 (open audience) and v2 (live-bound, revocations)',
      v1: hex(world.bundle.bytes),
      v2: hex(bundle2.bytes),
      v2Nonce: hex(derivedScalar(SEED, 'sync-nonce').slice(0, 16)),
      revokedCti: hex(revokedCti),
    },
    report: {
      description: 'Gateway report with one receipt and one revocation attestation',
      bytes: hex(report.bytes),
    },
    tariff: {
      description:
        'Fee = exact total rounded half up once, charged = min(fee, hold); prices in 1/10,000 minor unit',
      cases: tariffCases.map((c) => ({
        ...c,
        computed: computeFee(c.tariff, c.energyWh, c.seconds),
        charged: chargedAmount(c.tariff, c.energyWh, c.seconds, c.hold),
      })),
    },
    cbor: {
      description: 'Inputs the strict decoder must refuse, with the expected error code',
      rejected: [
        { name: 'uint 1 in two bytes', hex: '1801', code: 101 },
        { name: 'uint 255 in three bytes', hex: '1900ff', code: 101 },
        { name: 'map keys out of order', hex: 'a202000100', code: 101 },
        { name: 'duplicate map key', hex: 'a201000100', code: 101 },
        { name: 'indefinite-length array', hex: '9f01ff', code: 101 },
        { name: 'half float', hex: 'f93c00', code: 104 },
        { name: 'tag 1 (epoch time)', hex: 'c11a5f5e1000', code: 104 },
        { name: 'undefined', hex: 'f7', code: 104 },
        { name: 'truncated byte string', hex: '4301', code: 100 },
        { name: 'trailing byte', hex: '0000', code: 100 },
        { name: 'array declaring 2^32 items', hex: '9b0000000100000000', code: 100 },
        { name: 'invalid UTF-8 text', hex: '62c328', code: 100 },
      ],
      accepted: [
        {
          name: 'canonical map',
          hex: hex(
            encodeCbor(
              new Map<number, number>([
                [1, 2],
                [-1, 3],
              ]),
            ),
          ),
        },
      ],
    },
  };
}

const vectors = await generate();
const check = process.argv.includes('--check');
let stale = 0;
mkdirSync(OUT, { recursive: true });
for (const [name, content] of Object.entries(vectors)) {
  const path = join(OUT, `${name}.json`);
  const text = `${JSON.stringify(content, null, 2)}\n`;
  if (check) {
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {}
    if (current !== text) {
      console.error(
        `vectors: ${path} differs from what the code produces now (run \`npm run vectors\` and review)`,
      );
      stale++;
    }
  } else writeFileSync(path, text);
}
if (check && stale) process.exit(1);
console.log(
  check
    ? `vectors: ${Object.keys(vectors).length} files match the code`
    : `vectors: wrote ${Object.keys(vectors).length} files to ${OUT}`,
);
