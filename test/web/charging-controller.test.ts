/**
 * The PWA's tap-to-charge controller against the real gateway code in-process (link protocol,
 * ledger, charging) and the phone's store on fake-indexeddb: success to receipt, stop, the
 * courier duties, rejections mapped to the driver's messages, wrong device, dropped link →
 * detached → re-attach, and the local checks made before any radio.
 */
import 'fake-indexeddb/auto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { ErrorCode, toHex } from '../../shared/src/index.ts';
import {
  ChargingController,
  type ChargingDeps,
  type TapState,
} from '../../web/src/charging/charging-controller.ts';
import { PhoneStore, type StoredVoucher } from '../../web/src/storage/db.ts';
import { startTestGateway, type TestGateway } from '../gateway/support/harness.ts';
import { issueTestVoucher, T0 } from '../support/world.ts';

let gw: TestGateway;
let store: PhoneStore;
let dbCounter = 0;

beforeEach(async () => {
  gw = await startTestGateway();
  store = await PhoneStore.open(`test-${dbCounter++}`);
});
afterEach(async () => {
  store.db.close();
  await gw.dispose();
});

async function storedVoucher(overrides: Parameters<typeof issueTestVoucher>[1] = {}) {
  const issued = await issueTestVoucher(gw.world, overrides);
  const c = issued.voucher.claims;
  const stored: StoredVoucher = {
    cti: toHex(c.cti),
    voucher: issued.voucher.bytes,
    // The in-process tests sign with node keys; the app keeps a WebCrypto key pair here.
    keyPair: {} as CryptoKeyPair,
    gatewayId: c.gatewayId,
    connector: c.connector,
    holdAmount: c.hold.amount,
    currency: c.hold.currency,
    issuedAt: c.issuedAt,
    expiresAt: c.expiresAt,
    localState: 'ready',
  };
  await store.putVoucher(stored);
  return { stored, deviceKey: issued.deviceKey };
}

