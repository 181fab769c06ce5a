/**
 * The gateway over the in-process transport: the real link protocol, authorization, ledger,
 * clock, sync and charging code, a FakePile, and the phone's PhoneSession. Every pipeline
 * rejection as the phone sees it, the abuse limits, attach, couriers, stop conditions,
 * clock rules and restart recovery.
 */

import { afterEach, describe, expect, it } from 'vitest';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  chunkMessage,
  ErrorCode,
  encodePdu,
  PduType,
  type PhoneEvent,
  type PhoneSession,
  parseReport,
  revocationHash,
  SessionState,
  StopReason,
  signBundle,
  verifyPresentationProof,
  verifyReceipt,
  verifyReport,
} from '../../shared/src/index.ts';
import { rogueToken } from '../support/rogue.ts';
import { issueTestVoucher, T0 } from '../support/world.ts';
import { FakePile } from './support/fake-pile.ts';
import { type StartOptions, startTestGateway, type TestGateway } from './support/harness.ts';

const crypto = nodeCrypto;
const running: TestGateway[] = [];
afterEach(async () => {
  while (running.length) await running.pop()!.dispose();
});

async function gw(options: StartOptions = {}): Promise<TestGateway> {
  const g = await startTestGateway(options);
  running.push(g);
  return g;
}

const isKind = (kind: PhoneEvent['kind']) => (e: PhoneEvent) => e.kind === kind;
const charging = (e: PhoneEvent) => e.kind === 'status' && e.status.state === SessionState.CHARGING;

/** Presents a token at `connector` (or an attach) and returns the rejection code. */
async function rejectionOf(session: PhoneSession, connector: number | 'attach' = 1): Promise<number> {
  const rejected = session.next((e) => e.kind === 'rejected', 5_000);
  await session.present(connector === 'attach' ? undefined : connector);
  const event = await rejected;
  return event.kind === 'rejected' ? event.code : -1;
}

describe('gateway: a tap from token to receipt', () => {
  it('authorizes, charges, reports status, stops on request and signs a verifiable receipt', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const { session } = g.phone(voucher.bytes, deviceKey, 23);
    const started = session.next(charging, 5_000);
    await session.present(1);
    await started;
    expect(g.pile.connector(1).contactorOn).toBe(true);
    expect(g.gateway.ledger.isSpent(voucher.claims.cti)).toBe(true);

    const progressed = session.next((e) => e.kind === 'status' && e.status.energyWh === 4_000, 5_000);
    g.pile.deliver(1, 4_000);
    const status = await progressed;
    expect(status.kind === 'status' && status.status.amount).toBe(640); // 4 kWh × 1.60

    const receiptEvent = session.next(isKind('receipt'), 5_000);
    await session.stop();
    const event = await receiptEvent;
    if (event.kind !== 'receipt') throw new Error('no receipt');
    const receipt = event.receipt;
    await verifyReceipt(crypto, receipt, g.world.gateway.key.publicKey);
    expect(receipt.body.energyWh).toBe(4_000);
    expect(receipt.body.chargedAmount).toBe(640);
    expect(receipt.body.stopReason).toBe(StopReason.DRIVER_REQUEST);
    const proofOk = await verifyPresentationProof(crypto, receipt.body.proof, {
      deviceKey: voucher.claims.deviceKey,
      cti: voucher.claims.cti,
      gatewayKey: g.world.gateway.key.publicKey,
      gatewayId: g.world.gateway.id,
    });
    expect(proofOk).toBe(true);
    expect(g.pile.connector(1).contactorOn).toBe(false);
    expect(g.gateway.ledger.verify().ok).toBe(true);
    expect(g.gateway.ledger.pendingReceiptCount()).toBe(1);
  });

  it('two phones on two connectors charge at once', async () => {
    const g = await gw();
    const a = await issueTestVoucher(g.world, { connector: 1 });
    const b = await issueTestVoucher(g.world, { connector: 2 });
    const pa = g.phone(a.voucher.bytes, a.deviceKey).session;
    const pb = g.phone(b.voucher.bytes, b.deviceKey).session;
    const both = Promise.all([pa.next(charging, 5_000), pb.next(charging, 5_000)]);
    await Promise.all([pa.present(1), pb.present(2)]);
    await both;
    expect(g.pile.connector(1).contactorOn && g.pile.connector(2).contactorOn).toBe(true);
  });

  it('the same voucher from two phones at once: exactly one wins', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world, { connector: undefined });
    const sessions = [g.phone(voucher.bytes, deviceKey).session, g.phone(voucher.bytes, deviceKey).session];
    const outcomes = sessions.map((s) => s.next((e) => charging(e) || e.kind === 'rejected', 5_000));
    await Promise.all([sessions[0]!.present(1), sessions[1]!.present(2)]);
    const results = await Promise.all(outcomes);
    expect(results.filter(charging)).toHaveLength(1);
    const loser = results.find((e) => e.kind === 'rejected');
    expect(loser?.kind === 'rejected' && loser.code).toBe(ErrorCode.VOUCHER_SPENT);
    expect([g.pile.connector(1).contactorOn, g.pile.connector(2).contactorOn].filter(Boolean)).toHaveLength(
      1,
    );
  });
});

