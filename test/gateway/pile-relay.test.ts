/**
 * The relay-enabled EVSE driver against a fake GPIO line layer (this kernel has no GPIO) with a
 * simulated contactor on virtual time, and real Modbus meters: modbus-serial's ServerTCP on
 * loopback, and Modbus RTU through a socat pty pair. Covers start/stop, the contactor-open bound
 * (welded), meter silence, feedback mismatch, unplug, EVSE error input, the energy cap, S0 pulse
 * counting with its persisted reserve, close switching everything off, and the libgpiod layer
 * against a fake of node-libgpiod's API.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PileEvent } from '../../gateway/src/contracts.ts';
import { type RelayPileConfig, relayPileSchema } from '../../gateway/src/pile/relay/config.ts';
import { GpioError } from '../../gateway/src/pile/relay/gpio.ts';
import { gpioReleaseBehaviour } from '../../gateway/src/pile/relay/gpio-release.ts';
import {
  type LibgpiodLine,
  type LibgpiodModule,
  loadLibgpiod,
  openLibgpiodLines,
} from '../../gateway/src/pile/relay/libgpiod-lines.ts';
import { MeterError } from '../../gateway/src/pile/relay/meter.ts';
import {
  decodeFloat32Registers,
  encodeFloat32Registers,
  kwhToWh,
} from '../../gateway/src/pile/relay/meter-models.ts';
import { openModbusBus } from '../../gateway/src/pile/relay/modbus-bus.ts';
import { createModbusMeter } from '../../gateway/src/pile/relay/modbus-meter.ts';
import { openRelayPile } from '../../gateway/src/pile/relay/open-relay-pile.ts';
import type { RelayPileDriver } from '../../gateway/src/pile/relay/relay-driver.ts';
import { RelayPileError } from '../../gateway/src/pile/relay/relay-driver.ts';
import { createFileS0Store, createS0Meter, s0PowerW } from '../../gateway/src/pile/relay/s0-meter.ts';
import { FakeContactor, FakeGpio } from './support/fake-gpio.ts';
import { ManualTimers } from './support/manual-timers.ts';
import {
  MeterBank,
  type RunningModbusServer,
  startModbusRtuServer,
  startModbusTcpServer,
} from './support/modbus-meter-server.ts';

const ENABLE = 17;
const FEEDBACK = 27;
const PLUG = 22;
const EVSE_ERROR = 23;
const S0 = 24;

let dataDir: string;
let bank: MeterBank;
let server: RunningModbusServer;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'pilepass-relay-'));
  bank = new MeterBank();
  server = await startModbusTcpServer(bank);
});

afterAll(async () => {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function relayConfig(
  overrides: Record<string, unknown> = {},
  connector: Record<string, unknown> = {},
): RelayPileConfig {
  return relayPileSchema.parse({
    connectors: [
      {
        connector: 1,
        enable: { line: ENABLE },
        feedback: { line: FEEDBACK },
        plug: { line: PLUG },
        evseError: { line: EVSE_ERROR },
        meter: { type: 'modbus', unitId: 1, model: 'sdm630', meterId: 'SDM630-0001' },
        ...connector,
      },
    ],
    modbus: { port: server.port, timeoutMs: 100 },
    contactorOpenMs: 1000,
    meterSilentMs: 5000,
    mismatchPowerW: 200,
    mismatchGraceMs: 3000,
    ...overrides,
  });
}

interface Rig {
  readonly driver: RelayPileDriver;
  readonly gpio: FakeGpio;
  readonly timers: ManualTimers;
  readonly contactor: FakeContactor;
  readonly events: PileEvent[];
  readonly errors: unknown[];
}

/** Drivers to close after each test, with the virtual clock their close() waits on. */
const open: { driver: RelayPileDriver; timers: ManualTimers }[] = [];
afterEach(async () => {
  for (const { driver, timers } of open.splice(0)) await timers.settle(driver.close()).catch(() => {});
});

