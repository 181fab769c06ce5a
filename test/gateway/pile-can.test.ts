/**
 * The CAN pile controller driver against a fake CAN bus (this kernel has no CAN) with a pile
 * controller simulator speaking docs/can.md, on virtual time: start/stop with acknowledgement,
 * refusals and timeouts, a contactor that does not open, unplug and pile faults, a lost, frozen
 * or wrong-version pile heartbeat (fault, connection-lost, STOP, gateway heartbeat `switch-off`),
 * the gateway heartbeat the pile relies on, start-up without switching, close; the SocketCAN
 * layer against a fake of socketcan's API and its typed error when the module is missing; and,
 * where the kernel has vcan and socketcan loads, the driver on a real vcan0.
 */

import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { PileEvent } from '../../gateway/src/contracts.ts';
import { type CanPileDriver, CanPileError } from '../../gateway/src/pile/can/can-driver.ts';
import {
  type CanFrame,
  CanUnavailableError,
  loadSocketcan,
  openSocketCan,
  type SocketcanChannel,
  type SocketcanMessage,
  type SocketcanModule,
} from '../../gateway/src/pile/can/can-socket.ts';
import { canPileSchema } from '../../gateway/src/pile/can/config.ts';
import {
  CAN_ID_BASE,
  CanFrameError,
  decodeCommand,
  decodeGatewayHeartbeat,
  encodeMeter,
} from '../../gateway/src/pile/can/frames.ts';
import { openCanPile } from '../../gateway/src/pile/can/open-can-pile.ts';
import type { PileTimers } from '../../gateway/src/pile/timers.ts';
import { systemTimers } from '../../gateway/src/pile/timers.ts';
import { CanPileSim, type SimConnector } from './support/can-pile-sim.ts';
import { FakeCanBus } from './support/fake-can.ts';
import { ManualTimers } from './support/manual-timers.ts';

const PILE = 16;
const GATEWAY = 1;
const HEARTBEAT_MS = 200;
const TIMEOUT_MS = 600;
const COMMAND_ID = CAN_ID_BASE.gatewayCommand + PILE;
const GATEWAY_HEARTBEAT_ID = CAN_ID_BASE.heartbeat + GATEWAY;

interface Rig {
  readonly bus: FakeCanBus;
  readonly timers: ManualTimers;
  readonly sim: CanPileSim;
  readonly driver: CanPileDriver;
  readonly events: PileEvent[];
  readonly errors: unknown[];
}

const open: { driver: CanPileDriver; timers: ManualTimers; sim: CanPileSim }[] = [];
afterEach(async () => {
  for (const { driver, timers, sim } of open.splice(0)) {
    await timers.settle(driver.close()).catch(() => {});
    sim.stop();
  }
});

async function rig(initial: Partial<SimConnector> = {}, connectors = [1, 2], statusMs = 1_000): Promise<Rig> {
  const bus = new FakeCanBus();
  const timers = new ManualTimers();
  const gatewaySocket = bus.socket('gateway');
  const sim = new CanPileSim(
    bus.socket('pile'),
    timers,
    { pileNodeId: PILE, gatewayNodeId: GATEWAY, connectors, heartbeatMs: HEARTBEAT_MS, statusMs },
    initial,
  );
  const errors: unknown[] = [];
  const config = canPileSchema.parse({
    pileNodeId: PILE,
    gatewayNodeId: GATEWAY,
    meters: [{ connector: 1, meterId: 'MID-0001' }],
  });
  const driver = await timers.settle(
    openCanPile(config, { connectors, socket: gatewaySocket, timers, onError: (e) => errors.push(e) }),
  );
  open.push({ driver, timers, sim });
  const events: PileEvent[] = [];
  driver.onEvent((event) => events.push(event));
  return { bus, timers, sim, driver, events, errors };
}

const faults = (events: PileEvent[]) =>
  events.flatMap((e) => (e.kind === 'fault' ? [`${e.connector}: ${e.detail}`] : []));
const commands = (bus: FakeCanBus) => bus.sent('gateway', COMMAND_ID).map((f) => decodeCommand(f.data));
const gatewayStates = (bus: FakeCanBus) =>
  bus.sent('gateway', GATEWAY_HEARTBEAT_ID).map((f) => decodeGatewayHeartbeat(f.data).state);

