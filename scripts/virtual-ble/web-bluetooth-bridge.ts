/**
 * Web Bluetooth bridge: lets a page's real `navigator.bluetooth` (Chromium) talk to a real BLE
 * peripheral — the gateway process on BlueZ's emulated controller — with the app unchanged.
 *
 *   page ⇄ CDP (BluetoothEmulation on the browser session, DeviceAccess on the page session)
 *        ⇄ this bridge ⇄ @stoprocent/noble on an HCI UART (a btvirt pty)
 *        ⇄ emulated LE controller ⇄ gateway (bleno, `--ble uart:<pty>`)
 *
 * - Devices: noble scans *before* the chooser opens and each peripheral found is offered with
 *   `simulatePreconnectedPeripheral` (its name, its advertised services). A device added while
 *   a chooser is open is never listed, so call `scan()` before the tap when devices change.
 * - Chooser: each `deviceRequestPrompted` is answered once (the event fires twice per request;
 *   a second answer crashes the browser) with the next queued choice (`chooseNext`), else the
 *   first listed device. A wanted device that is not listed cancels the prompt after a delay.
 * - GATT: `connection` → noble connects (ATT MTU 23 or 256), `discovery` → the real table is
 *   read with noble and mirrored (services, characteristics with noble's property names,
 *   descriptors incl. the 0x2902 CCCD) — again on every discovery, since Chromium drops the
 *   mirror when the link ends. Reads are long reads, writes long writes (noble splits them).
 * - Notifications: `subscribe-to-notifications` subscribes with noble; the page hook
 *   (bridge-page-hooks.ts) keeps a `readValue()` pending on the app's characteristic, and
 *   each notification answers it (queued while none is pending), which fires the app's
 *   `characteristicvaluechanged`. A characteristic that has notifications on treats every
 *   read as such a held read.
 * - Disconnects: from the peripheral (noble `disconnect`) or `dropLink()`: held reads are
 *   answered with an error first (a pending read swallows the disconnect), then
 *   `simulateGATTDisconnection`. From the page (`gatt.disconnect()`, reported by the hook):
 *   noble disconnects. A navigation of the page kills Chromium's emulated adapter: the bridge
 *   drops every link and rebuilds the emulation (`ready()` settles when done).
 * - Every CDP command and noble operation has a timeout; every operation the page started is
 *   answered (an error code when the peripheral failed), since Chromium never times one out.
 *   Any non-zero ATT code reaches the page as the same NotSupportedError.
 *
 * Emulation is browser-wide: one bridge per browser at a time, and the bridged page must be
 * the browser's front tab (a chooser in a background tab is cancelled at once).
 * See docs/virtual-ble.md (how it works, measured limits). Node only.
 * @module
 */

import { type Descriptor, type Noble, type Peripheral, withBindings } from '@stoprocent/noble';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { SERVICE_UUID } from '../../shared/src/gatt.ts';
import {
  ATT_UNLIKELY_ERROR,
  type BrowserSend,
  type CharacteristicOperationType,
  compactUuid,
  dashedUuid,
  HCI_CONNECTION_FAILED,
  type PageCommands,
  settlesWithin,
  withTimeout,
} from './bridge-cdp.ts';
import { type BridgeDevice, Chooser, type ChooserChoice, type ChooserPrompt } from './bridge-chooser.ts';
import { type MirroredCharacteristic, mirrorGattTable } from './bridge-gatt-mirror.ts';
import {
  BRIDGE_BINDING,
  BRIDGE_PAGE_SCRIPT,
  type BridgePageMessage,
  parseBridgePageMessage,
  releaseHoldsScript,
} from './bridge-page-hooks.ts';

/** pino-compatible logger (only these methods are used). */
export interface BridgeLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface WebBluetoothBridgeOptions {
  /** For the browser CDP session (BluetoothEmulation); default `context.browser()`. */
  readonly browser?: Browser;
  /** A browser-level CDP session, when there is no Browser object (e.g. a persistent context). */
  readonly browserSession?: CDPSession;
  readonly context: BrowserContext;
  /** The page whose `navigator.bluetooth` is bridged (must be the front tab). */
  readonly page: Page;
  /** HCI UART (a btvirt pty) for the bridge's own noble central. */
  readonly uartPort: string;
  /** ATT MTU noble asks for on each connection (default 256). */
  readonly mtu?: BridgeMtu;
  /** Services to scan for, also offered as the device's known services (default: PilePass). */
  readonly serviceUuids?: readonly string[];
  /** Devices the first scan must find before start resolves (default 1; 0: no first scan). */
  readonly minDevices?: number;
  /** How long a scan may take (default 10 s). */
  readonly scanTimeoutMs?: number;
  /** Timeout of each noble operation: power-on, connect, discovery, read, write… (default 10 s). */
  readonly operationTimeoutMs?: number;
  /** Timeout of each CDP command (default 5 s). */
  readonly cdpTimeoutMs?: number;
  /** How long a prompt waits for the wanted device to be listed before it is cancelled (default 3 s). */
  readonly chooserTimeoutMs?: number;
  /** Default answer of a prompt when no choice is queued (default 'first'). */
  readonly defaultChoice?: 'first' | 'cancel';
  /** Each GATT operation at debug, links at info, failures at warn. */
  readonly logger?: BridgeLogger;
}