function controller(
  deviceKey: Awaited<ReturnType<typeof storedVoucher>>['deviceKey'],
  more: Partial<ChargingDeps> = {},
) {
  const states: TapState[] = [];
  const links: ReturnType<TestGateway['transport']['connect']>[] = [];
  const deps: ChargingDeps = {
    crypto: nodeCrypto,
    store,
    connect: async () => {
      const link = gw.transport.connect({ mtu: 185 });
      links.push(link);
      return link;
    },
    classifyConnectError: () => ({ kind: 'bluetooth', failure: 'cancelled' }),
    deviceKey: async () => deviceKey,
    nowSeconds: () => T0 + 60,
    answerTimeoutMs: 5_000,
    ...more,
  };
  const c = new ChargingController(deps, (s) => states.push(s));
  return { c, states, links };
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('tap to charge (PWA controller, gateway in-process)', () => {
  it('starts the pile, follows status, stops with a signed request, keeps the receipt and the report', async () => {
    const { stored, deviceKey } = await storedVoucher();
    await store.putBundle({
      gatewayId: stored.gatewayId,
      bundle: gw.world.bundle.bytes,
      version: gw.world.bundle.body.version,
      fetchedAt: T0,
    });
    const { c, states } = controller(deviceKey);
    const started = await c.start(stored, 1);
    expect(started.phase).toBe('charging');
    expect(gw.pile.connector(1).contactorOn).toBe(true);
    expect((await store.getVoucher(stored.cti))?.localState).toBe('charging');

    gw.pile.deliver(1, 1_500);
    await until(() => c.state.phase === 'charging' && c.state.status.energyWh >= 1_500);

    await c.stop();
    await until(() => c.state.phase === 'finished');
    expect(gw.pile.connector(1).contactorOn).toBe(false);
    const receipts = await store.receipts();
    expect(receipts).toHaveLength(1);
    expect(receipts[0]?.cti).toBe(stored.cti);
    expect(receipts[0]?.energyWh).toBe(1_500);
    expect(receipts[0]?.uploaded).toBe(false);
    expect((await store.getVoucher(stored.cti))?.localState).toBe('used');
    // The courier asked for the gateway's report; it holds this session's receipt.
    // The driver taps "Done" at once: the report the phone carries still comes home.
    c.leave();
    let reports = await store.reports();
    for (let i = 0; i < 200 && reports.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      reports = await store.reports();
    }
    expect(reports.length).toBeGreaterThanOrEqual(1);
    expect(reports[0]?.gatewayId).toBe(stored.gatewayId);
    expect(states.map((s) => s.phase)).toEqual(
      expect.arrayContaining(['connecting', 'presenting', 'charging', 'stopping', 'finished']),
    );
  });

  it('a voucher already spent is refused by the gateway with its code, and nothing is stored', async () => {
    const { stored, deviceKey } = await storedVoucher({ connector: undefined });
    const first = controller(deviceKey);
    expect((await first.c.start(stored, 1)).phase).toBe('charging');
    // A second phone holding a copy of the same voucher (the local state would stop this one).
    const second = controller(deviceKey);
    const result = await second.c.start({ ...stored, localState: 'ready' }, 2);
    expect(result).toEqual({ phase: 'failed', failure: { kind: 'gateway', code: ErrorCode.VOUCHER_SPENT } });
    expect(await store.receipts()).toHaveLength(0);
  });

  it('an expired voucher is refused before the radio, and by the gateway when the phone clock is behind', async () => {
    const { stored, deviceKey } = await storedVoucher({
      issuedAt: T0 - 7_200,
      notBefore: T0 - 7_200,
      expiresAt: T0 - 3_600,
    });
    const local = controller(deviceKey);
    expect(await local.c.start(stored, 1)).toEqual({ phase: 'failed', failure: { kind: 'voucher-expired' } });
    expect(local.links).toHaveLength(0);
    const behind = controller(deviceKey, { nowSeconds: () => T0 - 7_000 });
    expect(await behind.c.start(stored, 1)).toEqual({
      phase: 'failed',
      failure: { kind: 'voucher-expired' },
    });
    expect(behind.links).toHaveLength(1);
    expect(gw.pile.connector(1).contactorOn).toBe(false);
  });

  it('a device whose hello fails the voucher key check is "wrong device" (pick again), before any write', async () => {
    const other = await startTestGateway({});
    try {
      // A voucher for another gateway key: the world's gateway key digest does not match.
      const { stored, deviceKey } = await storedVoucher({ gatewayKeyDigest: new Uint8Array(32).fill(7) });
      const { c, links } = controller(deviceKey);
      expect(await c.start(stored, 1)).toEqual({ phase: 'failed', failure: { kind: 'wrong-device' } });
      expect(links[0]?.counters.writes).toBe(0);
    } finally {
      await other.dispose();
    }
  });

  it('wrong station and wrong connector are caught from the scanned pile code', async () => {
    const { stored, deviceKey } = await storedVoucher();
    const { c } = controller(deviceKey);
    expect(c.precheck(stored, { gatewayId: 'gw-elsewhere', connector: 1 })).toEqual({
      kind: 'wrong-station',
    });
    expect(c.precheck(stored, { gatewayId: stored.gatewayId, connector: 2 })).toEqual({
      kind: 'gateway',
      code: ErrorCode.WRONG_CONNECTOR,
    });
    expect(c.precheck({ ...stored, cloudState: 'cancelled' })).toEqual({
      kind: 'voucher-unusable',
      state: 'cancelled',
    });
    expect(c.precheck(stored, { gatewayId: stored.gatewayId, connector: 1 })).toBeUndefined();
  });

  it('a dropped link leaves the pile charging; re-attach shows the session, stops it, gets the receipt', async () => {
    const { stored, deviceKey } = await storedVoucher();
    const { c, links } = controller(deviceKey);
    expect((await c.start(stored, 1)).phase).toBe('charging');
    links[0]?.disconnect();
    await until(() => c.state.phase === 'detached');
    expect(gw.pile.connector(1).contactorOn).toBe(true);

    gw.pile.deliver(1, 700);
    const attached = await c.attach((await store.getVoucher(stored.cti)) as StoredVoucher);
    expect(attached.phase).toBe('charging');
    await c.stop();
    await until(() => c.state.phase === 'finished');
    const [receipt] = await store.receipts();
    expect(receipt?.energyWh).toBe(700);
  });

  it('a radio that stops answering mid-presentation fails the tap instead of hanging', async () => {
    const { stored, deviceKey } = await storedVoucher();
    let disconnected = false;
    const { c } = controller(deviceKey, {
      answerTimeoutMs: 200,
      connect: async () => ({
        readHello: () => new Promise<Uint8Array>(() => {}),
        write: async () => {},
        onNotify: () => () => {},
        onDisconnect: () => () => {},
        disconnect: () => {
          disconnected = true;
        },
      }),
    });
    expect(await c.start(stored, 1)).toEqual({
      phase: 'failed',
      failure: { kind: 'gateway', code: ErrorCode.DEADLINE_EXCEEDED },
    });
    expect(disconnected).toBe(true);
    expect((await store.getVoucher(stored.cti))?.localState).toBe('ready');
  });

  it('a connect failure maps through the Bluetooth classifier', async () => {
    const { stored, deviceKey } = await storedVoucher();
    const { c } = controller(deviceKey, {
      connect: async () => {
        throw new Error('user cancelled');
      },
    });
    expect(await c.start(stored, 1)).toEqual({
      phase: 'failed',
      failure: { kind: 'bluetooth', failure: 'cancelled' },
    });
  });
});