describe('CAN pile: start, stop, readings', () => {
  it('reads status and meter, starts with the energy cap, stops once the contactor is reported open', async () => {
    const { driver, sim, timers, bus, events } = await rig();
    expect(driver.linkUp).toBe(true);
    expect(await driver.read(1)).toEqual({
      connector: 1,
      contactorOn: false,
      plugged: true,
      faulted: false,
      meterWh: 2_001_000,
      meterId: 'MID-0001',
      powerW: 0,
    });
    expect((await driver.read(2)).meterId).toBe('CAN16-2');

    await timers.settle(driver.start(1, { maxEnergyWh: 15_000 }));
    expect(commands(bus).at(-1)).toMatchObject({ connector: 1, command: 'start', maxEnergyWh: 15_000 });
    expect(sim.connector(1)).toMatchObject({ contactorClosed: true, sessionActive: true, capWh: 2_016_000 });
    sim.deliver(1, 1_234, 7_100);
    await timers.advance(1);
    expect(await driver.read(1)).toMatchObject({ contactorOn: true, meterWh: 2_002_234, powerW: 7_100 });

    await timers.settle(driver.stop(1));
    expect(sim.connector(1).contactorClosed).toBe(false);
    expect((await driver.read(1)).contactorOn).toBe(false);
    expect(faults(events)).toEqual([]);
  });

  it('a refused START is a typed error (unplugged, faulted); bad limits and connectors are refused locally', async () => {
    const { driver, sim, timers } = await rig();
    sim.connector(2).plugged = false;
    await expect(timers.settle(driver.start(2, {}))).rejects.toMatchObject({
      name: 'CanPileError',
      code: 'refused',
      message: expect.stringContaining('refused-unplugged'),
    });
    await expect(driver.start(1, { maxEnergyWh: -1 })).rejects.toThrow(RangeError);
    await expect(driver.start(1, { maxEnergyWh: 2 ** 32 })).rejects.toThrow(RangeError);
    await expect(driver.read(3)).rejects.toMatchObject({ code: 'unknown-connector' });
  });

  it('an unanswered START times out and is followed by a STOP (it may have started after all)', async () => {
    const { driver, sim, timers, bus } = await rig();
    sim.ignoreCommands = true;
    await expect(timers.settle(driver.start(1, {}))).rejects.toMatchObject({ code: 'timeout' });
    expect(
      commands(bus)
        .slice(-2)
        .map((c) => c.command),
    ).toEqual(['start', 'stop']);
  });

  it('a contactor that does not open after STOP is a fault and the stop rejects', async () => {
    const { driver, sim, timers, events } = await rig();
    await timers.settle(driver.start(1, {}));
    sim.connector(1).welded = true;
    await expect(timers.settle(driver.stop(1))).rejects.toMatchObject({ code: 'stop-unconfirmed' });
    expect(faults(events)).toEqual(['1: contactor still closed 2000 ms after STOP (welded?)']);
  });

  it('a STOP that is never acknowledged is a fault too', async () => {
    const { driver, sim, timers, events } = await rig();
    await timers.settle(driver.start(1, {}));
    sim.ignoreCommands = true;
    await expect(timers.settle(driver.stop(1))).rejects.toBeInstanceOf(CanPileError);
    expect(faults(events)).toEqual(['1: STOP not acknowledged within 2000 ms']);
  });

  it('refreshes a stale reading with REQUEST', async () => {
    const { driver, timers, bus, sim } = await rig({}, [1, 2], 60_000); // the pile reports only on change
    sim.connector(1).energyWh += 7; // changed without a report
    expect((await driver.read(1)).meterWh).toBe(2_001_000); // still fresh: no request
    const before = commands(bus).length;
    await timers.advance(2_001);
    expect((await timers.settle(driver.read(1))).meterWh).toBe(2_001_007);
    expect(commands(bus).slice(before)).toEqual([
      { connector: 1, command: 'request', sequence: expect.any(Number), maxEnergyWh: 0 },
    ]);
  });
});