export type BridgeMtu = 23 | 256;

export type { BridgeDevice, ChooserAnswer, ChooserChoice, ChooserPrompt } from './bridge-chooser.ts';

export type BridgeEvent =
  | { readonly type: 'prompt'; readonly prompt: ChooserPrompt }
  | { readonly type: 'connected'; readonly address: string; readonly mtu: number; readonly ms: number }
  | {
      readonly type: 'discovered';
      readonly address: string;
      readonly characteristics: number;
      readonly ms: number;
    }
  | { readonly type: 'subscribed'; readonly address: string; readonly uuid: string }
  | {
      readonly type: 'disconnected';
      readonly address: string;
      /** peripheral: the gateway ended it; bridge: dropLink/close; page: gatt.disconnect(); navigation. */
      readonly by: 'peripheral' | 'bridge' | 'page' | 'navigation';
    }
  | { readonly type: 'rebuilt'; readonly ms: number };

export interface BridgeStats {
  readonly connections: number;
  readonly discoveries: number;
  readonly reads: number;
  readonly writes: number;
  readonly bytesWritten: number;
  readonly notifications: number;
  /** Operations answered with an error code (peripheral failure or timeout). */
  readonly failures: number;
  readonly rebuilds: number;
}

export interface WebBluetoothBridge {
  /** Devices found so far (offered to the page). */
  devices(): BridgeDevice[];
  /**
   * Scans again (until `minDevices` are known in this scan, or for the whole timeout when
   * 0) and offers new devices. Throws when fewer than `minDevices` answered in time.
   */
  scan(options?: { readonly minDevices?: number; readonly timeoutMs?: number }): Promise<BridgeDevice[]>;
  /** Queues the answer for the next chooser (choices are used in order, one per prompt). */
  chooseNext(choice: ChooserChoice): void;
  /** Shorthand for `chooseNext('cancel')`. */
  cancelNextChooser(): void;
  /** Every prompt answered so far. */
  prompts(): readonly ChooserPrompt[];
  /** ATT MTU for the next connections. */
  setMtu(mtu: BridgeMtu): void;
  /** Addresses with a live link (noble connected). */
  links(): { readonly address: string; readonly mtu: number; readonly pageConnected: boolean }[];
  /**
   * Ends the link(s) as radio loss would: the page gets `gattserverdisconnected`, the
   * peripheral sees the central leave. Without an address: every link.
   */
  dropLink(address?: string): Promise<void>;
  /** Settles once the emulation is usable (after a rebuild caused by a navigation). */
  ready(): Promise<void>;
  /** Subscribes to bridge events; returns the unsubscribe function. */
  on(listener: (event: BridgeEvent) => void): () => void;
  /** The next event (from now on) matching `predicate`; rejects after `timeoutMs` (default 10 s). */
  waitFor<E extends BridgeEvent>(
    predicate: (event: BridgeEvent) => event is E,
    timeoutMs?: number,
  ): Promise<E>;
  waitFor(predicate: (event: BridgeEvent) => boolean, timeoutMs?: number): Promise<BridgeEvent>;
  stats(): BridgeStats;
  /** Ends links, answers what is pending, disables the emulation, releases the UART. Idempotent. */
  close(): Promise<void>;
}

/** Disconnecting takes milliseconds; a peer that vanished never answers (btvirt has no timeout). */
const DISCONNECT_TIMEOUT_MS = 3_000;
/** How long a peripheral's disconnect waits for queued notifications to reach the page. */
const DRAIN_BEFORE_DISCONNECT_MS = 500;
/** Notifications kept per characteristic while no held read is pending. */
const MAX_QUEUED_NOTIFICATIONS = 1_024;
const NO_LOGGER: BridgeLogger = { debug() {}, info() {}, warn() {} };

/** Per page: the binding can be exposed once, so it dispatches to the page's current bridge. */
const pageHandlers = new WeakMap<Page, { handler: ((message: BridgePageMessage) => void) | undefined }>();

interface CharacteristicState extends MirroredCharacteristic {
  readonly address: string;
  subscribed: boolean;
  /** Its link is ending: reads are answered with an error. */
  closing: boolean;
  /** A held read (notifications on) waits for a value. */
  holdPending: boolean;
  readonly queue: Buffer[];
  onData: ((data: Buffer, isNotification: boolean) => void) | undefined;
}

interface Link {
  readonly address: string;
  readonly peripheral: Peripheral;
  readonly mtu: number;
  /** The page believes it is connected (connection answered, no disconnect seen yet). */
  pageConnected: boolean;
  /** Emulation generation the page connection belongs to. */
  readonly generation: number;
  serviceIds: string[];
  readonly characteristics: Map<string, CharacteristicState>;
  readonly descriptors: Map<string, Descriptor>;
  down: boolean;
  readonly onDisconnect: (reason: unknown) => void;
}

