/**
 * The simulated pile as a separate process and its PileDriver: the meter follows the configured
 * power, stop/unplug/fault/energy cap open the contactor, a faulted or unplugged connector
 * refuses start, the pile keeps its contactor on when the driving process closes or is killed,
 * a dead pile shows up as connection-lost, and bad input never crashes the pile. The physics is
 * also checked exactly against the model with a fake clock.
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PileDriver, PileEvent } from '../../gateway/src/contracts.ts';
import {
  createSimPileControl,
  createSimPileDriver,
  type SimPileControl,
  SimPileLinkError,
  SimPileRequestError,
} from '../../gateway/src/pile/sim-driver.ts';
import { createSimPileModel, initialMeterWh } from '../../gateway/src/pile/sim-model.ts';
import {
  type SimPileProcess,
  startSimPileProcess,
  tsxNodeArgs,
} from '../../gateway/src/pile/sim-pile-process.ts';

const POWER_W = 7000;
const SPEED = 60;
/** Wh per monotonic ms of real time at POWER_W × SPEED. */
const WH_PER_MS = (POWER_W * SPEED) / 3_600_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function nextEvent(driver: PileDriver, match: (event: PileEvent) => boolean, timeoutMs = 3000) {
  return new Promise<PileEvent>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no matching pile event'));
    }, timeoutMs);
    const off = driver.onEvent((event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('condition not reached');
    await sleep(25);
  }
}

describe('sim pile model (fake monotonic clock)', () => {
  function model(extra: { plugged?: number[]; requirePlug?: boolean } = {}) {
    let now = 0;
    const sim = createSimPileModel({
      connectors: [1, 2],
      ratedPowerW: 7000,
      speed: 1,
      requirePlug: extra.requirePlug ?? true,
      plugged: extra.plugged ?? [1, 2],
      nowMs: () => now,
    });
    const meter = (connector: number) => {
      const out = sim.handle({ id: 0, op: 'read', connector }, 1).response;
      if (!out.ok || out.reading === undefined) throw new Error('read failed');
      return out.reading;
    };
    return { sim, meter, advance: (ms: number) => (now += ms) };
  }

  it('integrates power over time, keeping fractions internally and showing integer Wh', () => {
    const { sim, meter, advance } = model();
    expect(meter(1).meterWh).toBe(initialMeterWh(1));
    sim.handle({ id: 1, op: 'start', connector: 1 }, 1);
    advance(3_600_000);
    expect(meter(1)).toMatchObject({ meterWh: initialMeterWh(1) + 7000, powerW: 7000, contactorOn: true });
    // 7000 W for 257 ms = 0.4997 Wh: invisible alone, visible once three of them add up.
    advance(257);
    expect(meter(1).meterWh).toBe(initialMeterWh(1) + 7000);
    advance(257);
    advance(257);
    expect(meter(1).meterWh).toBe(initialMeterWh(1) + 7001);
    expect(meter(2).meterWh).toBe(initialMeterWh(2));
  });

  it('stops exactly at the energy cap and refuses start when faulted or unplugged', () => {
    const { sim, meter, advance } = model({ plugged: [1] });
    const start = sim.handle({ id: 1, op: 'start', connector: 1, maxEnergyWh: 100 }, 1);
    expect(start.response.ok).toBe(true);
    advance(3_600_000);
    expect(sim.tick()[0]).toMatchObject({
      reading: { contactorOn: false, meterWh: initialMeterWh(1) + 100 },
    });
    expect(meter(1).powerW).toBe(0);
    expect(sim.handle({ id: 2, op: 'start', connector: 2 }, 1).response).toMatchObject({
      ok: false,
      code: 'unplugged',
    });
    sim.handle({ id: 3, op: 'fault', connector: 1, detail: 'RCD' }, 1);
    expect(sim.handle({ id: 4, op: 'start', connector: 1 }, 1).response).toMatchObject({
      ok: false,
      code: 'faulted',
    });
  });

  it('resumes from a snapshot without losing energy', () => {
    const { sim, advance } = model();
    sim.handle({ id: 1, op: 'start', connector: 2 }, 1);
    advance(1_800_000);
    const saved = sim.snapshot();
    const resumed = createSimPileModel({
      connectors: [1, 2],
      ratedPowerW: 7000,
      speed: 1,
      requirePlug: true,
      plugged: [],
      nowMs: () => 0,
      restored: saved,
    });
    const read = resumed.handle({ id: 2, op: 'read', connector: 2 }, 1).response;
    expect(read).toMatchObject({
      ok: true,
      reading: { contactorOn: true, meterWh: initialMeterWh(2) + 3500 },
    });
  });
});

