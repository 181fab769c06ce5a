/**
 * Taking and resetting the Bluetooth adapter (gateway/src/ble/hci-adapter.ts) and the
 * transport that recovers from a lost adapter (gateway/src/ble/adapter-recovery.ts).
 *
 * This machine's kernel has no Bluetooth, so the management channel is exercised against a
 * fake control socket that answers like the kernel (mgmt-api.txt packets), plus the real
 * native socket to show the error a kernel without AF_BLUETOOTH gives. The recovery logic runs
 * against fake inner transports with a recorded, instant sleep.
 */

import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type AdapterState, createRecoveringTransport } from '../../gateway/src/ble/adapter-recovery.ts';
import {
  AdapterError,
  type ControlSocket,
  encodeSetPowered,
  findBluetoothd,
  MGMT_EV_CMD_COMPLETE,
  MGMT_EV_CMD_STATUS,
  MGMT_OP_SET_POWERED,
  parseCommandReply,
  resetAdapter,
  setAdapterPowered,
  takeAdapter,
} from '../../gateway/src/ble/hci-adapter.ts';
import type { GattHandler, GattTransport, LinkId } from '../../gateway/src/contracts.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A management event packet: event code, controller index, parameters. */
function mgmtEvent(event: number, index: number, params: number[]): Buffer {
  const b = Buffer.alloc(6 + params.length);
  b.writeUInt16LE(event, 0);
  b.writeUInt16LE(index, 2);
  b.writeUInt16LE(params.length, 4);
  Buffer.from(params).copy(b, 6);
  return b;
}

/** Command Complete for Set Powered: opcode, status, current settings (u32). */
const setPoweredComplete = (index: number, status: number) =>
  mgmtEvent(MGMT_EV_CMD_COMPLETE, index, [
    MGMT_OP_SET_POWERED & 0xff,
    MGMT_OP_SET_POWERED >> 8,
    status,
    1,
    0,
    0,
    0,
  ]);

/**
 * A control socket that answers Set Powered like the kernel: first an unrelated New Settings
 * event and a reply for another controller, then the reply `answer(index, on)` decides.
 */
class FakeControlSocket extends EventEmitter implements ControlSocket {
  readonly writes: Buffer[] = [];
  bound = false;
  stopped = false;
  readonly #answer: (index: number, on: boolean) => Buffer | Error | undefined;
  constructor(answer: (index: number, on: boolean) => Buffer | Error | undefined) {
    super();
    this.#answer = answer;
  }
  bindControl() {
    this.bound = true;
  }
  start() {}
  stop() {
    this.stopped = true;
  }
  write(data: Buffer) {
    this.writes.push(Buffer.from(data));
    const index = data.readUInt16LE(2);
    const on = data.readUInt8(6) === 1;
    setImmediate(() => {
      this.emit('data', mgmtEvent(0x0006, index, [1, 0, 0, 0])); // New Settings
      this.emit('data', setPoweredComplete(index + 1, 0)); // another adapter's reply
      const reply = this.#answer(index, on);
      if (reply instanceof Error) this.emit('error', reply);
      else if (reply) this.emit('data', reply);
    });
  }
}

describe('management channel packets', () => {
  it('encodes Set Powered as opcode, index, length, parameter (little-endian)', () => {
    expect(encodeSetPowered(0, true).toString('hex')).toBe('05000000010001');
    expect(encodeSetPowered(2, false).toString('hex')).toBe('05000200010000');
    expect(() => encodeSetPowered(-1, true)).toThrow(RangeError);
    expect(() => encodeSetPowered(0xffff, true)).toThrow(RangeError);
    expect(() => encodeSetPowered(1.5, true)).toThrow(RangeError);
  });

  it('finds the reply to the command for its controller and ignores everything else', () => {
    expect(parseCommandReply(setPoweredComplete(0, 0), MGMT_OP_SET_POWERED, 0)).toBe(0);
    expect(parseCommandReply(setPoweredComplete(0, 0x12), MGMT_OP_SET_POWERED, 0)).toBe(0x12);
    const status = mgmtEvent(MGMT_EV_CMD_STATUS, 1, [0x05, 0x00, 0x14]);
    expect(parseCommandReply(status, MGMT_OP_SET_POWERED, 1)).toBe(0x14);
    expect(parseCommandReply(setPoweredComplete(1, 0), MGMT_OP_SET_POWERED, 0)).toBeUndefined();
    expect(parseCommandReply(setPoweredComplete(0, 0), 0x0007, 0)).toBeUndefined();
    expect(parseCommandReply(mgmtEvent(0x0006, 0, [1, 0, 0, 0]), MGMT_OP_SET_POWERED, 0)).toBeUndefined();
    expect(
      parseCommandReply(setPoweredComplete(0, 0).subarray(0, 8), MGMT_OP_SET_POWERED, 0),
    ).toBeUndefined();
    // A length field larger than the packet is a truncated packet, not a reply.
    const lying = setPoweredComplete(0, 0);
    lying.writeUInt16LE(40, 4);
    expect(parseCommandReply(lying, MGMT_OP_SET_POWERED, 0)).toBeUndefined();
  });
});