async function rig(
  config = relayConfig(),
  setup: (gpio: FakeGpio, contactor: FakeContactor) => void = () => {},
): Promise<Rig> {
  const gpio = new FakeGpio();
  const timers = new ManualTimers();
  const contactor = new FakeContactor(gpio, timers, { enableLine: ENABLE, feedbackLine: FEEDBACK });
  gpio.setInput(PLUG, true);
  setup(gpio, contactor);
  const errors: unknown[] = [];
  const driver = await openRelayPile(config, {
    dataDir,
    gpio,
    timers,
    pollMs: 0,
    onError: (e) => errors.push(e),
  });
  open.push({ driver, timers });
  const events: PileEvent[] = [];
  driver.onEvent((event) => events.push(event));
  return { driver, gpio, timers, contactor, events, errors };
}

const faults = (events: PileEvent[]) =>
  events.flatMap((e) => (e.kind === 'fault' ? [`${e.connector}: ${e.detail}`] : []));

describe('relay EVSE: start, stop and readings', () => {
  it('reads the Modbus meter, enables on start, confirms the contactor opened on stop', async () => {
    bank.add(1, { kwh: 12_345.678, powerW: 0 });
    const { driver, gpio, timers, events } = await rig();
    expect(gpio.level(ENABLE)).toBe(false);
    const idle = await driver.read(1);
    expect(idle).toEqual({
      connector: 1,
      contactorOn: false,
      plugged: true,
      faulted: false,
      meterWh: 12_345_678,
      meterId: 'SDM630-0001',
      powerW: 0,
    });

    await driver.start(1, { maxEnergyWh: 20_000 });
    expect(gpio.level(ENABLE)).toBe(true);
    await timers.advance(150); // the EVSE closes once the vehicle asks
    bank.unit(1).kwh = 12_346.5;
    bank.unit(1).powerW = 7_200.4;
    const charging = await driver.read(1);
    expect(charging).toMatchObject({ contactorOn: true, meterWh: 12_346_500, powerW: 7_200, faulted: false });

    await timers.settle(driver.stop(1));
    expect(gpio.level(ENABLE)).toBe(false);
    bank.unit(1).powerW = 0;
    expect(await driver.read(1)).toMatchObject({ contactorOn: false, faulted: false });
    expect(faults(events)).toEqual([]);
    expect(events.some((e) => e.kind === 'reading' && e.reading.contactorOn)).toBe(true);
  });

  it('refuses bad limits, unknown connectors and commands after close', async () => {
    bank.add(1, { kwh: 10 });
    const { driver } = await rig();
    await expect(driver.start(1, { maxEnergyWh: 0 })).rejects.toThrow(RangeError);
    await expect(driver.start(1, { maxEnergyWh: 1.5 })).rejects.toThrow(RangeError);
    await expect(driver.read(9)).rejects.toMatchObject({ name: 'RelayPileError', code: 'unknown-connector' });
    await driver.close();
    await expect(driver.start(1, {})).rejects.toBeInstanceOf(RelayPileError);
  });

  it('switches off by itself at the energy cap (a second barrier behind the charging logic)', async () => {
    bank.add(1, { kwh: 100 });
    const { driver, gpio, timers } = await rig();
    await driver.start(1, { maxEnergyWh: 500 });
    await timers.advance(150);
    bank.unit(1).kwh = 100.499;
    await driver.poll();
    expect(gpio.level(ENABLE)).toBe(true);
    bank.unit(1).kwh = 100.5;
    await driver.poll();
    expect(gpio.level(ENABLE)).toBe(false);
  });

  it('polls in the background every pollMs when asked to', async () => {
    bank.add(1, { kwh: 5 });
    const gpio = new FakeGpio();
    const timers = new ManualTimers();
    const driver = await openRelayPile(relayConfig({ pollMs: 500 }), { dataDir, gpio, timers });
    open.push({ driver, timers });
    const readings: number[] = [];
    driver.onEvent((e) => {
      if (e.kind === 'reading') readings.push(e.reading.meterWh);
    });
    bank.unit(1).kwh = 5.25;
    await timers.advance(500);
    await expect.poll(() => readings.length, { timeout: 2000 }).toBeGreaterThanOrEqual(1);
    expect(readings.at(-1)).toBe(5_250);
  });
});