interface DeviceState {
  info: BridgeDevice;
  peripheral: Peripheral;
  /** Emulation generation in which it was offered (-1: not offered). */
  offeredIn: number;
  link: Link | undefined;
  connecting: Promise<Link> | undefined;
}

/** Starts the bridge: noble on `uartPort`, the first scan, the emulated adapter and the hooks. */
export async function startWebBluetoothBridge(
  options: WebBluetoothBridgeOptions,
): Promise<WebBluetoothBridge> {
  const log = options.logger ?? NO_LOGGER;
  const opMs = options.operationTimeoutMs ?? 10_000;
  const cdpMs = options.cdpTimeoutMs ?? 5_000;
  const scanMs = options.scanTimeoutMs ?? 10_000;
  const serviceUuids = (options.serviceUuids ?? [SERVICE_UUID]).map(dashedUuid);
  const { page, context } = options;
  let mtu: BridgeMtu = options.mtu ?? 256;
  if (mtu !== 23 && mtu !== 256) throw new RangeError(`mtu must be 23 or 256, got ${String(mtu)}`);
  const browser = options.browser ?? context.browser() ?? undefined;
  if (!browser && !options.browserSession) throw new TypeError('pass browser or browserSession');

  const devices = new Map<string, DeviceState>();
  const characteristics = new Map<string, CharacteristicState>();
  const descriptors = new Map<string, { readonly address: string; readonly noble: Descriptor }>();
  const listeners = new Set<(event: BridgeEvent) => void>();
  const counters = {
    connections: 0,
    discoveries: 0,
    reads: 0,
    writes: 0,
    bytesWritten: 0,
    notifications: 0,
    failures: 0,
    rebuilds: 0,
  };
  let generation = 0;
  let closed = false;
  let rebuilding: Promise<void> = Promise.resolve();

  const emit = (event: BridgeEvent) => {
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (err) {
        log.warn({ err: String(err) }, 'web-bluetooth bridge: event listener threw');
      }
    }
  };

  const chooser = new Chooser({
    timeoutMs: options.chooserTimeoutMs ?? 3_000,
    defaultChoice: options.defaultChoice ?? 'first',
    known: () => [...devices.values()].map((d) => d.info),
    offered: () => [...devices.values()].filter((d) => d.offeredIn === generation).map((d) => d.info.address),
    send: (id, answer) =>
      answer.type === 'selected'
        ? pageSend('DeviceAccess.selectPrompt', { id, deviceId: answer.address })
        : pageSend('DeviceAccess.cancelPrompt', { id }),
    onAnswered: (prompt) => emit({ type: 'prompt', prompt }),
    log: (level, fields, message) => log[level](fields, message),
  });
  const onPrompt = (event: { id: string; devices: { id: string }[] }) => chooser.onPrompt(event);

  // ---- sessions and noble ------------------------------------------------------------------
  let noble: Noble | undefined;
  let browserSession: CDPSession | undefined;
  let pageSession: CDPSession | undefined;
  const ownBrowserSession = options.browserSession === undefined;
  const cleanups: (() => void)[] = [];

  const browserSend: BrowserSend = (method, params) =>
    withTimeout(
      (browserSession as CDPSession).send(method, params as never) as Promise<unknown>,
      cdpMs,
      `CDP ${method}`,
    );
  const pageSend = <M extends keyof PageCommands>(method: M, params: PageCommands[M]) =>
    withTimeout(
      (pageSession as CDPSession).send(method, params as never) as Promise<unknown>,
      cdpMs,
      `CDP ${method}`,
    );

  // ---- emulation: adapter and offered devices ----------------------------------------------
  const offer = async (device: DeviceState) => {
    if (device.offeredIn === generation) return;
    await browserSend('BluetoothEmulation.simulatePreconnectedPeripheral', {
      address: device.info.address,
      name: device.info.name,
      manufacturerData: [],
      knownServiceUuids: [...device.info.serviceUuids],
    });
    device.offeredIn = generation;
    log.debug(
      { address: device.info.address, name: device.info.name },
      'web-bluetooth bridge: device offered',
    );
  };

  const enableEmulation = async () => {
    await browserSend('BluetoothEmulation.enable', { state: 'powered-on', leSupported: true });
    for (const device of devices.values()) await offer(device);
  };

  /** After a navigation: the page's adapter is gone; links with it. */
  const rebuild = (): Promise<void> => {
    generation++;
    const t = performance.now();
    for (const device of devices.values()) {
      device.offeredIn = -1;
      if (device.link) void endLink(device.link, 'navigation');
    }
    rebuilding = rebuilding
      .catch(() => {})
      .then(async () => {
        if (closed) return;
        await browserSend('BluetoothEmulation.disable', {}).catch(() => {});
        await enableEmulation();
        counters.rebuilds++;
        const ms = Math.round(performance.now() - t);
        log.info({ ms }, 'web-bluetooth bridge: emulation rebuilt after navigation');
        emit({ type: 'rebuilt', ms });
      });
    rebuilding.catch((err: Error) => log.warn({ err: err.message }, 'web-bluetooth bridge: rebuild failed'));
    return rebuilding;
  };

  // ---- scanning ------------------------------------------------------------------------------
  const register = (peripheral: Peripheral): DeviceState => {
    const address = peripheral.address.toUpperCase();
    const advertised = (peripheral.advertisement.serviceUuids ?? []).map(dashedUuid);
    const info: BridgeDevice = {
      address,
      name: peripheral.advertisement.localName ?? '',
      serviceUuids: advertised.length > 0 ? advertised : serviceUuids,
      rssi: peripheral.rssi,
    };
    const known = devices.get(address);
    if (known) {
      known.info = info;
      known.peripheral = peripheral;
      return known;
    }
    const device: DeviceState = { info, peripheral, offeredIn: -1, link: undefined, connecting: undefined };
    devices.set(address, device);
    log.info({ address, name: info.name }, 'web-bluetooth bridge: device found');
    return device;
  };

  const scan = async (scanOptions: { minDevices?: number; timeoutMs?: number } = {}) => {
    const n = noble as Noble;
    const minDevices = scanOptions.minDevices ?? 1;
    const timeoutMs = scanOptions.timeoutMs ?? scanMs;
    const wanted = serviceUuids.map(compactUuid);
    const seen = new Set<string>();
    let onDiscover: ((p: Peripheral) => void) | undefined;
    const enough = new Promise<void>((resolve) => {
      onDiscover = (p: Peripheral) => {
        const ad = p.advertisement.serviceUuids ?? [];
        if (!ad.some((uuid) => wanted.includes(compactUuid(uuid)))) return;
        seen.add(register(p).info.address);
        if (minDevices > 0 && seen.size >= minDevices) resolve();
      };
      // Before startScanning: the emulated controller reports each advertisement once.
      n.on('discover', onDiscover);
    });
    const t = performance.now();
    try {
      await withTimeout(n.startScanningAsync(wanted, false), opMs, 'start scanning');
      await settlesWithin(enough, timeoutMs);
    } finally {
      if (onDiscover) n.removeListener('discover', onDiscover);
      await withTimeout(n.stopScanningAsync(), 2_000, 'stop scanning').catch(() => {});
    }
    log.debug({ found: [...seen], ms: Math.round(performance.now() - t) }, 'web-bluetooth bridge: scan done');
    if (seen.size < minDevices) {
      throw new Error(
        `web-bluetooth bridge: found ${seen.size} of ${minDevices} device(s) advertising ` +
          `${serviceUuids.join(', ')} within ${timeoutMs} ms`,
      );
    }
    await rebuilding.catch(() => {});
    for (const address of seen) await offer(devices.get(address) as DeviceState);
    return [...seen].map((address) => (devices.get(address) as DeviceState).info);
  };

  // ---- links ---------------------------------------------------------------------------------
  const respondGatt = (address: string, type: 'connection' | 'discovery', code: number) =>
    browserSend('BluetoothEmulation.simulateGATTOperationResponse', { address, type, code }).catch(
      (err: Error) =>
        log.warn({ address, type, err: err.message }, 'web-bluetooth bridge: GATT answer failed'),
    );

  const respondCharacteristic = (
    id: string,
    type: CharacteristicOperationType,
    code: number,
    data?: Buffer,
  ): Promise<unknown> => {
    if (code !== 0) counters.failures++;
    return browserSend('BluetoothEmulation.simulateCharacteristicOperationResponse', {
      characteristicId: id,
      type,
      code,
      ...(data === undefined ? {} : { data: data.toString('base64') }),
    }).catch((err: Error) =>
      log.warn({ characteristicId: id, type, err: err.message }, 'web-bluetooth bridge: answer failed'),
    );
  };

  /** Answers a pending held read with an error, so the page sees the link end (or the stop). */
  const releaseHold = (c: CharacteristicState) => {
    if (!c.holdPending) return;
    c.holdPending = false;
    void respondCharacteristic(c.id, 'read', ATT_UNLIKELY_ERROR);
  };

  const forgetMirror = (link: Link) => {
    for (const c of link.characteristics.values()) {
      if (c.onData) c.noble.removeListener('data', c.onData);
      c.onData = undefined;
      characteristics.delete(c.id);
    }
    link.characteristics.clear();
    for (const id of link.descriptors.keys()) descriptors.delete(id);
    link.descriptors.clear();
  };

  /**
   * Ends a link once, whoever ended it. Unless the page is gone (`navigation`), Chromium's
   * emulated device is disconnected too: queued notifications delivered (peripheral), the
   * page hook's held reads stopped and answered with an error (a pending read would swallow
   * the disconnection), then simulateGATTDisconnection, and the device offered again (a
   * disconnected emulated device is no longer listed in the chooser).
   */
  const endLink = async (link: Link, by: 'peripheral' | 'bridge' | 'page' | 'navigation') => {
    if (link.down) return;
    link.down = true;
    const device = devices.get(link.address);
    if (device?.link === link) device.link = undefined;
    link.peripheral.removeListener('disconnect', link.onDisconnect);
    // After the page's own gatt.disconnect() Chromium's emulated device stays connected (and
    // keeps its mirrored table): the next connect() would reach neither a connection nor a
    // discovery operation. So the emulation is disconnected in that case too.
    const tellPage = link.pageConnected && link.generation === generation && by !== 'navigation';
    if (tellPage && by === 'peripheral') {
      // Over the air, notifications sent before the disconnect arrive before it (a gateway
      // notifies a rejection, then drops the link): let the held reads take what is queued.
      const deadline = performance.now() + DRAIN_BEFORE_DISCONNECT_MS;
      const queued = () => [...link.characteristics.values()].some((c) => c.subscribed && c.queue.length > 0);
      while (queued() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    }
    link.pageConnected = false;
    if (tellPage) {
      // Reads arriving from now on are answered with an error at once.
      for (const c of link.characteristics.values()) c.closing = true;
      await withTimeout(
        page.evaluate(releaseHoldsScript(device?.info.name ?? null)),
        cdpMs,
        'release holds',
      ).catch((err: Error) =>
        log.debug({ err: err.message }, 'web-bluetooth bridge: releasing held reads failed'),
      );
      for (const c of link.characteristics.values()) releaseHold(c);
      await browserSend('BluetoothEmulation.simulateGATTDisconnection', { address: link.address }).catch(
        (err: Error) =>
          log.warn({ address: link.address, err: err.message }, 'web-bluetooth bridge: disconnect failed'),
      );
    }
    forgetMirror(link);
    if (tellPage) {
      if (device) {
        device.offeredIn = -1;
        await offer(device).catch((err: Error) =>
          log.warn({ address: link.address, err: err.message }, 'web-bluetooth bridge: re-offer failed'),
        );
      }
    }
    if (by !== 'peripheral') {
      await withTimeout(
        link.peripheral.disconnectAsync(),
        Math.min(opMs, DISCONNECT_TIMEOUT_MS),
        'disconnect',
      ).catch((err: Error) =>
        log.warn(
          { address: link.address, err: err.message },
          'web-bluetooth bridge: noble disconnect failed',
        ),
      );
    }
    log.info({ address: link.address, by }, 'web-bluetooth bridge: link down');
    emit({ type: 'disconnected', address: link.address, by });
  };

  const connect = async (device: DeviceState): Promise<Link> => {
    const { peripheral } = device;
    const address = device.info.address;
    const t = performance.now();
    let onMtu: ((value: number) => void) | undefined;
    const mtuSeen = new Promise<number>((resolve) => {
      onMtu = resolve;
      peripheral.once('mtu', resolve);
    });
    let droppedEarly = false;
    const onEarlyDisconnect = () => {
      droppedEarly = true;
    };
    peripheral.once('disconnect', onEarlyDisconnect);
    let linkMtu: number;
    try {
      // `mtu` is read by noble's hci bindings (connect parameters) but missing from its types.
      await withTimeout(
        (peripheral.connectAsync as (o: { mtu: number }) => Promise<void>).call(peripheral, { mtu }),
        opMs,
        `connect to ${address}`,
      );
      // The exchange follows the connection; a peer that never answers it leaves the MTU at 23.
      linkMtu = (await settlesWithin(mtuSeen, Math.min(opMs, 2_000))) ?? 23;
    } finally {
      if (onMtu) peripheral.removeListener('mtu', onMtu);
      peripheral.removeListener('disconnect', onEarlyDisconnect);
    }
    if (droppedEarly) throw new Error(`${address} disconnected right after connecting`);
    const link: Link = {
      address,
      peripheral,
      mtu: linkMtu,
      pageConnected: true,
      generation,
      serviceIds: [],
      characteristics: new Map(),
      descriptors: new Map(),
      down: false,
      onDisconnect: (reason: unknown) => {
        log.debug({ address, reason: String(reason) }, 'web-bluetooth bridge: peripheral disconnected');
        void endLink(link, 'peripheral');
      },
    };
    peripheral.once('disconnect', link.onDisconnect);
    counters.connections++;
    const ms = Math.round(performance.now() - t);
    log.info({ address, mtu: linkMtu, ms }, 'web-bluetooth bridge: link up');
    emit({ type: 'connected', address, mtu: linkMtu, ms });
    return link;
  };

  const onConnection = async (device: DeviceState) => {
    const address = device.info.address;
    if (device.link && !device.link.down) {
      // The page connects again on a link the bridge kept (e.g. after its own disconnect was missed).
      device.link.pageConnected = true;
      await respondGatt(address, 'connection', 0);
      return;
    }
    try {
      device.connecting ??= connect(device);
      device.link = await device.connecting;
      if (closed || device.link.generation !== generation) {
        void endLink(device.link, 'navigation');
        return;
      }
      await respondGatt(address, 'connection', 0);
    } catch (err) {
      counters.failures++;
      log.warn({ address, err: (err as Error).message }, 'web-bluetooth bridge: connect failed');
      if (device.peripheral.state === 'connecting') device.peripheral.cancelConnect();
      await respondGatt(address, 'connection', HCI_CONNECTION_FAILED);
    } finally {
      device.connecting = undefined;
    }
  };

  /** Reads the real GATT table with noble and mirrors it into Chromium's emulated device. */
  const onDiscovery = async (device: DeviceState) => {
    const address = device.info.address;
    const link = device.link;
    if (!link || link.down) {
      await respondGatt(address, 'discovery', HCI_CONNECTION_FAILED);
      return;
    }
    const t = performance.now();
    try {
      forgetMirror(link);
      for (const serviceId of link.serviceIds.splice(0)) {
        // Fails after a reconnect (Chromium already dropped it); harmless.
        await browserSend('BluetoothEmulation.removeService', { serviceId }).catch(() => {});
      }
      const mirror = await mirrorGattTable(link.peripheral, {
        address,
        send: browserSend,
        operationTimeoutMs: opMs,
        onSkipped: (serviceUuid, err) =>
          log.debug({ address, serviceUuid, err: err.message }, 'web-bluetooth bridge: service not mirrored'),
      });
      link.serviceIds.push(...mirror.serviceIds);
      for (const mirrored of mirror.characteristics) {
        const state: CharacteristicState = {
          ...mirrored,
          address,
          subscribed: false,
          closing: false,
          holdPending: false,
          queue: [],
          onData: undefined,
        };
        characteristics.set(state.id, state);
        link.characteristics.set(state.id, state);
      }
      for (const { id, noble: descriptor } of mirror.descriptors) {
        descriptors.set(id, { address, noble: descriptor });
        link.descriptors.set(id, descriptor);
      }
      counters.discoveries++;
      const ms = Math.round(performance.now() - t);
      log.debug(
        { address, characteristics: link.characteristics.size, ms },
        'web-bluetooth bridge: discovery',
      );
      await respondGatt(address, 'discovery', 0);
      emit({ type: 'discovered', address, characteristics: link.characteristics.size, ms });
    } catch (err) {
      counters.failures++;
      log.warn({ address, err: (err as Error).message }, 'web-bluetooth bridge: discovery failed');
      await respondGatt(address, 'discovery', HCI_CONNECTION_FAILED);
      // Chromium does not fail the page's getPrimaryService() on an error answer (it waits for
      // a discovery that never completes); a disconnection does.
      await endLink(link, 'bridge');
    }
  };

  const onGattOperation = (event: { address: string; type: 'connection' | 'discovery' }) => {
    if (closed) return;
    const address = event.address.toUpperCase();
    const device = devices.get(address);
    log.debug({ address, type: event.type }, 'web-bluetooth bridge: GATT operation');
    if (!device) {
      void respondGatt(event.address, event.type, HCI_CONNECTION_FAILED);
      return;
    }
    void (event.type === 'connection' ? onConnection(device) : onDiscovery(device));
  };

  // ---- characteristic and descriptor operations ------------------------------------------------
  /** A notification for `c`: answers the held read, or waits for the next one. */
  const deliver = (c: CharacteristicState, data: Buffer) => {
    counters.notifications++;
    if (c.holdPending) {
      c.holdPending = false;
      log.debug({ uuid: c.uuid, bytes: data.length }, 'web-bluetooth bridge: notification');
      void respondCharacteristic(c.id, 'read', 0, data);
      return;
    }
    if (c.queue.length >= MAX_QUEUED_NOTIFICATIONS) {
      log.warn({ uuid: c.uuid }, 'web-bluetooth bridge: notification queue full, dropping the oldest');
      c.queue.shift();
    }
    c.queue.push(data);
  };

  const onCharacteristicOperation = async (event: {
    characteristicId: string;
    type: CharacteristicOperationType;
    data?: string;
    writeType?: string;
  }) => {
    if (closed) return;
    const c = characteristics.get(event.characteristicId);
    if (!c) {
      log.warn(event, 'web-bluetooth bridge: operation on an unknown characteristic');
      await respondCharacteristic(event.characteristicId, event.type, ATT_UNLIKELY_ERROR);
      return;
    }
    const t = performance.now();
    const done = (fields: Record<string, unknown>) =>
      log.debug(
        { address: c.address, uuid: c.uuid, op: event.type, ms: round(performance.now() - t), ...fields },
        'web-bluetooth bridge: GATT op',
      );
    try {
      switch (event.type) {
        case 'read': {
          if (c.closing) {
            await respondCharacteristic(c.id, 'read', ATT_UNLIKELY_ERROR);
            return;
          }
          if (c.subscribed) {
            // The page hook's held read: answered by the next notification.
            const queued = c.queue.shift();
            if (queued) {
              log.debug(
                { uuid: c.uuid, bytes: queued.length },
                'web-bluetooth bridge: notification (queued)',
              );
              await respondCharacteristic(c.id, 'read', 0, queued);
            } else c.holdPending = true;
            return;
          }
          const value = await withTimeout(c.noble.readAsync(), opMs, `read ${c.uuid}`);
          counters.reads++;
          done({ bytes: value.length });
          await respondCharacteristic(c.id, 'read', 0, value);
          return;
        }
        case 'write': {
          const data = Buffer.from(event.data ?? '', 'base64');
          const withoutResponse =
            event.writeType === 'write-without-response' ||
            (event.writeType === 'write-default-deprecated' && !c.properties.includes('write'));
          await withTimeout(c.noble.writeAsync(data, withoutResponse), opMs, `write ${c.uuid}`);
          counters.writes++;
          counters.bytesWritten += data.length;
          done({ bytes: data.length, withoutResponse });
          await respondCharacteristic(c.id, 'write', 0);
          return;
        }
        case 'subscribe-to-notifications': {
          if (!c.onData) {
            const listener = (data: Buffer, isNotification: boolean) => {
              if (isNotification && c.subscribed) deliver(c, data);
            };
            c.onData = listener;
            c.noble.on('data', listener);
          }
          await withTimeout(c.noble.subscribeAsync(), opMs, `subscribe ${c.uuid}`);
          c.subscribed = true;
          done({});
          await respondCharacteristic(c.id, event.type, 0);
          emit({ type: 'subscribed', address: c.address, uuid: c.uuid });
          return;
        }
        case 'unsubscribe-from-notifications': {
          c.subscribed = false;
          c.queue.length = 0;
          releaseHold(c);
          await withTimeout(c.noble.unsubscribeAsync(), opMs, `unsubscribe ${c.uuid}`);
          done({});
          await respondCharacteristic(c.id, event.type, 0);
          return;
        }
        default:
          await respondCharacteristic(c.id, event.type, ATT_UNLIKELY_ERROR);
      }
    } catch (err) {
      log.warn(
        { address: c.address, uuid: c.uuid, op: event.type, err: (err as Error).message },
        'web-bluetooth bridge: GATT op failed',
      );
      await respondCharacteristic(c.id, event.type, ATT_UNLIKELY_ERROR);
    }
  };

  const onDescriptorOperation = async (event: {
    descriptorId: string;
    type: 'read' | 'write';
    data?: string;
  }) => {
    if (closed) return;
    const d = descriptors.get(event.descriptorId);
    const respond = (code: number, data?: Buffer) =>
      browserSend('BluetoothEmulation.simulateDescriptorOperationResponse', {
        descriptorId: event.descriptorId,
        type: event.type,
        code,
        ...(data === undefined ? {} : { data: data.toString('base64') }),
      }).catch((err: Error) =>
        log.warn({ err: err.message }, 'web-bluetooth bridge: descriptor answer failed'),
      );
    if (!d) {
      await respond(ATT_UNLIKELY_ERROR);
      return;
    }
    try {
      if (event.type === 'read') {
        const value = await withTimeout(d.noble.readValueAsync(), opMs, `read descriptor ${d.noble.uuid}`);
        log.debug(
          { address: d.address, descriptor: d.noble.uuid, bytes: value.length },
          'web-bluetooth bridge: GATT op',
        );
        await respond(0, value);
      } else {
        const data = Buffer.from(event.data ?? '', 'base64');
        await withTimeout(d.noble.writeValueAsync(data), opMs, `write descriptor ${d.noble.uuid}`);
        log.debug(
          { address: d.address, descriptor: d.noble.uuid, bytes: data.length },
          'web-bluetooth bridge: GATT op',
        );
        await respond(0);
      }
    } catch (err) {
      counters.failures++;
      log.warn({ err: (err as Error).message }, 'web-bluetooth bridge: descriptor op failed');
      await respond(ATT_UNLIKELY_ERROR);
    }
  };

  // ---- page events ---------------------------------------------------------------------------
  const onPageMessage = (message: BridgePageMessage) => {
    if (closed || message.type !== 'disconnect') return;
    const live = [...devices.values()]
      .map((d) => d.link)
      .filter((l): l is Link => l !== undefined && !l.down && l.pageConnected);
    const named = live.filter((l) => devices.get(l.address)?.info.name === message.name);
    const targets = named.length > 0 ? named : live;
    if (targets.length > 1) {
      log.warn(
        { name: message.name },
        'web-bluetooth bridge: page disconnect matches several links; ending all',
      );
    }
    for (const link of targets) void endLink(link, 'page');
  };

  const onFrameNavigated = (event: { frame: { parentId?: string } }) => {
    if (closed || event.frame.parentId !== undefined) return;
    void rebuild();
  };

  const onPageClose = () => {
    for (const device of devices.values()) if (device.link) void endLink(device.link, 'navigation');
  };

  // ---- start ---------------------------------------------------------------------------------
  try {
    noble = withBindings('hci', { hciDriver: 'uart', bindParams: { uart: { port: options.uartPort } } });
    await noble.waitForPoweredOnAsync(opMs).catch((err: Error) => {
      throw new Error(`web-bluetooth bridge: noble on UART ${options.uartPort}: ${err.message}`, {
        cause: err,
      });
    });
    browserSession = options.browserSession ?? (await (browser as Browser).newBrowserCDPSession());
    pageSession = await context.newCDPSession(page);

    const bs = browserSession;
    const ps = pageSession;
    bs.on('BluetoothEmulation.gattOperationReceived', onGattOperation);
    bs.on('BluetoothEmulation.characteristicOperationReceived', onCharacteristicOperation);
    bs.on('BluetoothEmulation.descriptorOperationReceived', onDescriptorOperation);
    ps.on('DeviceAccess.deviceRequestPrompted', onPrompt);
    ps.on('Page.frameNavigated', onFrameNavigated);
    page.on('close', onPageClose);
    cleanups.push(
      () => bs.off('BluetoothEmulation.gattOperationReceived', onGattOperation),
      () => bs.off('BluetoothEmulation.characteristicOperationReceived', onCharacteristicOperation),
      () => bs.off('BluetoothEmulation.descriptorOperationReceived', onDescriptorOperation),
      () => ps.off('DeviceAccess.deviceRequestPrompted', onPrompt),
      () => ps.off('Page.frameNavigated', onFrameNavigated),
      () => page.off('close', onPageClose),
    );

    let slot = pageHandlers.get(page);
    if (!slot) {
      const created: { handler: ((message: BridgePageMessage) => void) | undefined } = { handler: undefined };
      slot = created;
      pageHandlers.set(page, created);
      await page.exposeBinding(BRIDGE_BINDING, (_source, payload: unknown) => {
        const message = parseBridgePageMessage(payload);
        if (message) created.handler?.(message);
      });
      await page.addInitScript({ content: BRIDGE_PAGE_SCRIPT });
      // The current document too (the init script runs from the next navigation on).
      await page.evaluate(BRIDGE_PAGE_SCRIPT).catch(() => {});
    }
    const pageSlot = slot;
    pageSlot.handler = onPageMessage;
    cleanups.push(() => {
      if (pageSlot.handler === onPageMessage) pageSlot.handler = undefined;
    });

    await pageSend('Page.enable', {});
    await pageSend('DeviceAccess.enable', {});
    // A previous owner (or a crashed run) may have left it enabled: start from a clean adapter.
    await browserSend('BluetoothEmulation.disable', {}).catch(() => {});
    await enableEmulation();
    if ((options.minDevices ?? 1) > 0) await scan({ minDevices: options.minDevices ?? 1 });
    await page.bringToFront().catch(() => {});
  } catch (err) {
    closed = true;
    for (const cleanup of cleanups) cleanup();
    await shutdown().catch(() => {});
    throw err;
  }

  async function shutdown(): Promise<void> {
    for (const device of devices.values()) {
      if (device.link) await endLink(device.link, 'bridge').catch(() => {});
    }
    chooser.close();
    if (browserSession) {
      await browserSend('BluetoothEmulation.disable', {}).catch(() => {});
      if (ownBrowserSession) await browserSession.detach().catch(() => {});
    }
    if (pageSession) {
      await pageSend('DeviceAccess.disable', {}).catch(() => {});
      await pageSession.detach().catch(() => {});
    }
    if (noble) {
      noble.removeAllListeners('discover');
      try {
        // Closes the HCI UART; without it the open port keeps node alive.
        noble.stop();
      } catch {
        // never powered on: nothing is open
      }
    }
  }

  let closing: Promise<void> | undefined;
  const on = (listener: (event: BridgeEvent) => void) => {
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  };

  return {
    devices: () => [...devices.values()].map((d) => d.info),
    scan: (scanOptions) => scan(scanOptions),
    chooseNext(choice) {
      chooser.chooseNext(choice);
    },
    cancelNextChooser() {
      chooser.chooseNext('cancel');
    },
    prompts: () => chooser.prompts(),
    setMtu(value) {
      if (value !== 23 && value !== 256) throw new RangeError(`mtu must be 23 or 256, got ${String(value)}`);
      mtu = value;
    },
    links: () =>
      [...devices.values()]
        .map((d) => d.link)
        .filter((l): l is Link => l !== undefined && !l.down)
        .map((l) => ({ address: l.address, mtu: l.mtu, pageConnected: l.pageConnected })),
    async dropLink(address) {
      const wanted = address?.toUpperCase();
      const targets = [...devices.values()]
        .filter((d) => wanted === undefined || d.info.address === wanted)
        .map((d) => d.link)
        .filter((l): l is Link => l !== undefined && !l.down);
      if (wanted !== undefined && targets.length === 0)
        throw new Error(`web-bluetooth bridge: no link to ${wanted}`);
      await Promise.all(targets.map((link) => endLink(link, 'bridge')));
    },
    ready: () => rebuilding,
    on,
    waitFor(predicate: (event: BridgeEvent) => boolean, timeoutMs = 10_000): Promise<never> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          off();
          reject(new Error(`web-bluetooth bridge: no matching event within ${timeoutMs} ms`));
        }, timeoutMs);
        const off = on((event) => {
          if (!predicate(event)) return;
          clearTimeout(timer);
          off();
          resolve(event as never);
        });
      });
    },
    stats: () => ({ ...counters }),
    close() {
      closing ??= (async () => {
        await rebuilding.catch(() => {});
        for (const device of devices.values()) {
          if (device.link) await endLink(device.link, 'bridge').catch(() => {});
        }
        closed = true;
        for (const cleanup of cleanups) cleanup();
        listeners.clear();
        await shutdown();
      })();
      return closing;
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