describe('gateway: each rejection reaches the phone in-band', () => {
  it('voucher used twice', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const first = g.phone(voucher.bytes, deviceKey).session;
    const ok = first.next(charging, 5_000);
    await first.present(1);
    await ok;
    const again = g.phone(voucher.bytes, deviceKey).session;
    expect(await rejectionOf(again, 1)).toBe(ErrorCode.VOUCHER_SPENT);
  });

  it('expired voucher', async () => {
    const g = await gw({ systemNow: () => T0 + 8 * 86_400 });
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    expect(await rejectionOf(g.phone(voucher.bytes, deviceKey).session)).toBe(ErrorCode.VOUCHER_EXPIRED);
  });

  it('no bundle installed yet: no issuer key is trusted', async () => {
    const g = await gw({ installBundle: false });
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    expect(await rejectionOf(g.phone(voucher.bytes, deviceKey).session)).toBe(ErrorCode.UNKNOWN_KID);
  });

  it('wrong gateway (a phone that skips its own check)', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world, { gatewayId: 'gw-elsewhere' });
    const { link, session } = g.phone(voucher.bytes, deviceKey);
    const hello = (await import('../../shared/src/index.ts')).parseHello(await link.readHello());
    const rejected = session.next(isKind('rejected'), 5_000);
    const envelope = await rogueToken(crypto, hello, voucher, deviceKey);
    for (const unit of chunkMessage(encodePdu(PduType.PRESENTATION, envelope), 512)) await link.write(unit);
    const event = await rejected;
    expect(event.kind === 'rejected' && event.code).toBe(ErrorCode.WRONG_GATEWAY);
  });

  it('wrong connector, busy connector, faulted connector, vehicle not plugged', async () => {
    const pile = new FakePile([1, 2, 3]);
    const g = await gw({ pile });
    const v = await issueTestVoucher(g.world, { connector: 2 });
    expect(await rejectionOf(g.phone(v.voucher.bytes, v.deviceKey).session, 1)).toBe(
      ErrorCode.WRONG_CONNECTOR,
    );

    const first = await issueTestVoucher(g.world, { connector: undefined });
    const s = g.phone(first.voucher.bytes, first.deviceKey).session;
    const ok = s.next(charging, 5_000);
    await s.present(1);
    await ok;
    const second = await issueTestVoucher(g.world, { connector: undefined });
    expect(await rejectionOf(g.phone(second.voucher.bytes, second.deviceKey).session, 1)).toBe(
      ErrorCode.CONNECTOR_BUSY,
    );

    pile.fault(2);
    const third = await issueTestVoucher(g.world, { connector: undefined });
    expect(await rejectionOf(g.phone(third.voucher.bytes, third.deviceKey).session, 2)).toBe(
      ErrorCode.CONNECTOR_FAULTED,
    );

    pile.connector(3).plugged = false;
    const fourth = await issueTestVoucher(g.world, { connector: undefined });
    expect(await rejectionOf(g.phone(fourth.voucher.bytes, fourth.deviceKey).session, 3)).toBe(
      ErrorCode.VEHICLE_NOT_PLUGGED,
    );
    // None of the refused vouchers was spent: the driver can use them elsewhere.
    for (const r of [v, second, third, fourth])
      expect(g.gateway.ledger.isSpent(r.voucher.claims.cti)).toBe(false);
  });

  it('amount below the station minimum; pile that does not start', async () => {
    const g = await gw({ config: { minimumAmount: 1_000 } });
    const low = await issueTestVoucher(g.world, { hold: { amount: 999, currency: 'CNY' } });
    expect(await rejectionOf(g.phone(low.voucher.bytes, low.deviceKey).session)).toBe(
      ErrorCode.AMOUNT_TOO_LOW,
    );
    g.pile.connector(1).refuseStart = true;
    const v = await issueTestVoucher(g.world);
    const session = g.phone(v.voucher.bytes, v.deviceKey).session;
    expect(await rejectionOf(session)).toBe(ErrorCode.PILE_START_FAILED);
    // Spent, but closed at once with a zero receipt: the cloud refunds the whole hold.
    expect(g.gateway.ledger.sessionByCti(v.voucher.claims.cti)?.state).toBe('closed');
  });

  it('revoked voucher, via a bundle the phone carried in', async () => {
    const g = await gw();
    const victim = await issueTestVoucher(g.world);
    const bundle = await signBundle(g.world.root.key, g.world.root.kid, {
      ...g.world.bundle.body,
      version: 2,
      revokedVouchers: [await revocationHash(crypto, victim.voucher.claims.cti)],
    });
    const courier = await issueTestVoucher(g.world, { connector: 2 });
    const s = g.phone(courier.voucher.bytes, courier.deviceKey).session;
    const ok = s.next(charging, 5_000);
    await s.present(2);
    await ok;
    const ack = s.next(isKind('ack'), 5_000);
    await s.sendBundle(bundle.bytes);
    expect(await ack).toMatchObject({ kind: 'ack', code: 0 });
    expect(g.gateway.sync.bundleVersion).toBe(2);
    const stale = s.next(isKind('ack'), 5_000);
    await s.sendBundle(g.world.bundle.bytes);
    expect(await stale).toMatchObject({ kind: 'ack', code: ErrorCode.BUNDLE_OUTDATED });
    expect(await rejectionOf(g.phone(victim.voucher.bytes, victim.deviceKey).session)).toBe(
      ErrorCode.VOUCHER_REVOKED,
    );
  });
});