describe('relay EVSE: faults switch off', () => {
  it('feedback still closed after contactorOpenMs is a welded contactor: stop rejects, the fault latches', async () => {
    bank.add(1, { kwh: 50 });
    const { driver, gpio, timers, contactor, events } = await rig();
    await driver.start(1, {});
    await timers.advance(150);
    contactor.welded = true;
    const stopping = timers.settle(driver.stop(1), 50);
    await expect(stopping).rejects.toMatchObject({ name: 'RelayPileError', code: 'welded' });
    expect(gpio.level(ENABLE)).toBe(false);
    expect(faults(events)).toEqual([
      expect.stringMatching(/^1: contactor welded: feedback still closed 1\d{3} ms/),
    ]);
    expect(await driver.read(1)).toMatchObject({ contactorOn: true, faulted: true });
    await expect(driver.start(1, {})).rejects.toMatchObject({ code: 'faulted' });
    expect(gpio.level(ENABLE)).toBe(false);
  });

  it('a contactor found closed at start-up (enable off) becomes a weld fault after the bound', async () => {
    bank.add(1, { kwh: 50 });
    const { driver, timers, events } = await rig(relayConfig(), (gpio, contactor) => {
      gpio.setInput(FEEDBACK, true);
      contactor.welded = true;
    });
    expect(await driver.read(1)).toMatchObject({ contactorOn: true, faulted: false });
    await timers.advance(999);
    await driver.poll();
    expect(faults(events)).toEqual([]);
    await timers.advance(1);
    await driver.poll();
    expect(faults(events)).toHaveLength(1);
    expect(faults(events)[0]).toContain('contactor welded');
  });

  it('a meter that stops answering is a fault after meterSilentMs, and clears when it answers again', async () => {
    bank.add(1, { kwh: 70, powerW: 3_000 });
    const { driver, gpio, timers, events } = await rig();
    await driver.start(1, {});
    await timers.advance(150);
    bank.unit(1).mode = 'silent';
    await timers.advance(4_000);
    await driver.poll(); // 100 ms Modbus timeout, real time
    expect(gpio.level(ENABLE)).toBe(true);
    expect(faults(events)).toEqual([]);
    await timers.advance(1_000);
    await driver.poll();
    expect(gpio.level(ENABLE)).toBe(false);
    expect(faults(events)).toEqual([
      expect.stringMatching(/^1: meter SDM630-0001 silent for 5\d{3} ms \(.*no answer\)/),
    ]);
    const reading = await driver.read(1);
    expect(reading).toMatchObject({ faulted: true, meterWh: 70_000 }); // last good register
    await expect(driver.start(1, {})).rejects.toMatchObject({ code: 'faulted' });

    bank.unit(1).mode = 'ok';
    expect(await driver.read(1)).toMatchObject({ faulted: false });
    await driver.start(1, {});
    expect(gpio.level(ENABLE)).toBe(true);
  });

  it('Modbus exception answers and a dead bus count as silence too', async () => {
    const bank2 = new MeterBank();
    bank2.add(3, { kwh: 1 });
    const server2 = await startModbusTcpServer(bank2);
    const config = relayConfig(
      { modbus: { port: server2.port, timeoutMs: 100 } },
      { meter: { type: 'modbus', unitId: 3, model: 'sdm120', meterId: 'SDM120-3' } },
    );
    const { driver, timers, events } = await rig(config);
    bank2.unit(3).mode = 'exception';
    await timers.advance(5_000);
    await driver.poll();
    expect(faults(events)).toEqual([expect.stringMatching(/meter SDM120-3 silent .*Modbus exception 4/)]);
    bank2.unit(3).mode = 'ok';
    await driver.poll();
    expect((await driver.read(1)).faulted).toBe(false);
    await server2.close();
    await timers.advance(5_000);
    await driver.poll();
    expect(faults(events)).toHaveLength(2);
    expect(faults(events)[1]).toMatch(/meter SDM120-3 silent/);
  });

  it('power while the feedback is open, for longer than the grace, is a feedback mismatch (latched)', async () => {
    bank.add(1, { kwh: 80, powerW: 0 });
    const { driver, gpio, timers, contactor, events } = await rig();
    contactor.vehicleWantsEnergy = false; // the feedback never closes …
    await driver.start(1, {});
    bank.unit(1).powerW = 6_500; // … but energy flows
    await driver.poll();
    await timers.advance(2_999);
    await driver.poll();
    expect(faults(events)).toEqual([]);
    await timers.advance(1);
    await driver.poll();
    expect(faults(events)).toEqual([
      '1: feedback mismatch: contactor feedback open but the meter shows 6500 W',
    ]);
    expect(gpio.level(ENABLE)).toBe(false);
    bank.unit(1).powerW = 0;
    expect((await driver.read(1)).faulted).toBe(true); // latched
  });

  it('the EVSE error output faults the connector while it is active', async () => {
    bank.add(1, { kwh: 90 });
    const { driver, gpio, timers, events } = await rig();
    await driver.start(1, {});
    await timers.advance(150);
    gpio.setInput(EVSE_ERROR, true);
    await driver.poll();
    expect(gpio.level(ENABLE)).toBe(false);
    expect(faults(events)).toEqual(['1: EVSE controller reports an error']);
    gpio.setInput(EVSE_ERROR, false);
    expect((await driver.read(1)).faulted).toBe(false);
  });

  it('unplugging switches the enable off and reports unplugged; an unplugged connector refuses start', async () => {
    bank.add(1, { kwh: 95 });
    const { driver, gpio, timers, events } = await rig();
    await driver.start(1, {});
    await timers.advance(150);
    gpio.setInput(PLUG, false);
    await driver.poll();
    expect(gpio.level(ENABLE)).toBe(false);
    expect(events.filter((e) => e.kind === 'unplugged')).toEqual([{ kind: 'unplugged', connector: 1 }]);
    expect(await driver.read(1)).toMatchObject({ plugged: false });
    await expect(driver.start(1, {})).rejects.toMatchObject({ code: 'unplugged' });
  });

  it('without a plug input the plug state is undefined (the hardware cannot tell)', async () => {
    bank.add(1, { kwh: 99 });
    const { driver } = await rig(relayConfig({}, { plug: undefined, evseError: undefined }));
    expect((await driver.read(1)).plugged).toBeUndefined();
  });

  it('a meter that never answered makes read fail with a typed error (the recovery then commands off)', async () => {
    bank.add(1, { kwh: 1, mode: 'silent' });
    const { driver, gpio } = await rig();
    await expect(driver.read(1)).rejects.toMatchObject({ name: 'RelayPileError', code: 'meter-unavailable' });
    await expect(driver.start(1, {})).rejects.toMatchObject({ code: 'meter-unavailable' });
    expect(gpio.level(ENABLE)).toBe(false);
    bank.unit(1).mode = 'ok';
  });
});

