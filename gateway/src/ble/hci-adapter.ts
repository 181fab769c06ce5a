/**
 * Taking the Bluetooth adapter on a Raspberry Pi for bleno, and resetting it after errors.
 *
 * bleno (hci-socket bindings, raw channel) sends its own HCI commands to a controller the
 * kernel keeps up. Two things get in the way on a stock Raspberry Pi OS:
 *
 * - **bluetoothd** manages the same controller through the kernel's management interface and
 *   runs its own GATT server on the kernel's ATT channel, so a phone would see its services and
 *   bleno's at once. The documented choice (docs/raspberry-pi.md): bluetoothd does not run on a
 *   PilePass gateway — install.sh masks bluetooth.service and the unit `Conflicts=` with it.
 *   `takeAdapter` refuses to start while a bluetoothd process exists, naming the fix.
 * - Without bluetoothd nobody powers the adapter on after boot (the kernel powers it down
 *   2 s after registering it). `takeAdapter` powers it on through the kernel's management
 *   channel (MGMT_OP_SET_POWERED; needs CAP_NET_ADMIN, which the unit grants as an ambient
 *   capability), and `resetAdapter` powers it off and on, which makes the kernel send
 *   HCI_Reset and re-initialise the controller.
 *
 * Wire format (BlueZ doc/mgmt-api.txt): command = opcode u16le, controller index u16le,
 * parameter length u16le, parameters. Replies arrive as Command Complete (event 0x0001:
 * opcode u16le, status u8, return parameters) or Command Status (event 0x0002: opcode u16le,
 * status u8) events on the same socket, with the controller index in the header.
 * @module
 */

import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export const MGMT_OP_SET_POWERED = 0x0005;
export const MGMT_EV_CMD_COMPLETE = 0x0001;
export const MGMT_EV_CMD_STATUS = 0x0002;
/** Header size of a management packet. */
const MGMT_HEADER = 6;

/** Management status codes (mgmt-api.txt "Error Codes"), the ones worth naming. */
const MGMT_STATUS_TEXT: Readonly<Record<number, string>> = {
  1: 'unknown command',
  3: 'failed',
  7: 'no resources',
  8: 'timeout',
  10: 'busy',
  11: 'rejected',
  12: 'not supported',
  13: 'invalid parameters',
  17: 'invalid index (no such adapter)',
  18: 'blocked by rfkill',
  20: 'permission denied',
};

export type AdapterErrorCode =
  | 'no-kernel-bluetooth'
  | 'no-adapter'
  | 'rfkill'
  | 'permission'
  | 'bluetoothd'
  | 'timeout'
  | 'failed';

export class AdapterError extends Error {
  readonly code: AdapterErrorCode;
  constructor(code: AdapterErrorCode, message: string) {
    super(message);
    this.name = 'AdapterError';
    this.code = code;
  }
}

/** The Set Powered command for controller `index`. */
export function encodeSetPowered(index: number, on: boolean): Buffer {
  if (!Number.isInteger(index) || index < 0 || index > 0xfffe) {
    throw new RangeError(`controller index must be an integer 0–65534, got ${index}`);
  }
  const packet = Buffer.alloc(MGMT_HEADER + 1);
  packet.writeUInt16LE(MGMT_OP_SET_POWERED, 0);
  packet.writeUInt16LE(index, 2);
  packet.writeUInt16LE(1, 4);
  packet.writeUInt8(on ? 1 : 0, 6);
  return packet;
}

/**
 * The status of the reply to `opcode` for controller `index` in one management packet, or
 * undefined when the packet is something else (other events, other controllers, truncated).
 */
export function parseCommandReply(packet: Uint8Array, opcode: number, index: number): number | undefined {
  if (packet.length < MGMT_HEADER + 3) return undefined;
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  const event = view.readUInt16LE(0);
  if (event !== MGMT_EV_CMD_COMPLETE && event !== MGMT_EV_CMD_STATUS) return undefined;
  if (view.readUInt16LE(2) !== index) return undefined;
  const length = view.readUInt16LE(4);
  if (length < 3 || packet.length < MGMT_HEADER + length) return undefined;
  if (view.readUInt16LE(MGMT_HEADER) !== opcode) return undefined;
  return view.readUInt8(MGMT_HEADER + 2);
}

/** The management error for a non-zero status, naming the adapter and the fix where there is one. */
export function statusError(status: number, index: number, what: string): AdapterError {
  const text = MGMT_STATUS_TEXT[status] ?? `status 0x${status.toString(16).padStart(2, '0')}`;
  const adapter = `hci${index}`;
  if (status === 0x11) return new AdapterError('no-adapter', `${what} ${adapter}: ${text}`);
  if (status === 0x12) {
    return new AdapterError('rfkill', `${what} ${adapter}: ${text} — run: rfkill unblock bluetooth`);
  }
  if (status === 0x14) {
    return new AdapterError(
      'permission',
      `${what} ${adapter}: ${text} — the gateway needs CAP_NET_ADMIN (AmbientCapabilities in the unit)`,
    );
  }
  return new AdapterError('failed', `${what} ${adapter}: ${text}`);
}