describe('gateway: abuse limits', () => {
  it('a phone that reads the hello and never presents is dropped at the deadline', async () => {
    const g = await gw({ limits: { presentationDeadlineMs: 1_000 } });
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const { link, session } = g.phone(voucher.bytes, deviceKey);
    const rejected = session.next(isKind('rejected'), 5_000);
    const gone = session.next(isKind('disconnected'), 5_000);
    await link.readHello();
    expect(await rejected).toMatchObject({ code: ErrorCode.DEADLINE_EXCEEDED });
    await gone;
    expect(g.gateway.links.linkCount).toBe(0);
  });

  it('an expired hello is refused', async () => {
    const g = await gw({ limits: { helloTtlMs: 1_000, presentationDeadlineMs: 5_000 } });
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const { link, session } = g.phone(voucher.bytes, deviceKey);
    await link.readHello();
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await rejectionOf(session)).toBe(ErrorCode.HELLO_EXPIRED);
  });

  it('malformed, oversized and out-of-order input gets an error code and the link is dropped; the gateway lives on', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const cases: [Uint8Array, number][] = [
      [Uint8Array.of(0x00, 0x01, 0x02, 0x03), ErrorCode.MALFORMED],
      [Uint8Array.of(0x00, 0x03, 0x09, 0x00, 0x00), ErrorCode.UNEXPECTED_MESSAGE],
      [Uint8Array.of(0x00, 0x03, PduType.FRAME, 0x82, 0x00), ErrorCode.UNEXPECTED_MESSAGE],
      [Uint8Array.of(0x00, 0x04, PduType.PRESENTATION, 0xa1, 0x01, 0x02), ErrorCode.UNEXPECTED_TYPE],
      [Uint8Array.of(0xff, 0xff, 1, 2, 3), ErrorCode.FRAME_TOO_LARGE],
    ];
    for (const [bytes, code] of cases) {
      const { link, session } = g.phone(voucher.bytes, deviceKey);
      await link.readHello();
      const rejected = session.next(isKind('rejected'), 5_000);
      await link.write(bytes);
      expect(await rejected).toMatchObject({ code });
    }
    const { link, session } = g.phone(voucher.bytes, deviceKey);
    await link.readHello();
    const garbage = session.next(isKind('rejected'), 5_000);
    await link.write(Uint8Array.of(0x00, 0x05, PduType.PRESENTATION, 0x84, 0x01, 0x01, 0x40));
    expect((await garbage).kind).toBe('rejected');
    // Still serving: an honest tap works.
    const honest = g.phone(voucher.bytes, deviceKey).session;
    const ok = honest.next(charging, 5_000);
    await honest.present(1);
    await ok;
  });

  it('too many writes on one link', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const { link, session } = g.phone(voucher.bytes, deviceKey);
    const rejected = session.next(isKind('rejected'), 5_000);
    await link.write(Uint8Array.of(0xea, 0x60)); // announce a 60,000-byte message
    for (let i = 0; i < 401; i++) await link.write(new Uint8Array(100)).catch(() => {});
    expect(await rejected).toMatchObject({ code: ErrorCode.RATE_LIMITED });
  });

  it('unauthenticated links are capped with one slot always kept free', async () => {
    const g = await gw({ limits: { maxUnauthenticatedLinks: 3 } });
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const squatters = Array.from({ length: 5 }, () => g.phone(voucher.bytes, deviceKey));
    expect(g.gateway.links.unauthenticatedCount).toBeLessThanOrEqual(2);
    // The driver arriving last still gets through.
    const driver = g.phone(voucher.bytes, deviceKey).session;
    const ok = driver.next(charging, 5_000);
    await driver.present(1);
    await ok;
    expect(squatters.length).toBe(5);
  });
});