describe('relay EVSE: close', () => {
  it('close switches every connector off, waits for the feedback, releases lines and timers', async () => {
    bank.add(1, { kwh: 10 });
    bank.add(2, { kwh: 20 });
    const config = relayPileSchema.parse({
      connectors: [
        {
          connector: 1,
          enable: { line: 5 },
          feedback: { line: 6 },
          meter: { type: 'modbus', unitId: 1, model: 'sdm630', meterId: 'M1' },
        },
        {
          connector: 2,
          enable: { line: 12 },
          feedback: { line: 13 },
          meter: { type: 'modbus', unitId: 2, model: 'sdm120', meterId: 'M2' },
        },
      ],
      modbus: { port: server.port, timeoutMs: 100 },
    });
    const gpio = new FakeGpio();
    const timers = new ManualTimers();
    const c1 = new FakeContactor(gpio, timers, { enableLine: 5, feedbackLine: 6, openDelayMs: 300 });
    new FakeContactor(gpio, timers, { enableLine: 12, feedbackLine: 13 });
    const driver = await openRelayPile(config, { dataDir, gpio, timers, pollMs: 0 });
    expect(gpio.requested.slice(0, 2).map((r) => `${r.kind} ${r.line}`)).toEqual(['output 5', 'output 12']);
    await driver.start(1, {});
    await driver.start(2, {});
    await timers.advance(150);
    expect(c1.closed).toBe(true);
    await timers.settle(driver.close());
    expect(gpio.level(5)).toBe(false);
    expect(gpio.level(12)).toBe(false);
    expect(c1.closed).toBe(false);
    expect(gpio.held.size).toBe(0);
    expect(gpio.closed).toBe(true);
    expect(timers.pendingCount).toBe(0);
    await driver.close(); // idempotent
  });

  it('a failure while opening gives back every line already taken', async () => {
    const gpio = new FakeGpio();
    gpio.held.add(FEEDBACK); // someone else holds the feedback line
    await expect(
      openRelayPile(relayConfig(), { dataDir, gpio, timers: new ManualTimers(), pollMs: 0 }),
    ).rejects.toThrow(GpioError);
    expect(gpio.released).toEqual([ENABLE]);
    expect(gpio.level(ENABLE)).toBe(false);
    expect(gpio.closed).toBe(true);
  });
});