describe('CAN pile: events from the pile', () => {
  it('unplug is reported as unplugged', async () => {
    const { sim, timers, events, driver } = await rig();
    await timers.settle(driver.start(1, {}));
    sim.unplug(1);
    await timers.advance(1);
    expect(events.filter((e) => e.kind === 'unplugged')).toEqual([{ kind: 'unplugged', connector: 1 }]);
    expect(await driver.read(1)).toMatchObject({ plugged: false, contactorOn: false });
  });

  it('a pile fault is reported once with its code, and a STOP follows', async () => {
    const { sim, timers, events, driver, bus } = await rig();
    await timers.settle(driver.start(2, {}));
    sim.raiseFault(2, 1, 42);
    await timers.advance(1);
    expect(faults(events)).toEqual(['2: pile fault: residual current (vendor code 0x2a)']);
    expect(commands(bus).at(-1)).toMatchObject({ connector: 2, command: 'stop' });
    expect((await driver.read(2)).faulted).toBe(true);
    await timers.advance(3_000); // periodic status frames repeat the fault bit: no new event
    expect(faults(events)).toHaveLength(1);
    await expect(timers.settle(driver.start(2, {}))).rejects.toMatchObject({
      message: expect.stringContaining('refused-faulted'),
    });
  });

  it('a meter register that runs backwards is a latched fault; the bad value is not taken', async () => {
    const { timers, events, driver, bus } = await rig();
    bus.inject('pile', {
      id: CAN_ID_BASE.pileMeter + PILE,
      data: encodeMeter({ connector: 1, energyWh: 5, powerW: 0 }),
    });
    await timers.advance(1);
    expect(faults(events)).toEqual(['1: meter register went backwards (2001000 Wh → 5 Wh)']);
    expect(await driver.read(1)).toMatchObject({ meterWh: 2_001_000, faulted: true });
  });

  it('malformed frames are dropped with a typed error and do not disturb the driver', async () => {
    const { timers, errors, driver, bus } = await rig();
    bus.inject('pile', { id: CAN_ID_BASE.pileStatus + PILE, data: Uint8Array.of(1, 2, 3) });
    bus.inject('pile', { id: CAN_ID_BASE.pileMeter + PILE, data: new Uint8Array(8), ext: true }); // not ours: ignored
    await timers.advance(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(CanFrameError);
    expect(errors[0]).toMatchObject({ code: 'length', frame: 'PILE_STATUS' });
    expect((await driver.read(1)).faulted).toBe(false);
  });
});

describe('CAN pile: heartbeats', () => {
  it('the gateway heartbeat goes out every heartbeatMs with the timeout the pile must apply', async () => {
    const { bus, timers, sim } = await rig();
    const before = sim.gatewayHeartbeats.length;
    await timers.advance(1_000);
    expect(sim.gatewayHeartbeats.length - before).toBe(5);
    const last = sim.gatewayHeartbeats.slice(-5);
    expect(last.every((h) => h.state === 'operational' && h.timeoutMs === TIMEOUT_MS)).toBe(true);
    const counters = last.map((h) => h.counter);
    expect(counters.slice(1).map((c, i) => (c - (counters[i] as number) + 256) % 256)).toEqual([1, 1, 1, 1]);
    expect(gatewayStates(bus).every((s) => s === 'operational')).toBe(true);
  });

  it('a lost pile heartbeat: fault on every connector, connection-lost, STOP each, gateway says switch-off', async () => {
    const { driver, sim, timers, bus, events } = await rig();
    await timers.settle(driver.start(1, {}));
    sim.heartbeatSilenced = true;
    await timers.advance(TIMEOUT_MS - 1);
    expect(driver.linkUp).toBe(true);
    const stopsBefore = commands(bus).filter((c) => c.command === 'stop').length;
    await timers.advance(HEARTBEAT_MS + 1);
    expect(driver.linkUp).toBe(false);
    expect(faults(events)).toEqual([
      `1: pile heartbeat lost: none for ${TIMEOUT_MS} ms`,
      `2: pile heartbeat lost: none for ${TIMEOUT_MS} ms`,
    ]);
    expect(events.filter((e) => e.kind === 'connection-lost')).toHaveLength(1);
    const stops = commands(bus)
      .filter((c) => c.command === 'stop')
      .slice(stopsBefore);
    expect(stops.map((c) => c.connector)).toEqual([1, 2]);
    await timers.advance(HEARTBEAT_MS);
    expect(gatewayStates(bus).at(-1)).toBe('switch-off');
    expect(sim.connector(1).contactorClosed).toBe(false); // the pile heard it (its own TX was broken)
    expect(await driver.read(1)).toMatchObject({ faulted: true, contactorOn: false });
    await expect(driver.start(1, {})).rejects.toMatchObject({ code: 'link-lost' });
    await expect(driver.stop(1)).rejects.toMatchObject({ code: 'link-lost' });

    sim.heartbeatSilenced = false; // back: readings refresh, the gateway is operational again
    await timers.advance(HEARTBEAT_MS * 2);
    expect(driver.linkUp).toBe(true);
    expect(await driver.read(1)).toMatchObject({ faulted: false });
    expect(gatewayStates(bus).at(-1)).toBe('operational');
  });

  it('a heartbeat whose counter does not move is not a heartbeat', async () => {
    const { driver, sim, timers, events } = await rig();
    sim.heartbeatFrozen = true;
    await timers.advance(TIMEOUT_MS + HEARTBEAT_MS);
    expect(driver.linkUp).toBe(false);
    expect(events.some((e) => e.kind === 'connection-lost')).toBe(true);
  });

  it('a pile speaking another protocol version is a lost link with the reason', async () => {
    const { sim, timers, events } = await rig();
    sim.protocolVersion = 2;
    await timers.advance(TIMEOUT_MS + HEARTBEAT_MS);
    expect(faults(events)[0]).toBe(
      `1: pile heartbeat lost: none for ${TIMEOUT_MS} ms (protocol version 2, gateway speaks 1)`,
    );
  });

  it('when the gateway goes quiet the pile switches off on its own (the timeout travels in the heartbeat)', async () => {
    const { driver, sim, timers, bus } = await rig();
    await timers.settle(driver.start(1, {}));
    bus.cut('gateway'); // a dead gateway process, or a broken wire
    await timers.advance(TIMEOUT_MS + 1);
    expect(sim.gatewayTimeoutTrips).toBe(1);
    expect(sim.connector(1).contactorClosed).toBe(false);
    bus.restore('gateway');
  });
});

describe('CAN pile: start-up and close', () => {
  it('start-up switches nothing: a contactor found on is reported for the recovery to decide', async () => {
    const { driver, bus } = await rig({ contactorClosed: true, sessionActive: true });
    expect(commands(bus).every((c) => c.command === 'request')).toBe(true);
    expect(await driver.read(1)).toMatchObject({ contactorOn: true, faulted: false });
  });

  it('a pile that does not answer: creation waits startupWaitMs, then reads fail with a typed error', async () => {
    const bus = new FakeCanBus();
    const timers = new ManualTimers();
    const config = canPileSchema.parse({ startupWaitMs: 500 });
    const driver = await timers.settle(
      openCanPile(config, { connectors: [1], socket: bus.socket('gateway'), timers }),
    );
    expect(timers.now()).toBeGreaterThanOrEqual(1_500);
    expect(driver.linkUp).toBe(false);
    await expect(driver.read(1)).rejects.toMatchObject({ code: 'no-data' });
    await expect(driver.start(1, {})).rejects.toMatchObject({ code: 'link-lost' });
    await timers.settle(driver.close());
    expect(timers.pendingCount).toBe(0);
  });

  it('close stops every connector, tells the pile to switch off, stops the heartbeat and closes the socket', async () => {
    const bus = new FakeCanBus();
    const timers = new ManualTimers();
    const socket = bus.socket('gateway');
    const sim = new CanPileSim(bus.socket('pile'), timers, {
      pileNodeId: PILE,
      gatewayNodeId: GATEWAY,
      connectors: [1, 2],
      heartbeatMs: HEARTBEAT_MS,
    });
    const driver = await timers.settle(
      openCanPile(canPileSchema.parse({}), { connectors: [1, 2], socket, timers }),
    );
    await timers.settle(driver.start(1, {}));
    await timers.settle(driver.start(2, {}));
    await timers.settle(driver.close());
    expect(sim.connector(1).contactorClosed || sim.connector(2).contactorClosed).toBe(false);
    expect(
      commands(bus)
        .slice(-2)
        .map((c) => `${c.command} ${c.connector}`),
    ).toEqual(['stop 1', 'stop 2']);
    expect(gatewayStates(bus).at(-1)).toBe('switch-off');
    expect(socket.closed).toBe(true);
    sim.stop();
    expect(timers.pendingCount).toBe(0);
    await expect(driver.read(1)).rejects.toMatchObject({ code: 'closed' });
  });
});

describe('SocketCAN layer', () => {
  it('without the socketcan module: a typed error saying it needs Node >= 22', async () => {
    const loaded = await loadSocketcan().then(
      () => undefined,
      (error: unknown) => error,
    );
    if (loaded === undefined) return; // installed here (Node >= 22): the vcan test below covers it
    expect(loaded).toBeInstanceOf(CanUnavailableError);
    expect(loaded).toMatchObject({ code: 'module-missing', message: expect.stringContaining('Node >= 22') });
  });

  it('maps frames both ways and filters the kernel socket to the pile node ids', async () => {
    const sent: unknown[] = [];
    let filters: unknown;
    let onMessage: ((m: SocketcanMessage) => void) | undefined;
    let started = false;
    let stopped = false;
    const channel: SocketcanChannel = {
      addListener: (_event, listener) => {
        onMessage = listener;
      },
      setRxFilters: (f) => {
        filters = f;
      },
      send: (m) => sent.push(m),
      start: () => {
        started = true;
      },
      stop: () => {
        stopped = true;
      },
    };
    const module: SocketcanModule = {
      createRawChannel: (iface) => {
        if (iface !== 'can0') throw new Error('Error while creating channel');
        return channel;
      },
    };
    await expect(openSocketCan('can9', { pileNodeId: PILE, module })).rejects.toMatchObject({
      name: 'CanUnavailableError',
      code: 'interface',
    });
    const socket = await openSocketCan('can0', { pileNodeId: PILE, module });
    expect(started).toBe(true);
    expect(filters).toEqual([0x090, 0x190, 0x290, 0x710].map((id) => ({ id, mask: 0x7ff })));
    const received: CanFrame[] = [];
    socket.onFrame((f) => received.push(f));
    onMessage?.({ id: 0x190, data: Buffer.from([1, 2]) });
    onMessage?.({ id: 0, data: Buffer.alloc(8), err: true });
    expect(received).toEqual([{ id: 0x190, data: Uint8Array.of(1, 2), ext: false, rtr: false }]);
    socket.send({ id: 0x210, data: Uint8Array.of(9) });
    expect(sent).toEqual([{ id: 0x210, ext: false, rtr: false, data: Buffer.from([9]) }]);
    socket.close();
    expect(stopped).toBe(true);
    expect(() => socket.send({ id: 1, data: new Uint8Array() })).toThrow(CanUnavailableError);
  });
});

// ---- a real vcan0, where the kernel and Node allow it -----------------------------------------

async function vcanUnavailableReason(): Promise<string | undefined> {
  let module: SocketcanModule;
  try {
    module = await loadSocketcan();
  } catch (error) {
    return (error as Error).message;
  }
  const exists = spawnSync('ip', ['link', 'show', 'vcan0']).status === 0;
  if (!exists) {
    const add = spawnSync('ip', ['link', 'add', 'dev', 'vcan0', 'type', 'vcan'], { encoding: 'utf8' });
    if (add.status !== 0)
      return `ip link add dev vcan0 type vcan: ${(add.stderr || add.error?.message || '').trim()}`;
  }
  const up = spawnSync('ip', ['link', 'set', 'up', 'vcan0'], { encoding: 'utf8' });
  if (up.status !== 0) return `ip link set up vcan0: ${up.stderr.trim()}`;
  try {
    module.createRawChannel('vcan0', true);
  } catch (error) {
    return `socketcan cannot open vcan0: ${(error as Error).message}`;
  }
  return undefined;
}

const vcanSkip = await vcanUnavailableReason();
if (vcanSkip) console.warn(`pile-can: vcan0 test skipped — ${vcanSkip}`);

describe('CAN pile on a real vcan0', () => {
  it.skipIf(vcanSkip !== undefined)(
    `start/stop and a lost heartbeat over SocketCAN${vcanSkip ? ` (skipped: ${vcanSkip})` : ''}`,
    async () => {
      const timers: PileTimers = systemTimers;
      const pileSocket = await openSocketCan('vcan0'); // the pile side: no filter
      const sim = new CanPileSim(
        pileSocket,
        timers,
        { pileNodeId: PILE, gatewayNodeId: GATEWAY, connectors: [1], heartbeatMs: 50 },
        {},
      );
      const config = canPileSchema.parse({
        interface: 'vcan0',
        pileNodeId: PILE,
        gatewayNodeId: GATEWAY,
        heartbeatMs: 50,
        heartbeatTimeoutMs: 150,
      });
      const driver = await openCanPile(config, { connectors: [1] });
      try {
        const events: PileEvent[] = [];
        driver.onEvent((e) => events.push(e));
        expect((await driver.read(1)).meterWh).toBe(2_001_000);
        await driver.start(1, {});
        await driver.stop(1);
        sim.heartbeatSilenced = true;
        await expect
          .poll(() => events.some((e) => e.kind === 'connection-lost'), { timeout: 2_000 })
          .toBe(true);
      } finally {
        await driver.close().catch(() => {});
        sim.stop();
        pileSocket.close();
      }
    },
  );
});