describe('gateway: reconnecting and couriers', () => {
  it('a phone whose link dropped attaches to see status, stop and fetch its receipt; a stranger cannot', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const first = g.phone(voucher.bytes, deviceKey);
    const ok = first.session.next(charging, 5_000);
    await first.session.present(1);
    await ok;
    first.link.disconnect();
    g.pile.deliver(1, 2_000);
    expect(g.pile.connector(1).contactorOn).toBe(true); // charging goes on without the phone

    const stranger = await nodeCrypto.generateSigningKey();
    expect(await rejectionOf(g.phone(voucher.bytes, stranger).session, 'attach')).toBe(
      ErrorCode.WRONG_DEVICE,
    );

    const back = g.phone(voucher.bytes, deviceKey).session;
    const status = back.next((e) => e.kind === 'status' && e.status.energyWh === 2_000, 5_000);
    await back.present(); // attach
    await status;
    const receipt = back.next(isKind('receipt'), 5_000);
    await back.stop();
    const r = await receipt;
    expect(r.kind === 'receipt' && r.receipt.body.energyWh).toBe(2_000);

    const later = g.phone(voucher.bytes, deviceKey).session;
    const again = later.next(isKind('receipt'), 5_000);
    await later.present();
    const fetched = await again;
    expect(fetched.kind === 'receipt' && fetched.receipt.bytes).toEqual(
      r.kind === 'receipt' && r.receipt.bytes,
    );
  });

  it('hands a phone the signed gateway report to carry home', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    const s = g.phone(voucher.bytes, deviceKey).session;
    const ok = s.next(charging, 5_000);
    await s.present(1);
    await ok;
    const receipt = s.next(isKind('receipt'), 5_000);
    await s.stop();
    await receipt;
    const report = s.next(isKind('report'), 5_000);
    await s.requestReport();
    const event = await report;
    if (event.kind !== 'report') throw new Error('no report');
    const parsed = parseReport(event.report);
    await verifyReport(crypto, parsed, g.world.gateway.key.publicKey);
    expect(parsed.body.receipts).toHaveLength(1);
    expect(parsed.body.checkpoint.sequence).toBeGreaterThan(0);
  });
});