describe('relay EVSE: S0 pulse meter', () => {
  const s0Config = (ppk = 1000) =>
    relayConfig(
      { modbus: undefined, s0SampleMs: 10 },
      {
        meter: {
          type: 's0',
          input: { line: S0 },
          pulsesPerKwh: ppk,
          initialWh: 500_000,
          meterId: 'S0-A',
          reserveStepWh: 20,
        },
      },
    );

  async function pulse(gpio: FakeGpio, timers: ManualTimers, count: number, periodMs = 100) {
    for (let i = 0; i < count; i++) {
      gpio.setInput(S0, true);
      await timers.advance(40);
      gpio.setInput(S0, false);
      await timers.advance(periodMs - 40);
    }
  }

  it('counts pulses into the register, estimates power, resumes the exact count after a clean restart', async () => {
    const dir = mkdtempSync(join(dataDir, 's0-'));
    const gpio = new FakeGpio();
    const timers = new ManualTimers();
    const driver = await openRelayPile(s0Config(), { dataDir: dir, gpio, timers, pollMs: 0 });
    expect(await driver.read(1)).toMatchObject({ meterWh: 500_000, meterId: 'S0-A', powerW: 0 });
    await pulse(gpio, timers, 25, 500); // 1 Wh every 500 ms = 7200 W
    expect(await driver.read(1)).toMatchObject({ meterWh: 500_025, powerW: 7_200 });
    await timers.advance(500);
    // No pulse for about 1 s (pulse times are quantised to the 10 ms sampling): at most ≈ 3600 W.
    const decayed = (await driver.read(1)).powerW;
    expect(decayed).toBeGreaterThanOrEqual(3_600);
    expect(decayed).toBeLessThanOrEqual(3_637);
    await timers.settle(driver.close());

    const again = await openRelayPile(s0Config(), {
      dataDir: dir,
      gpio: new FakeGpio(),
      timers,
      pollMs: 0,
    });
    open.push({ driver: again, timers });
    expect((await again.read(1)).meterWh).toBe(500_025);
  });

  it('after a crash the register resumes at the reserve: never below what was reported, at most one step above', async () => {
    const dir = mkdtempSync(join(dataDir, 's0-'));
    const gpio = new FakeGpio();
    const timers = new ManualTimers();
    const driver = await openRelayPile(s0Config(), { dataDir: dir, gpio, timers, pollMs: 0 });
    await pulse(gpio, timers, 33);
    const reported = (await driver.read(1)).meterWh;
    expect(reported).toBe(500_033);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the async reserve write lands
    // No close(): the process "crashed". A new one reads the persisted reserve.
    const after = await openRelayPile(s0Config(), {
      dataDir: dir,
      gpio: new FakeGpio(),
      timers,
      pollMs: 0,
    });
    open.push({ driver: after, timers });
    const resumed = (await after.read(1)).meterWh;
    expect(resumed).toBeGreaterThanOrEqual(reported);
    expect(resumed).toBeLessThanOrEqual(reported + 20);
  });

  it('refuses a persisted count that belongs to another meter setup', async () => {
    const dir = mkdtempSync(join(dataDir, 's0-'));
    writeFileSync(
      join(dir, 's0-connector-1.json'),
      JSON.stringify({ meterId: 'S0-A', pulsesPerKwh: 800, initialWh: 500_000, reservedPulses: 10 }),
    );
    await expect(
      openRelayPile(s0Config(), {
        dataDir: dir,
        gpio: new FakeGpio(),
        timers: new ManualTimers(),
        pollMs: 0,
      }),
    ).rejects.toMatchObject({
      name: 'MeterError',
      code: 'state',
      message: expect.stringContaining('800 imp/kWh'),
    });
    writeFileSync(join(dir, 's0-connector-1.json'), '{"meterId":');
    await expect(
      openRelayPile(s0Config(), {
        dataDir: dir,
        gpio: new FakeGpio(),
        timers: new ManualTimers(),
        pollMs: 0,
      }),
    ).rejects.toMatchObject({ code: 'state', message: expect.stringContaining('not valid JSON') });
  });

  it('fractional Wh per pulse accumulate exactly (800 imp/kWh = 1.25 Wh per pulse)', async () => {
    const dir = mkdtempSync(join(dataDir, 's0-'));
    const timers = new ManualTimers();
    const input = { active: false, isActive: () => input.active, release() {} };
    const meter = createS0Meter({
      input,
      meterId: 'X',
      pulsesPerKwh: 800,
      initialWh: 0,
      store: createFileS0Store(join(dir, 'x.json')),
      timers,
      sampleMs: 10,
    });
    for (let i = 0; i < 7; i++) {
      input.active = true;
      await timers.advance(30);
      input.active = false;
      await timers.advance(30);
    }
    expect((await meter.read()).energyWh).toBe(8); // ⌊7 × 1.25⌋
    await meter.close();
    expect(s0PowerW(1000, 1000)).toBe(3_600);
    expect(s0PowerW(800, 0)).toBe(0);
  });
});

