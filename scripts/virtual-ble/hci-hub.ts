/**
 * HCI hub for btvirt's emulated LE controllers: each BLE device is reached as
 * socat pty ⇄ hub (in this process) ⇄ btvirt (`/tmp/bt-server-le`), so that several links can
 * be up at once.
 *
 * Why: btvirt 5.66 (Debian 12) keeps per-controller connection handles (the first free one
 * from 42 up), but tells a peripheral the *central's* handle in LE Connection Complete and
 * forwards ACL data with the *sender's* handle. Every phone has one link, so every phone's
 * handle is 42: with two phones connected at once the gateway could not tell their packets
 * apart (nor address its answers). The hub passes commands and events through — with the
 * peripheral's real handle put into LE Connection Complete — while ACL data of a connection
 * between two hub controllers goes straight to the other host with that host's handle (the
 * sender gets its Number Of Completed Packets). Everything else (advertising, scanning,
 * connecting, disconnecting) is btvirt's. btvirt never times a link out, so `dropLinks` ends a
 * vanished host's links as a supervision timeout would. PILEPASS_HCI_TRACE=1 prints every HCI
 * packet the hub sees on stderr.
 *
 * btvirt itself must be running (scripts/virtual-ble/btvirt.ts; scripts/virtual-ble/radio.ts
 * starts both). Node only.
 * @module
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { BTVIRT_LE_SOCKET } from './btvirt.ts';
import { exitOf, type ProcessExit, settlesWithin } from './child-exit.ts';

export interface HciHubOptions {
  /** Directory for the hub's sockets and ptys (`hci<i>.sock`, `hci<i>`); the caller owns it. */
  readonly dir: string;
  /** Number of BLE devices (ptys), 1–8. */
  readonly devices: number;
  /** Called with each socat PID once spawned (e.g. to kill it if this process dies). */
  readonly onSpawn?: (pid: number) => void;
  /** Called with each socat PID once it has exited during stop(). */
  readonly onExit?: (pid: number) => void;
}

export interface HciHub {
  /** One HCI UART per device. */
  readonly ptys: readonly string[];
  /** socat PIDs (each leads its own process group). */
  readonly pids: readonly number[];
  /** ACL packets routed between hosts, and LE Connection Complete handles corrected. */
  readonly stats: { routed: number; corrected: number; unrouted: number };
  /**
   * Ends device `index`'s connections on behalf of a host that is gone (a killed phone): the
   * peers see them end (reason: connection timeout), as a supervision timeout would end them
   * over the air. btvirt does not do it by itself: the link layer never times out.
   */
  dropLinks(index: number): void;
  /** Stops every socat and closes the hub's sockets. */
  stop(): Promise<void>;
}

/** The smallest connection handle btvirt hands out (its ACL_HANDLE). */
const FIRST_HANDLE = 42;
const H4_COMMAND = 0x01;
const H4_ACL = 0x02;
const H4_EVENT = 0x04;

interface HubLink {
  readonly peer: HubDevice;
  readonly peerHandle: number;
}

interface HubDevice {
  readonly index: number;
  host: Socket | undefined;
  controller: Socket | undefined;
  /** Public and random addresses, as the 6 raw HCI bytes in hex. */
  readonly addresses: Set<string>;
  /** Handles btvirt has live on this controller. */
  readonly handles: Set<number>;
  /** Connected and paired with the peer's end. */
  readonly links: Map<number, HubLink>;
  /** Connection complete seen here, the peer's end not yet: handle → peer address. */
  readonly unpaired: Map<number, string>;
  /** ACL the host sent on an unpaired handle, delivered once paired. */
  readonly queued: Map<number, Buffer[]>;
  /** Answers to commands the hub sent itself, not for the host. */
  readonly swallow: ((p: Buffer) => boolean)[];
}

