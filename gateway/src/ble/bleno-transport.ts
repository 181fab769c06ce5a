/**
 * GattTransport over a real HCI controller with @stoprocent/bleno: the PilePass GATT service
 * (hello / control / events, shared/src/gatt.ts), advertising and per-connection link ids.
 *
 * - Port: `{ port: 'uart', path }` (an HCI UART, e.g. a btvirt pty in tests) or
 *   `{ port: 'hci', deviceId }` (kernel HCI socket, e.g. hci0 on the Raspberry Pi). Each
 *   transport gets its own bleno instance via `withBindings('hci', …)`; the package's default
 *   export (created at import) is never used.
 * - Advertising (docs/protocol.md, Advertisement): Flags + Complete List of 128-bit Service UUIDs
 *   (21 of 31 B); the scan response holds the Complete Local Name = the gateway id (Shortened
 *   Local Name of its first 29 bytes when longer). `name` becomes the GAP Device Name (0x2A00).
 * - hello: long read; bleno asks once per blob with the offset; the handler returns the hello
 *   bytes from that offset on (as gateway/src/link does) and bleno sends the first MTU − 1.
 * - control: write with response; prepared (long) writes reach the handler once, joined. The
 *   ATT answer is success after the handler settles (back-pressure), never an ATT error.
 * - events: notify only; `maxNotifySize(link)` = current ATT MTU − 3.
 * - Link ids are random (crypto.randomUUID) per connection; HCI handles are reused.
 *
 * bleno internals used (guarded; checked against 0.12.4): gatt.maxMtu (cap), gatt's
 * per-connection MTU (its `mtuChange` event does not say which connection), gatt.updateName
 * (GAP name), hci.pollIsDevUp (replaced: its 1 s timer chain never ends, keeping node alive
 * after stop), hci's ACL out queue and in-flight counts (a disconnect waits until the link's
 * queued notifications have left, ≤ 500 ms: bleno would discard them) and the SIGINT handler
 * bleno installs (it calls process.exit; removed — the owner calls stop()).
 * @module
 */

import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  type Bleno,
  type ConnectionHandle,
  type ReadRequestCallback,
  type UpdateValueCallback,
  type WriteRequestCallback,
  withBindings,
} from '@stoprocent/bleno';
import {
  CONTROL_CHARACTERISTIC_UUID,
  EVENTS_CHARACTERISTIC_UUID,
  HELLO_CHARACTERISTIC_UUID,
  SERVICE_UUID,
} from '../../../shared/src/gatt.ts';
import type { GattHandler, GattTransport, LinkId } from '../contracts.ts';

/** Which HCI controller to use. */
export type HciPort =
  | { readonly port: 'uart'; readonly path: string }
  | { readonly port: 'hci'; readonly deviceId?: number };

export interface BlenoTransportOptions {
  /** GAP Device Name (0x2A00 characteristic), e.g. "PilePass". */
  readonly name: string;
  /** Advertised as the local name in the scan response (`[A-Za-z0-9._-]{1,32}`). */
  readonly gatewayId: string;
  /** Largest ATT MTU accepted in an exchange, 23–517 (default and bleno's default: 256). */
  readonly maxMtu?: number;
  /** How long start() waits for the controller to power on (default 10 s). */
  readonly powerOnTimeoutMs?: number;
  /** Errors from handler callbacks (default: console.error). The link is left to the handler. */
  readonly onError?: (error: unknown, link: LinkId | undefined) => void;
  /**
   * After a successful start, the adapter left the poweredOn state (powered off, removed,
   * hardware error). The transport stays as it is: the owner stops it and builds a new one
   * (ble/adapter-recovery.ts).
   */
  readonly onAdapterLost?: (reason: string) => void;
}

/** Smallest ATT MTU (Bluetooth Core Vol 3 Part F 3.2.8). */
const ATT_MIN_MTU = 23;
const RESULT_SUCCESS = 0;
const LOCAL_NAME_COMPLETE = 0x09;
const LOCAL_NAME_SHORTENED = 0x08;
const AD_FLAGS = 0x01;
const AD_UUID128_COMPLETE = 0x07;
const AD_MAX = 31;
const STOP_WAIT_MS = 2_000;
/** How long a disconnect waits for the link's queued notifications to leave (ms). */
const ACL_DRAIN_MAX_MS = 500;

interface LinkState {
  readonly id: LinkId;
  readonly handle: ConnectionHandle;
  readonly address: string;
  mtu: number;
  notify: UpdateValueCallback | undefined;
  closing: boolean;
}