describe('relay EVSE: Modbus RTU over a serial line (socat pty pair)', () => {
  let socat: ChildProcess | undefined;
  const ptyDir = mkdtempSync(join(tmpdir(), 'pilepass-rtu-'));
  const meterSide = join(ptyDir, 'meter');
  const gatewaySide = join(ptyDir, 'gateway');
  const haveSocat = spawnSync('socat', ['-V']).status === 0;

  afterAll(() => {
    socat?.kill();
    rmSync(ptyDir, { recursive: true, force: true });
  });

  it('reads an SDM120 over RTU framing (CRC, unit id) and survives a unit that does not answer', async () => {
    if (!haveSocat) throw new Error('socat missing: run scripts/system-deps.sh ble (it installs socat)');
    socat = spawn('socat', [`PTY,link=${meterSide},raw,echo=0`, `PTY,link=${gatewaySide},raw,echo=0`]);
    await expect.poll(() => existsSync(meterSide) && existsSync(gatewaySide), { timeout: 5000 }).toBe(true);
    const rtuBank = new MeterBank();
    rtuBank.add(7, { model: 'sdm120', kwh: 4_321.5, powerW: 1_840 });
    const rtu = await startModbusRtuServer(rtuBank, meterSide, 9600);
    const bus = openModbusBus({
      port: gatewaySide,
      baudRate: 9600,
      parity: 'none',
      dataBits: 8,
      stopBits: 1,
      timeoutMs: 500,
    });
    try {
      const meter = createModbusMeter(bus, { unitId: 7, model: 'sdm120', meterId: 'SDM120-7' });
      expect(await meter.read()).toEqual({ energyWh: 4_321_500, powerW: 1_840 });
      const other = createModbusMeter(bus, { unitId: 8, model: 'sdm120', meterId: 'SDM120-8' });
      await expect(other.read()).rejects.toMatchObject({ name: 'MeterError', code: 'timeout' });
      expect(await meter.read()).toEqual({ energyWh: 4_321_500, powerW: 1_840 }); // bus still usable
    } finally {
      await bus.close();
      await rtu.close();
    }
  });
});

