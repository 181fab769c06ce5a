/**
 * A paid session on a relay-enabled EVSE, end to end: the real gateway (link protocol, ledger,
 * charging logic) drives the relay driver (fake GPIO line layer with a simulated contactor, a
 * real Modbus TCP meter). The phone starts charging, the meter's register reaches the receipt;
 * a meter that falls silent ends the session as a fault on the last good register with the
 * enable dropped; and a gateway restart in the middle of a session (the relay cannot carry it:
 * close drops the enable) is closed by the start-up recovery on the meter's register, including
 * the energy delivered after the last reading the gateway saw.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../gateway/src/config.ts';
import { type RunningGateway, startGateway } from '../../gateway/src/gateway.ts';
import { pinRootKey } from '../../gateway/src/keys.ts';
import { InProcessTransport } from '../../gateway/src/link/in-process.ts';
import { relayPileSchema } from '../../gateway/src/pile/relay/config.ts';
import { openRelayPile } from '../../gateway/src/pile/relay/open-relay-pile.ts';
import type { RelayPileDriver } from '../../gateway/src/pile/relay/relay-driver.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  type PhoneEvent,
  PhoneSession,
  parseReceipt,
  SessionState,
  StopReason,
  toHex,
  verifyReceipt,
} from '../../shared/src/index.ts';
import { buildWorld, derivedScalar, issueTestVoucher, T0, type World } from '../support/world.ts';
import { FakeContactor, FakeGpio } from './support/fake-gpio.ts';
import { ManualTimers } from './support/manual-timers.ts';
import { MeterBank, type RunningModbusServer, startModbusTcpServer } from './support/modbus-meter-server.ts';

const SEED = 'relay-session-tests';
let bank: MeterBank;
let server: RunningModbusServer;
let world: World;
let dataDir: string;

beforeAll(async () => {
  bank = new MeterBank();
  server = await startModbusTcpServer(bank);
  world = await buildWorld(nodeCrypto, SEED);
  dataDir = mkdtempSync(join(tmpdir(), 'pilepass-relay-gw-'));
  writeFileSync(
    join(dataDir, 'gateway-key.json'),
    JSON.stringify({ privateKey: toHex(derivedScalar(SEED, 'gateway')) }),
    {
      mode: 0o600,
    },
  );
  pinRootKey(dataDir, { kid: world.root.kid, publicKey: world.root.key.publicKey });
});

afterAll(async () => {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Station {
  readonly gateway: RunningGateway;
  readonly driver: RelayPileDriver;
  readonly transport: InProcessTransport;
  readonly gpio: FakeGpio;
  readonly timers: ManualTimers;
}

async function station(): Promise<Station> {
  const gpio = new FakeGpio();
  const timers = new ManualTimers();
  new FakeContactor(gpio, timers, { enableLine: 17, feedbackLine: 27 });
  const relay = relayPileSchema.parse({
    connectors: [
      {
        connector: 1,
        enable: { line: 17 },
        feedback: { line: 27 },
        meter: { type: 'modbus', unitId: 1, model: 'sdm120', meterId: 'SDM120-42' },
      },
    ],
    modbus: { port: server.port, timeoutMs: 100 },
    meterSilentMs: 3_000,
  });
  const driver = await openRelayPile(relay, { dataDir, gpio, timers, pollMs: 0, onError: () => {} });
  const config = parseConfig({
    gatewayId: world.gateway.id,
    dataDir,
    ble: 'in-process',
    connectors: [1],
    logLevel: 'silent',
  });
  const transport = new InProcessTransport();
  const gateway = await startGateway(config, { transport, pile: driver, systemNow: () => T0 + 60 });
  if (gateway.sync.bundleVersion === undefined) await gateway.sync.installBundle(world.bundle.bytes);
  return { gateway, driver, transport, gpio, timers };
}

const charging = (e: PhoneEvent) => e.kind === 'status' && e.status.state === SessionState.CHARGING;

describe('a paid session on a relay-enabled EVSE', () => {
  it('charges on the Modbus register and ends on a silent meter with a receipt on the last good register', async () => {
    bank.add(1, { model: 'sdm120', kwh: 2_000, powerW: 0 });
    const s = await station();
    try {
      const { voucher, deviceKey } = await issueTestVoucher(world);
      const session = new PhoneSession({
        crypto: nodeCrypto,
        link: s.transport.connect({ mtu: 185 }),
        voucherBytes: voucher.bytes,
        deviceKey,
      });
      const started = session.next(charging, 5_000);
      await session.present(1);
      await started;
      expect(s.gpio.level(17)).toBe(true);
      await s.timers.advance(150); // the vehicle asks, the EVSE closes

      const progressed = session.next((e) => e.kind === 'status' && e.status.energyWh === 2_500, 5_000);
      bank.unit(1).kwh = 2_002.5;
      bank.unit(1).powerW = 7_000;
      await s.driver.poll();
      await progressed;

      const receiptEvent = session.next((e) => e.kind === 'receipt', 10_000);
      bank.unit(1).mode = 'silent';
      await s.timers.advance(3_000);
      await s.driver.poll(); // the silence rule drops the enable and reports the fault
      expect(s.gpio.level(17)).toBe(false);
      await s.timers.advance(100); // the contactor opens; the driver's stop confirms it
      const event = await receiptEvent;
      if (event.kind !== 'receipt') throw new Error('no receipt');
      await verifyReceipt(nodeCrypto, event.receipt, world.gateway.key.publicKey);
      expect(event.receipt.body).toMatchObject({
        meterId: 'SDM120-42',
        meterStartWh: 2_000_000,
        meterStopWh: 2_002_500,
        energyWh: 2_500,
        stopReason: StopReason.FAULT,
      });
      expect(s.gateway.charging.activeCount).toBe(0);
    } finally {
      bank.unit(1).mode = 'ok';
      await s.timers.settle(s.gateway.stop());
    }
  });

  it('a restart mid-session: the enable drops, the recovery closes the session on the register', async () => {
    bank.add(1, { model: 'sdm120', kwh: 3_000, powerW: 0 });
    const first = await station();
    const { voucher, deviceKey } = await issueTestVoucher(world);
    const session = new PhoneSession({
      crypto: nodeCrypto,
      link: first.transport.connect({ mtu: 185 }),
      voucherBytes: voucher.bytes,
      deviceKey,
    });
    const started = session.next(charging, 5_000);
    await session.present(1);
    await started;
    await first.timers.advance(150);
    bank.unit(1).kwh = 3_001;
    await first.driver.poll();
    bank.unit(1).kwh = 3_001.2; // delivered after the last reading the gateway saw
    await first.timers.settle(first.gateway.stop());
    expect(first.gpio.level(17)).toBe(false);
    expect(first.gpio.held.size).toBe(0);

    const second = await station();
    try {
      expect(second.gpio.level(17)).toBe(false); // nothing switched on at start-up
      expect(second.gateway.ledger.openSessions()).toEqual([]);
      const record = second.gateway.ledger.sessionByCti(voucher.claims.cti);
      expect(record?.state).toBe('closed');
      const receipt = parseReceipt(record?.receipt as Uint8Array);
      expect(receipt.body).toMatchObject({
        meterStartWh: 3_000_000,
        meterStopWh: 3_001_200,
        energyWh: 1_200,
        stopReason: StopReason.GATEWAY_RESTART,
      });
    } finally {
      await second.timers.settle(second.gateway.stop());
    }
  });
});