describe('setAdapterPowered / takeAdapter / resetAdapter', () => {
  const withFake = (answer: (index: number, on: boolean) => Buffer | Error | undefined) => {
    const sockets: FakeControlSocket[] = [];
    return {
      sockets,
      deps: {
        openSocket: async () => {
          const s = new FakeControlSocket(answer);
          sockets.push(s);
          return s;
        },
        procDir: emptyProc(),
        timeoutMs: 200,
      },
    };
  };

  it('powers the adapter on through the control channel and closes the socket', async () => {
    const { sockets, deps } = withFake((index) => setPoweredComplete(index, 0));
    await setAdapterPowered(1, true, deps);
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.bound).toBe(true);
    expect(sockets[0]!.writes.map((w) => w.toString('hex'))).toEqual(['05000100010001']);
    expect(sockets[0]!.stopped).toBe(true);
    expect(sockets[0]!.listenerCount('data')).toBe(0);
  });

  it.each([
    [0x12, 'rfkill', /rfkill unblock bluetooth/],
    [0x14, 'permission', /CAP_NET_ADMIN/],
    [0x11, 'no-adapter', /hci0: invalid index/],
    [0x0a, 'failed', /hci0: busy/],
  ] as const)('turns status 0x%s into AdapterError %s with a useful message', async (status, code, text) => {
    const { deps } = withFake((index) => setPoweredComplete(index, status));
    const err = await setAdapterPowered(0, true, deps).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as AdapterError).code).toBe(code);
    expect((err as AdapterError).message).toMatch(text);
  });

  it('times out when the kernel never answers', async () => {
    const { sockets, deps } = withFake(() => undefined);
    const err = await setAdapterPowered(0, true, deps).catch((e: unknown) => e);
    expect((err as AdapterError).code).toBe('timeout');
    expect(sockets[0]!.stopped).toBe(true);
  });

  it('reports a socket error event (no AF_BLUETOOTH) as no-kernel-bluetooth', async () => {
    const { deps } = withFake(() =>
      Object.assign(new Error('Address family not supported by protocol'), {
        syscall: 'socket creation failed',
      }),
    );
    const err = await setAdapterPowered(0, true, deps).catch((e: unknown) => e);
    expect((err as AdapterError).code).toBe('no-kernel-bluetooth');
  });

  it('with the real native socket, names the missing kernel Bluetooth on a kernel without it', async (ctx) => {
    let kernelHasBluetooth = true;
    try {
      execFileSync(
        'python3',
        ['-c', 'import socket; socket.socket(31, socket.SOCK_RAW, 1)  # AF_BLUETOOTH, BTPROTO_HCI'],
        {
          stdio: 'pipe',
        },
      );
    } catch (err) {
      kernelHasBluetooth = !/Address family not supported/.test(String((err as { stderr?: Buffer }).stderr));
    }
    if (kernelHasBluetooth) {
      ctx.skip('this kernel has AF_BLUETOOTH: the no-Bluetooth error cannot be shown here');
      return;
    }
    const err = await setAdapterPowered(0, true, { timeoutMs: 1_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as AdapterError).code).toBe('no-kernel-bluetooth');
    expect((err as Error).message).toMatch(/AF_BLUETOOTH/);
  });

  it('refuses to take the adapter while bluetoothd runs, naming the fix, without touching it', async () => {
    const proc = fakeProc({ '1': 'systemd', '417': 'bluetoothd', '900': 'node' });
    expect(findBluetoothd(proc)).toEqual([417]);
    const { sockets, deps } = withFake((index) => setPoweredComplete(index, 0));
    const err = await takeAdapter(0, { ...deps, procDir: proc }).catch((e: unknown) => e);
    expect((err as AdapterError).code).toBe('bluetoothd');
    expect((err as Error).message).toMatch(/pid 417/);
    expect((err as Error).message).toMatch(/systemctl mask bluetooth/);
    expect(sockets).toHaveLength(0);
  });

  it('takes the adapter (power on) when no bluetoothd runs', async () => {
    const { sockets, deps } = withFake((index) => setPoweredComplete(index, 0));
    await takeAdapter(0, { ...deps, procDir: fakeProc({ '1': 'systemd' }) });
    expect(sockets.flatMap((s) => s.writes.map((w) => w.readUInt8(6)))).toEqual([1]);
  });

  it('resets by powering off then on, and still powers on when the power-off is refused', async () => {
    const { sockets, deps } = withFake((index, on) => setPoweredComplete(index, on ? 0 : 0x0a));
    await resetAdapter(0, deps);
    expect(sockets.flatMap((s) => s.writes.map((w) => w.readUInt8(6)))).toEqual([0, 1]);
    const denied = withFake((index) => setPoweredComplete(index, 0x14));
    const err = await resetAdapter(0, denied.deps).catch((e: unknown) => e);
    expect((err as AdapterError).code).toBe('permission');
    expect(denied.sockets).toHaveLength(1); // no point trying power-on without the capability
  });
});