describe('gateway: stop conditions', () => {
  it('stops before the hold is exceeded and never charges more than the hold', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world, {
      hold: { amount: 500, currency: 'CNY' },
    });
    const s = g.phone(voucher.bytes, deviceKey).session;
    const ok = s.next(charging, 5_000);
    await s.present(1);
    await ok;
    const receipt = s.next(isKind('receipt'), 5_000);
    for (let i = 0; i < 40 && g.pile.connector(1).contactorOn; i++) g.pile.deliver(1, 100);
    const r = await receipt;
    if (r.kind !== 'receipt') throw new Error('no receipt');
    expect(r.receipt.body.stopReason).toBe(StopReason.HOLD_REACHED);
    expect(r.receipt.body.chargedAmount).toBeLessThanOrEqual(500);
    expect(r.receipt.body.computedAmount).toBeLessThanOrEqual(500);
    expect(g.pile.commands.some((c) => c.startsWith('start 1 max='))).toBe(true);
  });

  it('unplug and fault end the session with their reason', async () => {
    const g = await gw();
    for (const [action, reason] of [
      ['unplug', StopReason.UNPLUGGED],
      ['fault', StopReason.FAULT],
    ] as const) {
      const c = action === 'unplug' ? 1 : 2;
      const { voucher, deviceKey } = await issueTestVoucher(g.world, { connector: c });
      const s = g.phone(voucher.bytes, deviceKey).session;
      const ok = s.next(charging, 5_000);
      await s.present(c);
      await ok;
      const receipt = s.next(isKind('receipt'), 5_000);
      g.pile.deliver(c, 300);
      if (action === 'unplug') g.pile.unplug(c);
      else g.pile.fault(c);
      const r = await receipt;
      expect(r.kind === 'receipt' && r.receipt.body.stopReason).toBe(reason);
      expect(r.kind === 'receipt' && r.receipt.body.energyWh).toBe(300);
    }
  });
});

describe('gateway: clock rules (cold starts)', () => {
  for (const [label, offset] of [
    ['hours behind', -6 * 3_600],
    ['days behind', -20 * 86_400],
  ] as const) {
    it(`system clock ${label}: the voucher's iat lifts the working clock, no deadlock`, async () => {
      const g = await gw({ systemNow: () => T0 + offset });
      const { voucher, deviceKey } = await issueTestVoucher(g.world);
      const s = g.phone(voucher.bytes, deviceKey).session;
      const ok = s.next(charging, 5_000);
      await s.present(1);
      await ok;
      expect(g.gateway.clock.now()).toBeGreaterThanOrEqual(T0);
      expect(g.gateway.ledger.timeFloor()).toBeGreaterThanOrEqual(T0);
    });
  }

  it('system clock hours ahead (within tolerance of nothing): a voucher past exp is refused — fail closed', async () => {
    const g = await gw({ systemNow: () => T0 + 7 * 86_400 + 3_600 });
    const { voucher, deviceKey } = await issueTestVoucher(g.world);
    expect(await rejectionOf(g.phone(voucher.bytes, deviceKey).session)).toBe(ErrorCode.VOUCHER_EXPIRED);
  });

  it('the working clock never runs backwards across restarts, except by nonce-bound cloud time', async () => {
    const g = await gw({ systemNow: () => T0 + 86_400 });
    const before = g.gateway.clock.now();
    g.gateway.clock.persist();
    const again = await g.restart({ systemNow: () => T0 - 30 * 86_400 });
    running.splice(running.indexOf(g), 1, again);
    expect(again.gateway.clock.now()).toBeGreaterThanOrEqual(before);
    again.gateway.clock.setCloudTime(T0);
    expect(again.gateway.clock.now()).toBeLessThan(before);
  });
});

