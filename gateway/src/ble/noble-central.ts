/**
 * Phone-side BLE client on @stoprocent/noble, for the phone simulator and integration tests:
 * scans for the PilePass service (and a gateway id in the scan response), connects, exchanges
 * the ATT MTU, discovers hello / control / events, subscribes to events, and then offers a long
 * read of hello, writes with response on control and notifications from events.
 *
 * Each connection owns its own noble instance (`withBindings('hci', …)`) on the given HCI port,
 * and `disconnect()` releases it (always call it, also after the gateway dropped the link).
 * Every wait has a timeout: noble's writeAsync never settles when the peer answers an ATT
 * error, and the emulated controller sends each advertising report once (the discover
 * listener is attached before scanning starts).
 * @module
 */

import { existsSync } from 'node:fs';
import { type Characteristic, type Noble, type Peripheral, withBindings } from '@stoprocent/noble';
import {
  CONTROL_CHARACTERISTIC_UUID,
  EVENTS_CHARACTERISTIC_UUID,
  HELLO_CHARACTERISTIC_UUID,
  SERVICE_UUID,
} from '../../../shared/src/gatt.ts';
import type { HciPort } from './bleno-transport.ts';

export interface ConnectOptions {
  /** Only a gateway advertising this id (scan response local name). */
  readonly gatewayId?: string;
  /** ATT MTU to ask for (default 256); 23 keeps the link at the minimum MTU. */
  readonly mtu?: number;
  /** How long to scan for a matching gateway. */
  readonly scanTimeoutMs: number;
  /** Timeout of every other step (power-on, connect, discovery, each read/write; default 10 s). */
  readonly operationTimeoutMs?: number;
}

export interface GatewayConnection {
  /** ATT MTU after the exchange. */
  readonly mtu: number;
  /** The gateway's BLE address. */
  readonly address: string;
  /** Long read of the hello characteristic. */
  readHello(): Promise<Uint8Array>;
  /** One write with response on control (noble makes it a prepared write above MTU − 3). */
  write(unit: Uint8Array): Promise<void>;
  /** Notifications from events, in order; returns the unsubscribe function. */
  onNotify(listener: (unit: Uint8Array) => void): () => void;
  /** The link went down (either side); fires once. */
  onDisconnect(listener: (reason: string) => void): () => void;
  /** Disconnects (if still connected) and releases the HCI port. Idempotent. */
  disconnect(): Promise<void>;
}

/** Notifications kept while nobody listens yet (subscription happens inside connect). */
const MAX_BUFFERED_NOTIFICATIONS = 1_024;

const noDashes = (uuid: string) => uuid.replaceAll('-', '').toLowerCase();

export async function connectToGateway(port: HciPort, options: ConnectOptions): Promise<GatewayConnection> {
  const opMs = options.operationTimeoutMs ?? 10_000;
  if (port.port === 'uart' && !existsSync(port.path)) throw new Error(`HCI UART ${port.path} does not exist`);
  const noble =
    port.port === 'uart'
      ? withBindings('hci', { hciDriver: 'uart', bindParams: { uart: { port: port.path } } })
      : withBindings('hci', { hciDriver: 'native', deviceId: port.deviceId ?? 0 });
  let peripheral: Peripheral | undefined;
  try {
    await noble.waitForPoweredOnAsync(opMs).catch((err: Error) => {
      const where = port.port === 'uart' ? `UART ${port.path}` : `hci${port.deviceId ?? 0}`;
      throw new Error(`noble on ${where}: ${err.message}`, { cause: err });
    });
    peripheral = await scan(noble, options);
    const found = peripheral;
    const mtuSeen = new Promise<number>((resolve) => found.once('mtu', (mtu: number) => resolve(mtu)));
    // `mtu` is read by noble's hci bindings (connect parameters) but missing from its types.
    await withTimeout(
      (found.connectAsync as (o: { mtu: number }) => Promise<void>).call(found, { mtu: options.mtu ?? 256 }),
      opMs,
      'connect',
    );
    const mtu = await withTimeout(mtuSeen, opMs, 'MTU exchange');
    const { characteristics } = await withTimeout(
      found.discoverSomeServicesAndCharacteristicsAsync(
        [noDashes(SERVICE_UUID)],
        [HELLO_CHARACTERISTIC_UUID, CONTROL_CHARACTERISTIC_UUID, EVENTS_CHARACTERISTIC_UUID].map(noDashes),
      ),
      opMs,
      'service discovery',
    );
    const pick = (uuid: string): Characteristic => {
      const c = characteristics.find((ch) => ch.uuid === noDashes(uuid));
      if (!c) throw new Error(`gateway lacks characteristic ${uuid}`);
      return c;
    };
    const connection = openConnection(noble, found, mtu, opMs, {
      hello: pick(HELLO_CHARACTERISTIC_UUID),
      control: pick(CONTROL_CHARACTERISTIC_UUID),
      events: pick(EVENTS_CHARACTERISTIC_UUID),
    });
    await connection.subscribe();
    return connection;
  } catch (err) {
    await release(noble, peripheral, opMs);
    throw err;
  }
}