// ---- recovering transport ---------------------------------------------------------------------

/** An inner transport whose links and adapter the test controls. */
class FakeInner implements GattTransport {
  started = false;
  stopped = false;
  readonly links = new Set<LinkId>();
  handler: GattHandler | undefined;
  readonly notified: string[] = [];
  readonly onLost: (reason: string) => void;
  readonly #failStart: Error | undefined;
  constructor(onLost: (reason: string) => void, failStart: Error | undefined) {
    this.onLost = onLost;
    this.#failStart = failStart;
  }
  async start(h: GattHandler) {
    if (this.#failStart) throw this.#failStart;
    this.handler = h;
    this.started = true;
  }
  async stop() {
    this.stopped = true;
    for (const l of [...this.links]) {
      this.links.delete(l);
      this.handler?.onDisconnect(l);
    }
  }
  connect(link: LinkId) {
    this.links.add(link);
    this.handler?.onConnect(link, {});
  }
  maxNotifySize() {
    return 100;
  }
  async notify(link: LinkId, unit: Uint8Array) {
    if (!this.links.has(link)) throw new Error(`notify: link ${link} is not connected`);
    this.notified.push(`${link}:${unit.length}`);
  }
  disconnect(link: LinkId) {
    this.links.delete(link);
  }
}

function recordingHandler() {
  const events: string[] = [];
  const handler: GattHandler = {
    onConnect: (l) => events.push(`connect ${l}`),
    onMtu: () => {},
    onSubscribe: () => {},
    onUnsubscribe: () => {},
    readHello: async () => new Uint8Array(),
    onWrite: async () => {},
    onDisconnect: (l) => events.push(`disconnect ${l}`),
  };
  return { events, handler };
}

function harness(options: {
  failStarts?: (attempt: number) => Error | undefined;
  startAttempts?: number;
  recoveryAttempts?: number;
  backoffMs?: { initial: number; max: number };
  holdSleep?: boolean;
}) {
  const inners: FakeInner[] = [];
  const sleeps: number[] = [];
  const states: string[] = [];
  const logs: string[] = [];
  const calls: string[] = [];
  const gaveUp: Error[] = [];
  let releaseSleep: (() => void) | undefined;
  const log = {
    info: (_o: object, m: string) => logs.push(`info ${m}`),
    warn: (_o: object, m: string) => logs.push(`warn ${m}`),
    error: (_o: object, m: string) => logs.push(`error ${m}`),
  };
  const transport = createRecoveringTransport({
    create: (onLost) => {
      const inner = new FakeInner(onLost, options.failStarts?.(inners.length + 1));
      inners.push(inner);
      return inner;
    },
    prepare: async () => {
      calls.push('prepare');
    },
    reset: async () => {
      calls.push('reset');
    },
    startAttempts: options.startAttempts ?? 5,
    recoveryAttempts: options.recoveryAttempts ?? 10,
    backoffMs: options.backoffMs ?? { initial: 1_000, max: 60_000 },
    onGiveUp: (e) => gaveUp.push(e),
    onStateChange: (s: AdapterState, detail) => states.push(`${s}: ${detail}`),
    log,
    name: 'hci0',
    sleep: (ms, signal) => {
      sleeps.push(ms);
      if (!options.holdSleep) return Promise.resolve();
      return new Promise<void>((resolve) => {
        releaseSleep = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },
  });
  return { transport, inners, sleeps, states, logs, calls, gaveUp, release: () => releaseSleep?.() };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('recovering transport', () => {
  it('takes the adapter once, starts, and passes links through', async () => {
    const h = harness({});
    const { handler, events } = recordingHandler();
    await h.transport.start(handler);
    expect(h.calls).toEqual(['prepare']);
    expect(h.transport.state).toBe('up');
    h.inners[0]!.connect('a');
    await h.transport.notify('a', new Uint8Array(5));
    expect(h.inners[0]!.notified).toEqual(['a:5']);
    expect(h.transport.maxNotifySize('a')).toBe(100);
    expect(events).toEqual(['connect a']);
  });

  it('retries start-up with a reset and exponential backoff, then gives a clear error', async () => {
    const h = harness({ failStarts: (n) => (n < 3 ? new Error(`firmware not loaded (${n})`) : undefined) });
    await h.transport.start(recordingHandler().handler);
    expect(h.calls).toEqual(['prepare', 'reset', 'reset']);
    expect(h.sleeps).toEqual([1_000, 2_000]);
    expect(h.states.at(-1)).toBe('up: started after 3 attempts');

    const never = harness({ startAttempts: 3, failStarts: () => new Error('no controller') });
    await expect(never.transport.start(recordingHandler().handler)).rejects.toThrow(/no controller/);
    expect(never.inners).toHaveLength(3);
    expect(never.transport.state).toBe('failed');
  });

  it('does not retry start-up when bluetoothd holds the adapter', async () => {
    const h = harness({
      failStarts: () => new AdapterError('bluetoothd', 'bluetoothd (pid 417) manages the Bluetooth adapter'),
    });
    await expect(h.transport.start(recordingHandler().handler)).rejects.toThrow(/bluetoothd/);
    expect(h.inners).toHaveLength(1);
    expect(h.sleeps).toEqual([]);
  });

  it('on adapter loss drops every link, resets the adapter and advertises again', async () => {
    const h = harness({});
    const { handler, events } = recordingHandler();
    await h.transport.start(handler);
    const first = h.inners[0]!;
    first.connect('a');
    first.connect('b');
    first.onLost('adapter state poweredOff');
    await settle();
    expect(first.stopped).toBe(true);
    expect(events).toEqual(['connect a', 'connect b', 'disconnect a', 'disconnect b']);
    expect(h.calls).toEqual(['prepare', 'reset']);
    expect(h.inners).toHaveLength(2);
    expect(h.inners[1]!.started).toBe(true);
    expect(h.transport.state).toBe('up');
    expect(h.transport.recoveries).toBe(1);
    expect(h.states).toEqual([
      'starting: start',
      'up: started',
      'recovering: adapter state poweredOff',
      'up: recovered after 1 attempt(s)',
    ]);
    expect(h.logs).toContain('warn BLE adapter lost: dropping links and resetting it');
    expect(h.logs).toContain('info BLE adapter recovered: advertising again');
    // Old link ids are gone with the old transport; new ones work on the new one.
    await expect(h.transport.notify('a', new Uint8Array(1))).rejects.toThrow(/not connected/);
    h.inners[1]!.connect('c');
    await h.transport.notify('c', new Uint8Array(2));
    expect(h.inners[1]!.notified).toEqual(['c:2']);
    // A late loss report from the superseded transport changes nothing.
    first.onLost('adapter state poweredOff');
    await settle();
    expect(h.inners).toHaveLength(2);
  });

  it('backs off up to the cap, logs every attempt, and gives up after the bound', async () => {
    const h = harness({
      recoveryAttempts: 5,
      backoffMs: { initial: 1_000, max: 4_000 },
      failStarts: (n) => (n === 1 ? undefined : new Error('HCI command timed out')),
    });
    await h.transport.start(recordingHandler().handler);
    h.inners[0]!.onLost('adapter state poweredOff');
    await settle();
    expect(h.sleeps).toEqual([1_000, 2_000, 4_000, 4_000, 4_000]);
    expect(h.logs.filter((l) => l === 'warn BLE adapter recovery attempt failed')).toHaveLength(5);
    expect(h.gaveUp).toHaveLength(1);
    expect(h.gaveUp[0]!.message).toMatch(/hci0 did not come back after 5 attempts: HCI command timed out/);
    expect(h.transport.state).toBe('failed');
    await expect(h.transport.notify('x', new Uint8Array(1))).rejects.toThrow(/hci0 is failed/);
    expect(h.transport.maxNotifySize('x')).toBe(20);
  });

  it('stop during a recovery wait ends it: no further attempts', async () => {
    const h = harness({ holdSleep: true });
    await h.transport.start(recordingHandler().handler);
    h.inners[0]!.onLost('adapter state poweredOff');
    await settle();
    expect(h.transport.state).toBe('recovering');
    await h.transport.stop();
    await settle();
    expect(h.transport.state).toBe('stopped');
    expect(h.inners).toHaveLength(1);
    expect(h.calls).toEqual(['prepare']);
  });
});

function emptyProc(): string {
  return fakeProc({});
}

function fakeProc(processes: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-proc-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'self'));
  for (const [pid, comm] of Object.entries(processes)) {
    mkdirSync(join(dir, pid));
    writeFileSync(join(dir, pid, 'comm'), `${comm}\n`);
  }
  return dir;
}
