/**
 * `npm run demo:protocol`: the whole protocol in one process, printed step
 * by step — issue a voucher, the gateway's hello, the phone's sealed token, the gateway's
 * authorization, a secure status frame, the receipt, and the cloud's check of it.
 */

import { nodeCrypto } from '../shared/src/crypto/node.ts';
import {
  authorizeToken,
  chargedAmount,
  computeFee,
  createTokenPresentation,
  decodeSessionMessage,
  encodeSessionMessage,
  GENESIS_RECEIPT_HASH,
  openPresentation,
  PresentationKind,
  parseReceipt,
  SessionMessageType,
  SessionState,
  StopReason,
  signReceipt,
  toHex,
  verifyPresentationProof,
  verifyReceipt,
  verifyVoucherSignature,
} from '../shared/src/index.ts';
import {
  buildWorld,
  issueTestVoucher,
  newHandshake,
  simpleAuthorizationContext,
  T0,
} from '../test/support/world.ts';

const crypto = nodeCrypto;
const started = performance.now();
const step = (n: number, title: string, detail: string) =>
  console.log(
    `${String(n).padStart(2)}. ${title.padEnd(40)} ${detail}  (+${(performance.now() - started).toFixed(1)} ms)`,
  );

const world = await buildWorld(crypto);
step(
  1,
  'cloud: keys and root-signed bundle',
  `bundle v${world.bundle.body.version}, ${world.bundle.bytes.length} B`,
);

const { voucher, deviceKey } = await issueTestVoucher(world);
await verifyVoucherSignature(crypto, voucher, world.keyring);
const c = voucher.claims;
step(
  2,
  'cloud: issue voucher (hold)',
  `${voucher.bytes.length} B, hold ${c.hold.amount} ${c.hold.currency}, cti ${toHex(c.cti).slice(0, 12)}…, for ${c.gatewayId}#${c.connector}`,
);

const handshake = await newHandshake(world);
step(
  3,
  'gateway: hello (signed, fresh nonce)',
  `${handshake.hello.bytes.length} B, nonce ${toHex(handshake.hello.body.nonce).slice(0, 12)}…`,
);

const phone = await createTokenPresentation(crypto, {
  helloBytes: handshake.hello.bytes,
  voucherBytes: voucher.bytes,
  deviceKey,
  connector: 1,
});
step(4, 'phone: hello checked, token sealed', `${phone.envelope.length} B sealed token (target <= 400)`);

const opened = await openPresentation(crypto, handshake, phone.envelope);
if (opened.kind !== PresentationKind.TOKEN) throw new Error('expected a token');
const ctx = simpleAuthorizationContext(world);
const auth = await authorizeToken(ctx, handshake, opened);
step(5, 'gateway: token authorized', 'issuer sig, time, target, not spent/revoked, device sig, amount');

const energyWh = 12_345;
const seconds = 40 * 60;
const status = await auth.channel.seal(
  encodeSessionMessage({
    type: SessionMessageType.STATUS,
    status: {
      sessionId: new Uint8Array(16).fill(7),
      state: SessionState.CHARGING,
      connector: 1,
      energyWh,
      amount: computeFee(c.tariff, energyWh, seconds),
      hold: c.hold.amount,
      elapsedSeconds: seconds,
    },
  }),
);
const seen = decodeSessionMessage(await phone.channel.open(status));
if (seen.type !== SessionMessageType.STATUS) throw new Error('expected status');
step(
  6,
  'phone: encrypted status received',
  `${seen.status.energyWh} Wh, ${seen.status.amount} of ${seen.status.hold} minor units`,
);

const receipt = await signReceipt(world.gateway.key, world.gateway.kid, {
  cti: c.cti,
  sessionId: new Uint8Array(16).fill(7),
  gatewayId: world.gateway.id,
  connector: 1,
  meterId: 'SIM-METER-1',
  meterStartWh: 1_000_000,
  meterStopWh: 1_000_000 + energyWh,
  startedAt: T0 + 60,
  stoppedAt: T0 + 60 + seconds,
  energyWh,
  tariff: c.tariff,
  computedAmount: computeFee(c.tariff, energyWh, seconds),
  chargedAmount: chargedAmount(c.tariff, energyWh, seconds, c.hold.amount),
  currency: c.hold.currency,
  proof: auth.proof,
  sequence: 1,
  previousReceiptHash: GENESIS_RECEIPT_HASH,
  stopReason: StopReason.DRIVER_REQUEST,
});
step(
  7,
  'gateway: receipt signed',
  `${receipt.bytes.length} B, charged ${receipt.body.chargedAmount} ${receipt.body.currency}`,
);

const atCloud = parseReceipt(receipt.bytes);
await verifyReceipt(crypto, atCloud, world.gateway.key.publicKey);
const present = await verifyPresentationProof(crypto, atCloud.body.proof, {
  deviceKey: c.deviceKey,
  cti: c.cti,
  gatewayKey: world.gateway.key.publicKey,
  gatewayId: world.gateway.id,
});
if (!present) throw new Error('presentation proof failed');
step(
  8,
  'cloud: receipt + presentation proof ok',
  `capture ${atCloud.body.chargedAmount}, refund ${c.hold.amount - atCloud.body.chargedAmount}`,
);
console.log(
  '\nProtocol demo finished. The gateway and the cloud also run on their own (see README); the one-command station with the app comes with issue 5.',
);