describe('gateway: restart recovery', () => {
  it('resumes a session whose pile is still on; closes one whose pile went off; switches off an orphan', async () => {
    const g = await gw();
    const a = await issueTestVoucher(g.world, { connector: 1 });
    const b = await issueTestVoucher(g.world, { connector: 2 });
    for (const [v, c] of [
      [a, 1],
      [b, 2],
    ] as const) {
      const s = g.phone(v.voucher.bytes, v.deviceKey).session;
      const ok = s.next(charging, 5_000);
      await s.present(c);
      await ok;
      g.pile.deliver(c, 1_000);
    }
    await g.stop();
    g.pile.deliver(1, 500); // pile 1 kept charging while the gateway was down
    g.pile.connector(2).contactorOn = false; // pile 2 went off (e.g. its own fault handling)
    const again = await g.restart();
    running.splice(running.indexOf(g), 1, again);
    const open = again.gateway.ledger.openSessions();
    expect(open.map((s) => s.connector)).toEqual([1]);
    const closed = again.gateway.ledger.sessionByCti(b.voucher.claims.cti);
    expect(closed?.state).toBe('closed');
    expect(again.gateway.ledger.verify().ok).toBe(true);
    // The resumed session carries on and stops normally.
    const back = again.phone(a.voucher.bytes, a.deviceKey).session;
    const status = back.next((e) => e.kind === 'status' && e.status.energyWh === 1_500, 5_000);
    await back.present();
    await status;

    await again.stop();
    again.pile.connector(2).contactorOn = true; // a connector on with no open session
    const third = await again.restart();
    running.splice(running.indexOf(again), 1, third);
    expect(third.pile.connector(2).contactorOn).toBe(false);
    expect(third.pile.connector(1).contactorOn).toBe(true);
  });
});

describe('gateway: recovery when the pile cannot be read', () => {
  it('never closes a session blind: it sends a stop, keeps the session open, and carries on when the pile answers', async () => {
    const g = await gw();
    const { voucher, deviceKey } = await issueTestVoucher(g.world, { connector: 1 });
    const s = g.phone(voucher.bytes, deviceKey).session;
    const ok = s.next(charging, 5_000);
    await s.present(1);
    await ok;
    g.pile.deliver(1, 800);
    await g.stop();
    const { read, stop } = { read: g.pile.read.bind(g.pile), stop: g.pile.stop.bind(g.pile) };
    const down = async () => {
      throw new Error('pile link down');
    };
    g.pile.read = down;
    g.pile.stop = down;
    const again = await g.restart();
    running.splice(running.indexOf(g), 1, again);
    expect(again.gateway.ledger.openSessions()).toHaveLength(1); // not closed on a guess
    again.pile.read = read;
    again.pile.stop = stop;
    again.pile.deliver(1, 200); // the pile answers: still on, still charging
    const back = again.phone(voucher.bytes, deviceKey).session;
    const status = back.next((e) => e.kind === 'status' && e.status.energyWh === 1_000, 5_000);
    await back.present();
    await status;
    const receipt = back.next((e) => e.kind === 'receipt', 5_000);
    await back.stop();
    const r = await receipt;
    expect(r.kind === 'receipt' && r.receipt.body.energyWh).toBe(1_000);
  });
});