/** The parts of bleno 0.12.4's hci-socket bindings this module reaches into (all optional). */
interface BlenoInternals {
  _bindings?: {
    _sigIntHandler?: (...args: unknown[]) => void;
    _gatt?: {
      maxMtu?: number;
      updateName?: (name: string) => void;
      _connections?: Map<ConnectionHandle, { mtu?: number }>;
    };
    _hci?: HciInternals;
  };
}

interface HciInternals {
  _socket?: { isDevUp?: () => boolean };
  _isDevUp?: boolean | null;
  pollIsDevUp?: () => void;
  setSocketFilter?: () => void;
  initDev?: () => void;
  emit?: (event: string, ...args: unknown[]) => boolean;
  disconnect?: (handle: ConnectionHandle) => void;
  _aclOutQueue?: readonly { readonly handle: ConnectionHandle }[];
  _handleAclsInProgress?: Record<ConnectionHandle, number>;
}

export function createBlenoTransport(port: HciPort, options: BlenoTransportOptions): GattTransport {
  const maxMtu = options.maxMtu ?? 256;
  if (!Number.isInteger(maxMtu) || maxMtu < ATT_MIN_MTU || maxMtu > 517) {
    throw new RangeError(`maxMtu must be an integer 23–517, got ${maxMtu}`);
  }
  if (!/^[A-Za-z0-9._-]{1,32}$/.test(options.gatewayId)) {
    throw new RangeError(`gateway id must match [A-Za-z0-9._-]{1,32}: ${JSON.stringify(options.gatewayId)}`);
  }
  const advertisement = advertisingData();
  const scanResponse = scanResponseData(options.gatewayId);
  const reportError =
    options.onError ??
    ((err: unknown, link?: LinkId) => console.error(`bleno transport (link ${link}):`, err));

  let bleno: Bleno | undefined;
  let handler: GattHandler | undefined;
  let stopped = false;
  let devUpTimer: NodeJS.Timeout | undefined;
  const links = new Map<LinkId, LinkState>();
  const byHandle = new Map<ConnectionHandle, LinkState>();
  const internals = () => (bleno as unknown as BlenoInternals | undefined)?._bindings;

  /** Forgets a link and tells the handler (once). */
  const dropLink = (link: LinkState) => {
    if (links.get(link.id) !== link) return;
    links.delete(link.id);
    if (byHandle.get(link.handle) === link) byHandle.delete(link.handle);
    link.notify = undefined;
    safely(link.id, () => handler?.onDisconnect(link.id));
  };

  const safely = (link: LinkId | undefined, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      reportError(err, link);
    }
  };

  const onAccept = (address: string, handle: ConnectionHandle) => {
    const previous = byHandle.get(handle);
    if (previous) dropLink(previous); // missed disconnect: the handle is being reused
    const link: LinkState = {
      id: randomUUID(),
      handle,
      address,
      mtu: ATT_MIN_MTU,
      notify: undefined,
      closing: false,
    };
    links.set(link.id, link);
    byHandle.set(handle, link);
    safely(link.id, () => handler?.onConnect(link.id, { address }));
  };

  const onDisconnect = (_address: string, handle: ConnectionHandle) => {
    const link = byHandle.get(handle);
    if (link) dropLink(link);
  };

  const onMtuChange = (mtu: number) => {
    // bleno does not say which connection exchanged: compare with gatt's per-connection MTU.
    const connections = internals()?._gatt?._connections;
    for (const link of links.values()) {
      const current = connections ? connections.get(link.handle)?.mtu : links.size === 1 ? mtu : undefined;
      if (current !== undefined && current !== link.mtu) {
        link.mtu = current;
        safely(link.id, () => handler?.onMtu(link.id, current));
      }
    }
  };

  const onReadHello = (handle: ConnectionHandle, offset: number, callback: ReadRequestCallback) => {
    const link = byHandle.get(handle);
    if (!link || !handler) {
      callback(RESULT_SUCCESS, Buffer.alloc(0));
      return;
    }
    const h = handler;
    Promise.resolve()
      .then(() => h.readHello(link.id, offset))
      .then(
        (fromOffset) => answer(link, () => callback(RESULT_SUCCESS, Buffer.from(fromOffset))),
        (err: unknown) => {
          reportError(err, link.id);
          answer(link, () => callback(RESULT_SUCCESS, Buffer.alloc(0)));
        },
      );
  };

  /**
   * Sends a deferred ATT answer if the link still exists: bleno's read callback throws on a
   * connection it has already forgotten (and nobody would catch it in a promise chain).
   */
  const answer = (link: LinkState, send: () => void) => {
    if (links.get(link.id) !== link) return;
    safely(link.id, send);
  };

  const onWriteControl = (
    handle: ConnectionHandle,
    data: Buffer,
    _offset: number,
    _withoutResponse: boolean,
    callback: WriteRequestCallback,
  ) => {
    const link = byHandle.get(handle);
    if (!link || !handler) {
      callback(RESULT_SUCCESS);
      return;
    }
    const h = handler;
    // A copy: bleno's buffer may be a view into its prepared-write or ACL buffers.
    const bytes = new Uint8Array(data);
    Promise.resolve()
      .then(() => h.onWrite(link.id, bytes))
      .catch((err: unknown) => reportError(err, link.id))
      .finally(() => answer(link, () => callback(RESULT_SUCCESS)));
  };

  const onSubscribeEvents = (
    handle: ConnectionHandle,
    _maxValueSize: number,
    update: UpdateValueCallback,
  ) => {
    const link = byHandle.get(handle);
    if (!link) return;
    link.notify = update;
    safely(link.id, () => handler?.onSubscribe(link.id));
  };

  const onStateChange = (state: string) => {
    if (state !== 'poweredOn' && !stopped) options.onAdapterLost?.(`adapter state ${state}`);
  };

  const onUnsubscribeEvents = (handle: ConnectionHandle) => {
    const link = byHandle.get(handle);
    if (!link || link.notify === undefined) return;
    link.notify = undefined;
    safely(link.id, () => handler?.onUnsubscribe(link.id));
  };

  return {
    async start(h: GattHandler): Promise<void> {
      if (bleno) throw new Error('bleno transport already started');
      if (port.port === 'uart' && !existsSync(port.path)) {
        throw new Error(`HCI UART ${port.path} does not exist`);
      }
      handler = h;
      stopped = false;
      const instance =
        port.port === 'uart'
          ? withBindings('hci', { hciDriver: 'uart', bindParams: { uart: { port: port.path } } })
          : withBindings('hci', { hciDriver: 'native', deviceId: port.deviceId ?? 0 });
      bleno = instance;
      const bindings = internals();
      if (bindings?._gatt) bindings._gatt.maxMtu = maxMtu;
      if (bindings?._hci) replaceDevUpPoll(bindings._hci);
      instance.on('accept', onAccept);
      instance.on('disconnect', onDisconnect);
      instance.on('mtuChange', onMtuChange);
      try {
        await instance.waitForPoweredOnAsync(options.powerOnTimeoutMs ?? 10_000);
        const sigInt = internals()?._sigIntHandler;
        if (sigInt) process.removeListener('SIGINT', sigInt);
        const { Characteristic, PrimaryService } = instance;
        const service = new PrimaryService({
          uuid: SERVICE_UUID,
          characteristics: [
            new Characteristic({
              uuid: HELLO_CHARACTERISTIC_UUID,
              properties: ['read'],
              onReadRequest: onReadHello,
            }),
            new Characteristic({
              uuid: CONTROL_CHARACTERISTIC_UUID,
              properties: ['write'],
              onWriteRequest: onWriteControl,
            }),
            new Characteristic({
              uuid: EVENTS_CHARACTERISTIC_UUID,
              properties: ['notify'],
              onSubscribe: onSubscribeEvents,
              onUnsubscribe: onUnsubscribeEvents,
            }),
          ],
        });
        await withTimeout(instance.setServicesAsync([service]), 5_000, 'setting GATT services');
        internals()?._gatt?.updateName?.(options.name);
        await withTimeout(
          instance.startAdvertisingWithEIRDataAsync(advertisement, scanResponse),
          5_000,
          'starting advertising',
        );
        instance.on('stateChange', onStateChange);
      } catch (err) {
        shutdown(instance);
        throw new Error(
          `bleno transport on ${describePort(port)} failed to start: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    },

    async stop(): Promise<void> {
      const instance = bleno;
      if (!instance) return;
      await withTimeout(instance.stopAdvertisingAsync(), STOP_WAIT_MS, 'stopping advertising').catch(
        () => {},
      );
      if (links.size > 0) {
        const gone = new Promise<void>((resolve) => {
          const check = () => {
            if (links.size === 0) {
              instance.removeListener('disconnect', check);
              resolve();
            }
          };
          instance.on('disconnect', check);
        });
        for (const link of links.values()) requestDisconnect(link);
        await withTimeout(gone, STOP_WAIT_MS, 'disconnecting').catch(() => {});
      }
      for (const link of [...links.values()]) dropLink(link);
      shutdown(instance);
    },

    maxNotifySize(link: LinkId): number {
      return (links.get(link)?.mtu ?? ATT_MIN_MTU) - 3;
    },

    async notify(link: LinkId, unit: Uint8Array): Promise<void> {
      const state = links.get(link);
      if (!state || state.closing) throw new Error(`notify: link ${link} is not connected`);
      if (!state.notify) throw new Error(`notify: link ${link} has not subscribed to events`);
      const max = state.mtu - 3;
      if (unit.length > max) throw new RangeError(`notify: ${unit.length} B exceeds MTU − 3 = ${max} B`);
      // bleno queues the ATT notification on the ACL link (controller flow control applies).
      try {
        state.notify(Buffer.from(unit));
      } catch (err) {
        throw new Error(`notify: link ${link} failed: ${(err as Error).message}`, { cause: err });
      }
    },

    disconnect(link: LinkId): void {
      const state = links.get(link);
      if (state) requestDisconnect(state);
    },
  };

  function requestDisconnect(link: LinkState): void {
    if (link.closing) return;
    link.closing = true;
    // What was notified just before (the in-band rejection) must reach the phone first: bleno
    // queues ACL data behind the controller's buffer credits and discards a handle's queue on
    // Disconnection Complete, while the disconnect command itself is not queued.
    void aclDrained(link.handle, ACL_DRAIN_MAX_MS).then(() => {
      if (links.get(link.id) !== link) return; // gone already; the handle may be reused
      const hci = internals()?._hci;
      // bleno.disconnect(handle) treats a falsy handle (0 is valid HCI) as "everyone".
      if (hci?.disconnect) hci.disconnect(link.handle);
      // bleno's types omit the handle parameter its disconnect() takes.
      else if (bleno) (bleno.disconnect as (handle: ConnectionHandle) => void).call(bleno, link.handle);
    });
  }

  /** Resolves once bleno has no ACL data queued or unacknowledged for `handle` (or after maxMs). */
  async function aclDrained(handle: ConnectionHandle, maxMs: number): Promise<void> {
    const deadline = performance.now() + maxMs;
    for (;;) {
      const hci = internals()?._hci;
      const queued = hci?._aclOutQueue?.some((p) => p.handle === handle) ?? false;
      const inFlight = hci?._handleAclsInProgress?.[handle] ?? 0;
      if ((!queued && inFlight === 0) || performance.now() >= deadline) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * bleno's hci.pollIsDevUp re-arms a 1 s timer forever (one more chain per socket 'state'
   * event) and never clears it, so node would linger after stop(). Same logic, one timer.
   */
  function replaceDevUpPoll(hci: HciInternals): void {
    const socket = hci._socket;
    if (!hci.pollIsDevUp || !socket?.isDevUp || !hci.setSocketFilter || !hci.initDev || !hci.emit) {
      const original = hci.pollIsDevUp;
      if (original) hci.pollIsDevUp = () => (stopped ? undefined : original.call(hci));
      return;
    }
    hci.pollIsDevUp = () => {
      clearTimeout(devUpTimer);
      if (stopped) return;
      const up = socket.isDevUp!();
      if (hci._isDevUp !== up) {
        if (up) {
          hci.setSocketFilter!();
          hci.initDev!();
        } else {
          hci.emit!('stateChange', 'poweredOff');
        }
        hci._isDevUp = up;
      }
      devUpTimer = setTimeout(() => hci.pollIsDevUp?.(), 1_000);
    };
  }

  function shutdown(instance: Bleno): void {
    stopped = true;
    clearTimeout(devUpTimer);
    instance.removeListener('accept', onAccept);
    instance.removeListener('disconnect', onDisconnect);
    instance.removeListener('mtuChange', onMtuChange);
    instance.removeListener('stateChange', onStateChange);
    try {
      instance.stop(); // closes the HCI socket / UART
    } catch (err) {
      reportError(err, undefined);
    }
    if (bleno === instance) bleno = undefined;
    links.clear();
    byHandle.clear();
  }
}

/** Flags (LE General Discoverable, BR/EDR not supported) + Complete List of 128-bit UUIDs. */
function advertisingData(): Buffer {
  const uuid = Buffer.from(SERVICE_UUID.replaceAll('-', ''), 'hex').reverse();
  return Buffer.concat([Buffer.from([2, AD_FLAGS, 0x06, 1 + uuid.length, AD_UUID128_COMPLETE]), uuid]);
}

/** Complete Local Name = gateway id, or Shortened Local Name of its first 29 bytes. */
function scanResponseData(gatewayId: string): Buffer {
  const name = Buffer.from(gatewayId, 'utf8');
  const room = AD_MAX - 2;
  const type = name.length <= room ? LOCAL_NAME_COMPLETE : LOCAL_NAME_SHORTENED;
  const shown = name.subarray(0, room);
  return Buffer.concat([Buffer.from([1 + shown.length, type]), shown]);
}

function describePort(port: HciPort): string {
  return port.port === 'uart' ? `UART ${port.path}` : `hci${port.deviceId ?? 0}`;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