/** The parts of @stoprocent/bluetooth-hci-socket's socket used on the control channel. */
export interface ControlSocket {
  on(event: 'data', listener: (data: Buffer) => void): unknown;
  on(event: 'error', listener: (error: NodeJS.ErrnoException) => void): unknown;
  bindControl(): unknown;
  start(): void;
  stop(): void;
  write(data: Buffer): void;
  removeAllListeners(): unknown;
}

export interface AdapterDeps {
  /** A fresh, unbound HCI socket (default: the native driver of @stoprocent/bluetooth-hci-socket). */
  readonly openSocket?: () => Promise<ControlSocket>;
  /** Where to look for a running bluetoothd (default /proc). */
  readonly procDir?: string;
  /** How long to wait for the kernel's answer (default 3000 ms). */
  readonly timeoutMs?: number;
}

/**
 * The native HCI socket class from the copy of @stoprocent/bluetooth-hci-socket that bleno
 * itself loads (it is bleno's dependency, not ours: resolved from bleno's location).
 */
async function openNativeSocket(): Promise<ControlSocket> {
  const fromBleno = createRequire(createRequire(import.meta.url).resolve('@stoprocent/bleno'));
  const hciSocket = fromBleno('@stoprocent/bluetooth-hci-socket') as {
    loadDriver(kind: 'native'): new () => ControlSocket;
  };
  const Socket = hciSocket.loadDriver('native');
  return new Socket();
}

/**
 * Sends Set Powered on the management channel and waits for the kernel's reply. Errors:
 * `no-kernel-bluetooth` (no AF_BLUETOOTH), `no-adapter`, `rfkill`, `permission`, `timeout`.
 */
export async function setAdapterPowered(index: number, on: boolean, deps: AdapterDeps = {}): Promise<void> {
  const what = on ? 'powering on' : 'powering off';
  const command = encodeSetPowered(index, on);
  const socket = await (deps.openSocket ?? openNativeSocket)();
  const timeoutMs = deps.timeoutMs ?? 3_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new AdapterError('timeout', `${what} hci${index}: no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const settle = (err?: Error) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      socket.on('error', (error) => settle(socketError(error, index, what)));
      socket.on('data', (data) => {
        const status = parseCommandReply(data, MGMT_OP_SET_POWERED, index);
        if (status === undefined) return; // other events (New Settings, other adapters)
        settle(status === 0 ? undefined : statusError(status, index, what));
      });
      try {
        socket.bindControl();
        socket.start();
        socket.write(command);
      } catch (err) {
        settle(socketError(err as NodeJS.ErrnoException, index, what));
      }
    });
  } finally {
    socket.removeAllListeners();
    try {
      socket.stop();
    } catch {
      // already closed
    }
  }
}

function socketError(error: NodeJS.ErrnoException, index: number, what: string): AdapterError {
  const message = error.message ?? String(error);
  // The native driver reports socket() failures as an 'error' event with this syscall.
  if (/address family not supported/i.test(message) || error.syscall === 'socket creation failed') {
    return new AdapterError(
      'no-kernel-bluetooth',
      `${what} hci${index}: this kernel has no Bluetooth sockets (AF_BLUETOOTH): ${message}`,
    );
  }
  if (error.code === 'EPERM' || error.code === 'EACCES' || /not permitted|permission/i.test(message)) {
    return new AdapterError(
      'permission',
      `${what} hci${index}: ${message} — the gateway needs CAP_NET_ADMIN`,
    );
  }
  return new AdapterError('failed', `${what} hci${index}: ${message}`);
}

/** Pids of running bluetoothd processes (by /proc/<pid>/comm). */
export function findBluetoothd(procDir = '/proc'): number[] {
  let entries: string[];
  try {
    entries = readdirSync(procDir);
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      if (readFileSync(join(procDir, entry, 'comm'), 'utf8').trim() === 'bluetoothd')
        pids.push(Number(entry));
    } catch {
      // the process went away, or hidden (hidepid): not ours to judge
    }
  }
  return pids;
}

/**
 * Makes controller `index` usable by bleno: refuses while bluetoothd runs, then powers it on
 * (a no-op when it already is).
 */
export async function takeAdapter(index: number, deps: AdapterDeps = {}): Promise<void> {
  const daemons = findBluetoothd(deps.procDir);
  if (daemons.length > 0) {
    throw new AdapterError(
      'bluetoothd',
      `bluetoothd (pid ${daemons.join(', ')}) manages the Bluetooth adapter and would answer phones ` +
        'with its own GATT server — stop it: systemctl disable --now bluetooth && systemctl mask bluetooth ' +
        '(install.sh does this)',
    );
  }
  await setAdapterPowered(index, true, deps);
}

/** Power-cycles controller `index`: the kernel sends HCI_Reset and re-initialises it on power-on. */
export async function resetAdapter(index: number, deps: AdapterDeps = {}): Promise<void> {
  try {
    await setAdapterPowered(index, false, deps);
  } catch (err) {
    // An adapter that is already down (or half gone) still gets the power-on below.
    if (!(err instanceof AdapterError) || err.code === 'no-kernel-bluetooth' || err.code === 'permission')
      throw err;
  }
  await setAdapterPowered(index, true, deps);
}