async function scan(noble: Noble, options: ConnectOptions): Promise<Peripheral> {
  const serviceUuid = noDashes(SERVICE_UUID);
  // Gateways advertise ids longer than 29 bytes as a shortened name of the first 29 bytes.
  const wantedName =
    options.gatewayId === undefined ? undefined : Buffer.from(options.gatewayId).subarray(0, 29).toString();
  let onDiscover: ((p: Peripheral) => void) | undefined;
  const found = new Promise<Peripheral>((resolve) => {
    onDiscover = (p: Peripheral) => {
      const ad = p.advertisement;
      if (!ad.serviceUuids?.includes(serviceUuid)) return;
      if (wantedName !== undefined && ad.localName !== wantedName) return;
      resolve(p);
    };
    // Before startScanning: the emulated controller reports each advertisement once.
    noble.on('discover', onDiscover);
  });
  try {
    await noble.startScanningAsync([serviceUuid], false);
    return await withTimeout(
      found,
      options.scanTimeoutMs,
      `scan for ${options.gatewayId ? `gateway ${options.gatewayId}` : 'a PilePass gateway'}`,
    );
  } finally {
    if (onDiscover) noble.removeListener('discover', onDiscover);
    await withTimeout(noble.stopScanningAsync(), 2_000, 'stop scanning').catch(() => {});
  }
}

interface Characteristics {
  readonly hello: Characteristic;
  readonly control: Characteristic;
  readonly events: Characteristic;
}

function openConnection(
  noble: Noble,
  peripheral: Peripheral,
  mtu: number,
  opMs: number,
  chars: Characteristics,
): GatewayConnection & { subscribe(): Promise<void> } {
  const notifyListeners = new Set<(unit: Uint8Array) => void>();
  const disconnectListeners = new Set<(reason: string) => void>();
  const buffered: Uint8Array[] = [];
  let down: string | undefined;
  let released: Promise<void> | undefined;

  const onData = (data: Buffer, isNotification: boolean) => {
    if (!isNotification) return;
    const unit = new Uint8Array(data);
    if (notifyListeners.size === 0) {
      if (buffered.length < MAX_BUFFERED_NOTIFICATIONS) buffered.push(unit);
      return;
    }
    for (const listener of notifyListeners) listener(unit);
  };
  const onPeripheralDisconnect = (reason: unknown) => {
    if (down !== undefined) return;
    down = String(reason);
    for (const listener of disconnectListeners) listener(down);
  };
  chars.events.on('data', onData);
  peripheral.once('disconnect', onPeripheralDisconnect);

  const live = <T>(what: string, op: () => Promise<T>): Promise<T> => {
    if (down !== undefined) return Promise.reject(new Error(`${what}: disconnected (${down})`));
    return withTimeout(op(), opMs, what);
  };

  return {
    mtu,
    address: peripheral.address,
    subscribe: () => live('subscribe to events', () => chars.events.subscribeAsync()),
    readHello: async () => new Uint8Array(await live('read hello', () => chars.hello.readAsync())),
    write: (unit: Uint8Array) =>
      live('write control', () => chars.control.writeAsync(Buffer.from(unit), false)),
    onNotify(listener) {
      notifyListeners.add(listener);
      for (const unit of buffered.splice(0)) listener(unit);
      return () => notifyListeners.delete(listener);
    },
    onDisconnect(listener) {
      if (down !== undefined) queueMicrotask(() => listener(down as string));
      else disconnectListeners.add(listener);
      return () => disconnectListeners.delete(listener);
    },
    disconnect() {
      released ??= (async () => {
        chars.events.removeListener('data', onData);
        await release(noble, down === undefined ? peripheral : undefined, opMs);
        onPeripheralDisconnect('local disconnect');
      })();
      return released;
    },
  };
}

/** Disconnects the peripheral (waiting for the controller to confirm), then closes the port. */
async function release(noble: Noble, peripheral: Peripheral | undefined, opMs: number): Promise<void> {
  if (peripheral && (peripheral.state === 'connected' || peripheral.state === 'connecting')) {
    if (peripheral.state === 'connecting') peripheral.cancelConnect();
    else await withTimeout(peripheral.disconnectAsync(), opMs, 'disconnect').catch(() => {});
  }
  noble.removeAllListeners('discover');
  try {
    // Closes the HCI UART / socket; without it the open port keeps node alive.
    noble.stop();
  } catch {
    // bindings never started (power-on failed early): nothing is open
  }
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