describe('relay EVSE: meter decoding', () => {
  it('float32 registers round-trip (high word first)', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (value) => {
        const [high, low] = encodeFloat32Registers(value);
        expect(decodeFloat32Registers(high, low)).toBe(Math.fround(value));
      }),
    );
    expect(encodeFloat32Registers(1)).toEqual([0x3f80, 0x0000]);
    expect(kwhToWh(Math.fround(12_345.678))).toBe(12_345_678);
  });

  it('rejects a register that runs backwards, negative energy and NaN', async () => {
    const b = new MeterBank();
    b.add(1, { kwh: 10 });
    const s = await startModbusTcpServer(b);
    const bus = openModbusBus({
      port: s.port,
      baudRate: 9600,
      parity: 'none',
      dataBits: 8,
      stopBits: 1,
      timeoutMs: 200,
    });
    try {
      const meter = createModbusMeter(bus, { unitId: 1, model: 'sdm630', meterId: 'M' });
      expect((await meter.read()).energyWh).toBe(10_000);
      b.unit(1).kwh = 9.999;
      await expect(meter.read()).rejects.toMatchObject({
        code: 'implausible',
        message: expect.stringContaining('backwards'),
      });
      b.unit(1).kwh = Number.NaN;
      await expect(meter.read()).rejects.toBeInstanceOf(MeterError);
      b.unit(1).kwh = 10;
      b.unit(1).powerW = -50; // export reads as 0 on an import meter
      expect(await meter.read()).toEqual({ energyWh: 10_000, powerW: 0 });
    } finally {
      await bus.close();
      await s.close();
    }
  });
});

describe('relay EVSE: the kernel must let a dead process switch off', () => {
  function sysfs(parameters: Record<string, string>): string {
    const root = mkdtempSync(join(dataDir, 'sys-'));
    for (const [driver, value] of Object.entries(parameters)) {
      const dir = join(root, 'module', driver, 'parameters');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'persist_gpio_outputs'), `${value}\n`);
    }
    return root;
  }

  it('reads persist_gpio_outputs of the Pi 1–4 and Pi 5 pinctrl drivers', () => {
    expect(gpioReleaseBehaviour(sysfs({ pinctrl_bcm2835: 'Y' }))).toBe('keeps-output');
    expect(gpioReleaseBehaviour(sysfs({ pinctrl_rp1: 'Y' }))).toBe('keeps-output');
    expect(gpioReleaseBehaviour(sysfs({ pinctrl_bcm2835: 'N' }))).toBe('reverts-to-input');
    expect(gpioReleaseBehaviour(sysfs({}))).toBe('unknown');
  });

  it('refuses to drive an EVSE where released outputs stay driven (Raspberry Pi default without strict_gpiod)', async () => {
    const config = relayConfig({ gpioChip: 'gpiochip9' });
    await expect(
      openRelayPile(config, { dataDir, sysfsRoot: sysfs({ pinctrl_bcm2835: 'Y' }) }),
    ).rejects.toMatchObject({
      name: 'GpioError',
      code: 'persist',
      message: expect.stringContaining('dtparam=strict_gpiod'),
    });
    // With strict_gpiod the check passes and the chip is next (none on this machine).
    await expect(
      openRelayPile(config, { dataDir, sysfsRoot: sysfs({ pinctrl_bcm2835: 'N' }) }),
    ).rejects.toMatchObject({
      name: 'GpioError',
      code: expect.stringMatching(/^(chip|unavailable)$/),
    });
    const warnings: unknown[] = [];
    await expect(
      openRelayPile(config, { dataDir, sysfsRoot: sysfs({}), onError: (e) => warnings.push(e) }),
    ).rejects.toThrow(GpioError);
    expect(warnings).toEqual([
      expect.objectContaining({ code: 'persist', message: expect.stringContaining('cannot tell') }),
    ]);
  });
});