/** Splits an H4 byte stream (UART HCI) into whole packets. */
class H4Splitter {
  #buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const packets: Buffer[] = [];
    for (;;) {
      const size = h4Size(this.#buffer);
      if (size === undefined || this.#buffer.length < size) break;
      if (size === -1) {
        // Unknown packet type: out of sync, pass the rest on as it is.
        packets.push(this.#buffer);
        this.#buffer = Buffer.alloc(0);
        break;
      }
      packets.push(this.#buffer.subarray(0, size));
      this.#buffer = this.#buffer.subarray(size);
    }
    return packets;
  }
}

/** Whole size of the H4 packet at the start of `b`; undefined = need more bytes; -1 = unknown. */
function h4Size(b: Buffer): number | undefined {
  if (b.length < 1) return undefined;
  switch (b[0]) {
    case 0x01: // command: type, opcode(2), length(1)
      return b.length < 4 ? undefined : 4 + b[3]!;
    case 0x02: // ACL: type, handle(2), length(2)
      return b.length < 5 ? undefined : 5 + b.readUInt16LE(3);
    case 0x03: // SCO: type, handle(2), length(1)
      return b.length < 4 ? undefined : 4 + b[3]!;
    case 0x04: // event: type, code, length(1)
      return b.length < 3 ? undefined : 3 + b[2]!;
    case 0x05: // ISO: type, handle(2), length(2, 14 bits)
      return b.length < 5 ? undefined : 5 + (b.readUInt16LE(3) & 0x3fff);
    default:
      return -1;
  }
}

/** Number Of Completed Packets: one packet on `handle`. */
function completedPacket(handle: number): Buffer {
  const event = Buffer.from([H4_EVENT, 0x13, 0x05, 0x01, 0, 0, 0x01, 0x00]);
  event.writeUInt16LE(handle, 4);
  return event;
}

/**
 * `count` emulated controllers, each reached as socat pty ⇄ hub ⇄ btvirt. Commands and events
 * pass through (LE Connection Complete gets the peripheral's real handle); ACL data on a
 * connection both of whose ends are hub devices goes straight to the other host with that
 * host's handle, and the sender gets its Number Of Completed Packets.
 */
export async function startHciHub(options: HciHubOptions): Promise<HciHub> {
  const { dir, devices: count } = options;
  if (!Number.isInteger(count) || count < 1 || count > 8) {
    throw new RangeError(`devices must be an integer 1–8, got ${count}`);
  }
  const stats = { routed: 0, corrected: 0, unrouted: 0 };
  const devices: HubDevice[] = [];
  const servers: Server[] = [];
  const socats: { proc: ChildProcess; exited: Promise<ProcessExit>; output: () => string }[] = [];
  const trace = process.env.PILEPASS_HCI_TRACE
    ? (line: string) => process.stderr.write(`${line}\n`)
    : undefined;

  const pair = (device: HubDevice, handle: number, peerAddress: string) => {
    for (const other of devices) {
      if (other === device || !other.addresses.has(peerAddress)) continue;
      for (const [otherHandle, otherPeerAddress] of other.unpaired) {
        if (!device.addresses.has(otherPeerAddress)) continue;
        other.unpaired.delete(otherHandle);
        device.links.set(handle, { peer: other, peerHandle: otherHandle });
        other.links.set(otherHandle, { peer: device, peerHandle: handle });
        trace?.(`hub: paired dev${device.index}/${handle} ⇄ dev${other.index}/${otherHandle}`);
        for (const p of device.queued.get(handle) ?? []) routeAcl(device, p);
        for (const p of other.queued.get(otherHandle) ?? []) routeAcl(other, p);
        device.queued.delete(handle);
        other.queued.delete(otherHandle);
        return;
      }
    }
    device.unpaired.set(handle, peerAddress);
  };

  const forget = (device: HubDevice, handle: number) => {
    device.handles.delete(handle);
    device.links.delete(handle);
    device.unpaired.delete(handle);
    device.queued.delete(handle);
  };

  const routeAcl = (device: HubDevice, p: Buffer): boolean => {
    const field = p.readUInt16LE(1);
    const handle = field & 0x0fff;
    const link = device.links.get(handle);
    if (!link) {
      const queue = device.queued.get(handle);
      if (device.unpaired.has(handle) && queue) {
        queue.push(p);
        return true;
      }
      if (device.unpaired.has(handle)) {
        device.queued.set(handle, [p]);
        return true;
      }
      return false;
    }
    // As a controller does: "start, non-flushable" from a host arrives as "start".
    let flags = field >> 12;
    if ((flags & 0x3) === 0x0) flags = (flags & ~0x3) | 0x2;
    const out = Buffer.from(p);
    out.writeUInt16LE((flags << 12) | link.peerHandle, 1);
    link.peer.host?.write(out);
    device.host?.write(completedPacket(handle));
    stats.routed++;
    return true;
  };

  /** Controller → host. */
  const fromController = (device: HubDevice, p: Buffer): void => {
    let out = p;
    let paired: (() => void) | undefined;
    if (p[0] === H4_EVENT) {
      const code = p[1];
      if (code === 0x3e && p.length >= 15 && (p[3] === 0x01 || p[3] === 0x0a) && p[4] === 0x00) {
        // LE (Enhanced) Connection Complete: handle at 5, role at 7, peer address at 9.
        let handle = p.readUInt16LE(5) & 0x0fff;
        if (p[7] === 0x01) {
          // Peripheral: btvirt 5.66 reports the central's handle; its own is the first free one.
          let own = FIRST_HANDLE;
          while (device.handles.has(own)) own++;
          if (own !== handle) {
            stats.corrected++;
            out = Buffer.from(p);
            out.writeUInt16LE(own, 5);
            handle = own;
          }
        }
        device.handles.add(handle);
        const peerAddress = p.subarray(9, 15).toString('hex');
        const h = handle;
        paired = () => pair(device, h, peerAddress);
      } else if (code === 0x05 && p.length >= 6 && p[3] === 0x00) {
        forget(device, p.readUInt16LE(4) & 0x0fff); // Disconnection Complete (each side's own handle)
      } else if (code === 0x0e && p.length >= 13 && p[4] === 0x09 && p[5] === 0x10 && p[6] === 0x00) {
        device.addresses.add(p.subarray(7, 13).toString('hex')); // Read BD_ADDR
      }
      const swallowed = device.swallow.findIndex((match) => match(out));
      if (swallowed >= 0) {
        device.swallow.splice(swallowed, 1);
        trace?.(`dev${device.index} C>hub ${out.toString('hex')}`);
        return;
      }
    } else if (p[0] === H4_ACL) {
      stats.unrouted++;
    }
    if (out !== p) trace?.(`dev${device.index} C>H (from btvirt: ${p.subarray(0, 20).toString('hex')})`);
    trace?.(`dev${device.index} C>H ${out.subarray(0, 20).toString('hex')}`);
    device.host?.write(out);
    paired?.(); // after the host has its Connection Complete
  };

  /** Host → controller. */
  const fromHost = (device: HubDevice, p: Buffer): void => {
    trace?.(`dev${device.index} H>C ${p.subarray(0, 20).toString('hex')}`);
    if (p[0] === H4_ACL && p.length >= 5 && routeAcl(device, p)) return;
    if (p[0] === H4_COMMAND && p.length >= 4) {
      const opcode = p.readUInt16LE(1);
      if (opcode === 0x0c03) {
        // HCI_Reset: the host starts over (btvirt 5.66 keeps the links; the host forgot them).
        for (const handle of [...device.handles, ...device.links.keys()]) forget(device, handle);
      } else if (opcode === 0x2005 && p.length >= 10) {
        device.addresses.add(p.subarray(4, 10).toString('hex')); // LE Set Random Address
      }
    }
    device.controller?.write(p);
  };

  // Last resort when the process exits without stop(): synchronous, best effort.
  const exitHandler = () => {
    for (const { proc } of socats) {
      if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
        try {
          process.kill(-proc.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  };
  process.on('exit', exitHandler);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(
        socats.map(async ({ proc, exited }) => {
          if (proc.pid === undefined) return;
          if (proc.exitCode === null && proc.signalCode === null) {
            try {
              process.kill(-proc.pid, 'SIGTERM');
            } catch {
              proc.kill('SIGTERM');
            }
            if ((await settlesWithin(exited, 3_000)) === undefined) proc.kill('SIGKILL');
            await settlesWithin(exited, 2_000);
          }
          options.onExit?.(proc.pid);
        }),
      );
      for (const d of devices) {
        d.host?.destroy();
        d.controller?.destroy();
      }
      await Promise.all(servers.map((server) => new Promise<void>((r) => server.close(() => r()))));
      process.removeListener('exit', exitHandler);
    })();
    return stopping;
  };

  try {
    for (let index = 0; index < count; index++) {
      const device: HubDevice = {
        index,
        host: undefined,
        controller: undefined,
        addresses: new Set(),
        handles: new Set(),
        links: new Map(),
        unpaired: new Map(),
        queued: new Map(),
        swallow: [],
      };
      devices.push(device);
      const socketPath = join(dir, `hci${index}.sock`);
      const pty = join(dir, `hci${index}`);
      const server = createServer((host) => {
        const controller = createConnection(BTVIRT_LE_SOCKET);
        device.host = host;
        device.controller = controller;
        const up = new H4Splitter();
        const down = new H4Splitter();
        controller.on('data', (chunk: Buffer) => {
          for (const p of up.push(chunk)) fromController(device, p);
        });
        host.on('data', (chunk: Buffer) => {
          for (const p of down.push(chunk)) fromHost(device, p);
        });
        const close = () => {
          host.destroy();
          controller.destroy();
        };
        host.on('close', close);
        controller.on('close', close);
        host.on('error', close);
        controller.on('error', close);
      });
      servers.push(server);
      await new Promise<void>((resolveListen, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => resolveListen());
      });
      const proc = spawn('socat', ['-d', '-d', `PTY,link=${pty},raw,echo=0`, `UNIX-CONNECT:${socketPath}`], {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      proc.stdout?.on('data', (c: Buffer) => {
        output += c.toString('utf8');
      });
      proc.stderr?.on('data', (c: Buffer) => {
        output += c.toString('utf8');
      });
      const entry = { proc, exited: exitOf(proc), output: () => output };
      socats.push(entry);
      if (proc.pid === undefined) throw new Error(`could not start socat for ${pty}`);
      options.onSpawn?.(proc.pid);
      const deadline = Date.now() + 10_000;
      while (!(output.includes('starting data transfer loop') && existsSync(pty) && device.controller)) {
        if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
          throw new Error(`HCI hub: socat ${pty} ⇄ ${socketPath} ⇄ btvirt did not come up:\n${output}`);
        }
        await sleep(20);
      }
      // btvirt drops a controller it cannot create: make sure this one answers before any host
      // opens the pty (a dead one would only show as a peripheral stuck "poweredOff").
      await probeController(device, PROBE_TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`HCI hub: ${pty}: ${err.message}`);
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ptys: devices.map((d) => join(dir, `hci${d.index}`)),
    pids: socats.map((s) => s.proc.pid!),
    stats,
    dropLinks(index) {
      const device = devices[index];
      if (!device?.controller) return;
      for (const handle of [...device.links.keys()]) {
        const command = Buffer.from([H4_COMMAND, 0x06, 0x04, 0x03, 0, 0, 0x08]); // reason: timeout
        command.writeUInt16LE(handle, 4);
        device.swallow.push(
          (e) => e[0] === H4_EVENT && e[1] === 0x0f && e[5] === 0x06 && e[6] === 0x04, // Command Status
          (e) => e[0] === H4_EVENT && e[1] === 0x05 && (e.readUInt16LE(4) & 0x0fff) === handle,
        );
        fromHost(device, command);
      }
    },
    stop,
  };
}

/** How long btvirt's controller may take to answer the hub's HCI_Reset. */
const PROBE_TIMEOUT_MS = 5_000;

/** Sends HCI_Reset to the device's controller and swallows its Command Complete. */
function probeController(device: HubDevice, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const controller = device.controller;
    if (!controller) {
      reject(new Error('no controller connection'));
      return;
    }
    const matcher = (e: Buffer) => {
      const answered = e[0] === H4_EVENT && e[1] === 0x0e && e.length >= 7 && e.readUInt16LE(4) === 0x0c03;
      if (answered) {
        clearTimeout(timer);
        if (e[6] === 0x00) resolve();
        else reject(new Error(`btvirt's controller answered HCI_Reset with status ${e[6]}`));
      }
      return answered;
    };
    const timer = setTimeout(() => {
      const index = device.swallow.indexOf(matcher);
      if (index >= 0) device.swallow.splice(index, 1);
      reject(new Error(`btvirt's controller did not answer HCI_Reset within ${timeoutMs} ms`));
    }, timeoutMs);
    device.swallow.push(matcher);
    controller.write(Buffer.from([H4_COMMAND, 0x03, 0x0c, 0x00]));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