describe('sim pile process and its driver', () => {
  let dir: string;
  let pile: SimPileProcess;
  let driver: PileDriver;
  let control: SimPileControl;
  const processes: SimPileProcess[] = [];
  const closers: Array<() => Promise<void>> = [];

  async function startPile(options: Partial<Parameters<typeof startSimPileProcess>[0]> = {}) {
    const started = await startSimPileProcess({
      dir,
      connectors: [1, 2],
      powerW: POWER_W,
      speed: SPEED,
      watchPid: process.pid,
      ...options,
    });
    processes.push(started);
    return started;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pp-pile-'));
    pile = await startPile();
    driver = await createSimPileDriver({
      socketPath: pile.socketPath,
      connectors: [1, 2],
      requestTimeoutMs: 2000,
    });
    control = await createSimPileControl(pile.socketPath);
    closers.push(
      () => driver.close(),
      () => control.close(),
    );
  });

  afterAll(async () => {
    for (const close of closers) await close().catch(() => {});
    await Promise.all(processes.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('start closes the contactor and the meter advances at the configured power', async () => {
    const reading = nextEvent(driver, (e) => e.kind === 'reading' && e.reading.connector === 1);
    await driver.start(1, {});
    await reading;
    const t0a = performance.now();
    const r0 = await driver.read(1);
    const t0b = performance.now();
    await sleep(800);
    const t1a = performance.now();
    const r1 = await driver.read(1);
    const t1b = performance.now();
    expect(r0).toMatchObject({
      connector: 1,
      contactorOn: true,
      plugged: true,
      faulted: false,
      powerW: POWER_W,
    });
    expect(r1.meterId).toBe('SIM-1');
    // The pile took each reading somewhere inside its request's window; ±1 Wh for integer registers.
    const delta = r1.meterWh - r0.meterWh;
    expect(delta).toBeGreaterThanOrEqual(Math.floor(WH_PER_MS * (t1a - t0b)) - 1);
    expect(delta).toBeLessThanOrEqual(Math.ceil(WH_PER_MS * (t1b - t0a)) + 1);
    expect(delta).toBeGreaterThan(80); // ≈ 93 Wh for 800 ms at 7 kW × 60
  });

  it('stop opens the contactor and the meter stands still', async () => {
    await driver.stop(1);
    const r0 = await driver.read(1);
    expect(r0).toMatchObject({ contactorOn: false, powerW: 0 });
    await sleep(400);
    expect((await driver.read(1)).meterWh).toBe(r0.meterWh);
  });

  it('opens the contactor itself at the session energy cap', async () => {
    const before = await driver.read(2);
    const capped = nextEvent(
      driver,
      (e) => e.kind === 'reading' && e.reading.connector === 2 && !e.reading.contactorOn,
    );
    await driver.start(2, { maxEnergyWh: 40 });
    expect((await control.state()).connectors[1]?.stopAtWh).toBe(before.meterWh + 40);
    const event = await capped;
    expect(event).toMatchObject({ reading: { meterWh: before.meterWh + 40, powerW: 0 } });
    await expect(driver.start(2, { maxEnergyWh: 0 })).rejects.toThrow(RangeError);
  });

  it('unplugging emits unplugged, opens the contactor, and start is refused until plugged again', async () => {
    await driver.start(1, {});
    const unplugged = nextEvent(driver, (e) => e.kind === 'unplugged');
    await control.unplug(1);
    expect(await unplugged).toEqual({ kind: 'unplugged', connector: 1 });
    const r0 = await driver.read(1);
    expect(r0).toMatchObject({ contactorOn: false, plugged: false, powerW: 0 });
    await sleep(300);
    expect((await driver.read(1)).meterWh).toBe(r0.meterWh);
    await expect(driver.start(1, {})).rejects.toMatchObject({
      name: 'SimPileRequestError',
      code: 'unplugged',
    });
    await control.plug(1);
    await driver.start(1, {});
    expect((await driver.read(1)).contactorOn).toBe(true);
    await driver.stop(1);
  });

  it('a fault emits fault, opens the contactor, and start is refused until cleared', async () => {
    await driver.start(1, {});
    const fault = nextEvent(driver, (e) => e.kind === 'fault');
    await control.fault(1, 'residual current');
    expect(await fault).toEqual({ kind: 'fault', connector: 1, detail: 'residual current' });
    expect(await driver.read(1)).toMatchObject({ contactorOn: false, faulted: true, powerW: 0 });
    const refused = await driver.start(1, {}).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SimPileRequestError);
    expect(refused).toMatchObject({ code: 'faulted', op: 'start' });
    expect((await control.state()).connectors[0]).toMatchObject({
      faulted: true,
      faultDetail: 'residual current',
    });
    await control.clearFault(1);
    expect(await driver.read(1)).toMatchObject({ faulted: false, contactorOn: false });
    await driver.start(1, {});
    expect((await driver.read(1)).contactorOn).toBe(true);
    await driver.stop(1);
  });

  it('closing a driver leaves the contactor on (start-up recovery owns that decision)', async () => {
    const first = await createSimPileDriver({ socketPath: pile.socketPath, connectors: [1] });
    await first.start(1, {});
    await first.close();
    await expect(first.read(1)).rejects.toBeInstanceOf(SimPileLinkError);
    const r0 = await control.read(1);
    expect(r0.contactorOn).toBe(true);
    await sleep(200);
    const fresh = await createSimPileDriver({ socketPath: pile.socketPath, connectors: [1] });
    const r1 = await fresh.read(1);
    expect(r1.contactorOn).toBe(true);
    expect(r1.meterWh).toBeGreaterThan(r0.meterWh);
    await fresh.stop(1);
    await fresh.close();
  });

  it('a SIGKILLed driving process leaves the contactor on', async () => {
    const driverUrl = new URL('../../gateway/src/pile/sim-driver.ts', import.meta.url).href;
    const code = [
      `const { createSimPileDriver } = await import(${JSON.stringify(driverUrl)});`,
      `const d = await createSimPileDriver({ socketPath: ${JSON.stringify(pile.socketPath)}, connectors: [2] });`,
      `await d.start(2, {});`,
      `console.log('started');`,
      `setInterval(() => {}, 1000);`,
    ].join('\n');
    const child = spawn(process.execPath, [...tsxNodeArgs(), '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        if (chunk.includes('started')) resolve();
      });
      child.once('exit', () => reject(new Error('driver process exited early')));
    });
    const clientsWith = (await control.state()).clients;
    child.kill('SIGKILL');
    await exited;
    await waitFor(async () => (await control.state()).clients < clientsWith);
    const r0 = await control.read(2);
    expect(r0).toMatchObject({ contactorOn: true, powerW: POWER_W });
    await sleep(200);
    expect((await control.read(2)).meterWh).toBeGreaterThan(r0.meterWh);
    await driver.stop(2);
  });

  it('a dead pile process shows up as connection-lost and requests fail', async () => {
    const doomed = await startPile({ socketName: 'doomed.sock', connectors: [1] });
    const lonely = await createSimPileDriver({ socketPath: doomed.socketPath, connectors: [1] });
    closers.push(() => lonely.close());
    const lost = nextEvent(lonely, (e) => e.kind === 'connection-lost');
    await doomed.kill();
    expect(await lost).toEqual({ kind: 'connection-lost' });
    await expect(lonely.read(1)).rejects.toMatchObject({
      name: 'SimPileLinkError',
      reason: 'connection-lost',
    });
  });

  describe('against a pile that stops answering', () => {
    let server: Server;
    let peer: Socket | undefined;
    let socketPath: string;

    beforeAll(async () => {
      socketPath = join(dir, 'mute.sock');
      server = createServer((socket) => {
        peer = socket;
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => {
          // Answers only the driver's start-up state query, then goes quiet.
          if (!chunk.includes('"op":"state"')) return;
          const id = (JSON.parse(chunk.trim()) as { id: number }).id;
          const connector = { connector: 1, contactorOn: false, plugged: true, faulted: false, meterWh: 5 };
          const state = {
            connectors: [{ ...connector, meterId: 'M', powerW: 0, faultDetail: null, stopAtWh: null }],
            ratedPowerW: 1,
            speed: 1,
            requirePlug: true,
            clients: 1,
          };
          socket.write(`${JSON.stringify({ id, ok: true, state })}\n`);
        });
      });
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    });

    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('times out a request, and a dropped link rejects what is pending with connection-lost', async () => {
      const mute = await createSimPileDriver({ socketPath, connectors: [1], requestTimeoutMs: 150 });
      closers.push(() => mute.close());
      await expect(mute.read(1)).rejects.toMatchObject({ name: 'SimPileLinkError', reason: 'timeout' });
      const lost = nextEvent(mute, (e) => e.kind === 'connection-lost');
      const pending = mute.stop(1);
      await sleep(20);
      peer?.destroy();
      await expect(pending).rejects.toMatchObject({ reason: 'connection-lost' });
      await lost;
    });
  });

  it('answers malformed lines with errors and keeps serving', async () => {
    const raw = netConnect(pile.socketPath);
    raw.setEncoding('utf8');
    const replies: Array<Record<string, unknown>> = [];
    let buffered = '';
    raw.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const message = JSON.parse(line) as Record<string, unknown>;
        if (!('event' in message)) replies.push(message);
      }
    });
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write('this is not json\n');
    raw.write('{"id":1,"op":"start"\n');
    raw.write('[1,2,3]\n');
    raw.write('{"op":"read","connector":1}\n');
    raw.write('{"id":2,"op":"explode","connector":1}\n');
    raw.write('{"id":3,"op":"start","connector":1,"maxEnergyWh":-5}\n');
    raw.write('{"id":4,"op":"read","connector":0}\n');
    raw.write('{"id":5,"op":"read","connector":7}\n');
    raw.write(`${'x'.repeat(70_000)}\n`);
    raw.write('{"id":6,"op":"read","connector":1}\n');
    await waitFor(async () => replies.some((r) => r.id === 6));
    raw.destroy();
    expect(replies.map((r) => [r.id, r.ok, r.code])).toEqual([
      [null, false, 'bad-request'],
      [null, false, 'bad-request'],
      [null, false, 'bad-request'],
      [null, false, 'bad-request'],
      [2, false, 'bad-request'],
      [3, false, 'bad-request'],
      [4, false, 'bad-request'],
      [5, false, 'unknown-connector'],
      [null, false, 'bad-request'],
      [6, true, undefined],
    ]);
    expect(replies[0]?.error).toMatch(/malformed JSON/);
    expect((await driver.read(1)).contactorOn).toBe(false); // nothing was switched
    expect((await control.state()).connectors).toHaveLength(2);
  });

  it('a crashed pile restarted from its state file resumes with the contactor on', async () => {
    const statePath = join(dir, 'pile-state.json');
    const first = await startPile({ socketName: 'persist.sock', connectors: [1], statePath });
    const d1 = await createSimPileDriver({ socketPath: first.socketPath, connectors: [1] });
    closers.push(() => d1.close());
    await d1.start(1, {});
    const r0 = await d1.read(1);
    await first.kill(); // SIGKILL: the socket file stays behind
    // The driver retries connecting while the new pile starts and clears the stale socket.
    const [second, d2] = await Promise.all([
      startPile({ socketName: 'persist.sock', connectors: [1], statePath }),
      createSimPileDriver({ socketPath: first.socketPath, connectors: [1], connectTimeoutMs: 10_000 }),
    ]);
    closers.push(() => d2.close());
    const r1 = await d2.read(1);
    expect(r1.contactorOn).toBe(true);
    expect(r1.meterWh).toBeGreaterThanOrEqual(r0.meterWh);
    await d2.stop(1);
    await second.stop();
  });
});