describe('relay EVSE: libgpiod line layer', () => {
  class FakeLibLine implements LibgpiodLine {
    static all: FakeLibLine[] = [];
    value = -1;
    request: { kind: string; consumer: string; flags: number; value?: number } | undefined;
    released = false;
    readonly offset: number;
    constructor(_chip: unknown, offset: number) {
      this.offset = offset;
      FakeLibLine.all.push(this);
    }
    getValue() {
      return this.value;
    }
    setValue(value: number) {
      this.value = value;
    }
    requestOutputModeFlags(consumer: string, flags: number, value: number) {
      this.request = { kind: 'output', consumer, flags, value };
      this.value = value;
    }
    requestInputModeFlags(consumer: string, flags: number) {
      this.request = { kind: 'input', consumer, flags };
    }
    release() {
      this.released = true;
    }
  }
  const fakeModule: LibgpiodModule = {
    Chip: class {
      constructor(name: string) {
        if (name === 'nochip') throw new Error('ENOENT, No such file or directory');
      }
    },
    Line: FakeLibLine,
  };

  it('maps active levels and bias to libgpiod 1.x request flags and drives outputs off on exit and close', async () => {
    FakeLibLine.all = [];
    const hooks = new Map<string, () => void>();
    const processHooks = {
      once: (event: string, fn: () => void) => hooks.set(event, fn),
      removeListener: (event: string) => hooks.delete(event),
    } as unknown as Pick<NodeJS.Process, 'once' | 'removeListener'>;
    const gpio = await openLibgpiodLines('gpiochip0', fakeModule, processHooks);
    const enable = gpio.requestOutput({ line: 17, activeLow: true }, 'enable');
    const feedback = gpio.requestInput({ line: 27, activeLow: false, bias: 'pull-down' }, 'fb');
    const [out, inp] = FakeLibLine.all;
    expect(out?.request).toEqual({ kind: 'output', consumer: 'enable', flags: 1 << 2, value: 0 });
    expect(inp?.request).toEqual({ kind: 'input', consumer: 'fb', flags: 1 << 4 });
    enable.set(true);
    expect(out?.value).toBe(1);
    if (inp) inp.value = 1;
    expect(feedback.isActive()).toBe(true);
    hooks.get('exit')?.(); // process exiting: every output inactive
    expect(out?.value).toBe(0);
    enable.set(true);
    gpio.close();
    expect(out?.value).toBe(0);
    expect(out?.released && inp?.released).toBe(true);
    expect(hooks.has('exit')).toBe(false);
    expect(() => gpio.requestInput({ line: 3, activeLow: false, bias: 'as-is' }, 'x')).toThrow(GpioError);
  });

  it('names the chip it cannot open; the real node-libgpiod loads here and finds no chip', async () => {
    await expect(openLibgpiodLines('nochip', fakeModule)).rejects.toMatchObject({
      name: 'GpioError',
      code: 'chip',
      message: expect.stringContaining('cannot open GPIO chip nochip'),
    });
    let real: LibgpiodModule;
    try {
      real = await loadLibgpiod();
    } catch (error) {
      // Optional dependency: where it did not build, the error must say what to install.
      expect(error).toMatchObject({
        name: 'GpioError',
        code: 'unavailable',
        message: expect.stringContaining('libgpiod 1.x'),
      });
      return;
    }
    await expect(openLibgpiodLines('gpiochip0', real)).rejects.toMatchObject({ code: 'chip' });
  });
});
