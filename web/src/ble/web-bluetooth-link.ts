/**
 * A {@link PhoneLink} over Web Bluetooth: the PWA's radio. One `connectGateway` call asks the
 * user to pick the station (filtered on the PilePass service, and on the gateway id when the
 * voucher names it), connects, and wires hello / control / events (shared/src/gatt.ts).
 *
 * Support: Chrome / Edge on Android and desktop. iOS Safari and Firefox have no Web
 * Bluetooth; Bluefy (an iOS browser with Web Bluetooth) is unverified.
 * @module
 */

import type { PhoneLink } from '../../../shared/src/client/phone.ts';
import {
  CONTROL_CHARACTERISTIC_UUID,
  EVENTS_CHARACTERISTIC_UUID,
  HELLO_CHARACTERISTIC_UUID,
  MAX_WRITE_BYTES,
  SERVICE_UUID,
} from '../../../shared/src/gatt.ts';
import { withDeadline } from '../deadline.ts';

/** A message in both of the app's languages. */
export interface BilingualText {
  readonly en: string;
  readonly zh: string;
}

export type BluetoothFailure =
  | 'unsupported'
  | 'unavailable'
  | 'location-off'
  | 'permission-denied'
  | 'cancelled'
  | 'connect-failed';

export const BLUETOOTH_FAILURE_TEXT: Readonly<Record<BluetoothFailure, BilingualText>> = {
  unsupported: {
    en:
      'This browser has no Web Bluetooth. Use Chrome on Android or on a computer. ' +
      'Safari and Firefox on iPhone/iPad do not support it (Bluefy on iOS is unverified).',
    zh: '此浏览器不支持 Web Bluetooth。请在 Android 或电脑上使用 Chrome。iPhone/iPad 上的 Safari 和 Firefox 不支持（iOS 上的 Bluefy 尚未验证）。',
  },
  unavailable: {
    en: 'Bluetooth is off or not available on this device. Turn it on and try again.',
    zh: '此设备的蓝牙已关闭或不可用。请打开蓝牙后重试。',
  },
  'location-off': {
    en: 'Android 11 and older need Location turned on to find Bluetooth devices. Turn on Location and try again.',
    zh: 'Android 11 及更早版本需要开启“位置信息”才能查找蓝牙设备。请开启位置信息后重试。',
  },
  'permission-denied': {
    en:
      'PilePass may not use Bluetooth. Allow "Nearby devices" for your browser (Android 12+: ' +
      'Settings → Apps → Chrome → Permissions) and try again.',
    zh: 'PilePass 无权使用蓝牙。请为浏览器允许“附近的设备”权限（Android 12 及以上：设置 → 应用 → Chrome → 权限）后重试。',
  },
  cancelled: {
    en: 'No charging station was chosen.',
    zh: '未选择充电站。',
  },
  'connect-failed': {
    en: 'Could not connect to the charging station. Move closer and try again.',
    zh: '无法连接充电站。请靠近后重试。',
  },
};

/** A typed failure of the Web Bluetooth layer; `text` holds the message in both languages. */
export class WebBluetoothError extends Error {
  override readonly name = 'WebBluetoothError';
  readonly failure: BluetoothFailure;
  readonly text: BilingualText;

  constructor(failure: BluetoothFailure, options?: { cause?: unknown }) {
    const text = BLUETOOTH_FAILURE_TEXT[failure];
    super(text.en, options);
    this.failure = failure;
    this.text = text;
  }
}

// The slice of the Web Bluetooth API used here (TypeScript's DOM library does not ship it).
interface BluetoothCharacteristic extends EventTarget {
  readonly value?: DataView | null;
  readValue(): Promise<DataView>;
  writeValueWithResponse(value: BufferSource): Promise<void>;
  startNotifications(): Promise<BluetoothCharacteristic>;
  stopNotifications(): Promise<BluetoothCharacteristic>;
}
interface BluetoothService {
  getCharacteristic(uuid: string): Promise<BluetoothCharacteristic>;
}
interface BluetoothServer {
  readonly connected: boolean;
  connect(): Promise<BluetoothServer>;
  disconnect(): void;
  getPrimaryService(uuid: string): Promise<BluetoothService>;
}
interface BluetoothDeviceLike extends EventTarget {
  readonly id: string;
  readonly name?: string;
  readonly gatt?: BluetoothServer;
}
interface BluetoothLEScanFilter {
  services?: string[];
  name?: string;
  namePrefix?: string;
}
interface WebBluetooth {
  getAvailability?(): Promise<boolean>;
  requestDevice(options: {
    filters: BluetoothLEScanFilter[];
    optionalServices?: string[];
  }): Promise<BluetoothDeviceLike>;
}

function webBluetooth(): WebBluetooth | undefined {
  if (typeof navigator === 'undefined') return undefined;
  return (navigator as Navigator & { bluetooth?: WebBluetooth }).bluetooth;
}

/** Whether this browser exposes Web Bluetooth at all (not whether a radio is on). */
export function isWebBluetoothSupported(): boolean {
  return webBluetooth() !== undefined;
}

/** Longest local name a gateway advertises complete (31-byte scan response − 2). */
const MAX_LOCAL_NAME_BYTES = 29;

/**
 * The scan filter for one gateway: its id as the complete local name, or — for ids longer
 * than the scan response holds — the shortened name the gateway advertises, as a prefix.
 */
export function gatewayFilter(gatewayId?: string): BluetoothLEScanFilter {
  if (gatewayId === undefined || gatewayId === '') return { services: [SERVICE_UUID] };
  const encoder = new TextEncoder();
  if (encoder.encode(gatewayId).length <= MAX_LOCAL_NAME_BYTES)
    return { services: [SERVICE_UUID], name: gatewayId };
  let prefix = '';
  for (const ch of gatewayId) {
    if (encoder.encode(prefix + ch).length > MAX_LOCAL_NAME_BYTES) break;
    prefix += ch;
  }
  return { services: [SERVICE_UUID], namePrefix: prefix };
}

function bytesOf(view: DataView): Uint8Array {
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

/**
 * What a failed `requestDevice` means for the driver. Chromium reports several situations
 * with the same DOMException name, so its (stable, English) messages decide: "User cancelled
 * the requestDevice() chooser.", "Bluetooth adapter not available.", "Location services are
 * disabled" (Android ≤ 11), and a NotAllowedError/SecurityError for a refused permission
 * ("Nearby devices", Android 12+) or a missing user gesture.
 */
export function classifyRequestDeviceError(err: unknown): BluetoothFailure {
  const name = err instanceof Error ? err.name : '';
  const message = err instanceof Error ? err.message.toLowerCase() : '';
  if (message.includes('location')) return 'location-off';
  if (message.includes('adapter') || message.includes('bluetooth is off') || message.includes('radio'))
    return 'unavailable';
  if (name === 'NotFoundError' || name === 'AbortError') return 'cancelled';
  if (name === 'NotAllowedError' || name === 'SecurityError') return 'permission-denied';
  return 'connect-failed';
}

export interface WebBluetoothLink extends PhoneLink {
  /** The chosen device's id (stable per origin) and advertised name. */
  readonly deviceId: string;
  readonly deviceName: string | undefined;
  readonly connected: boolean;
  disconnect(): void;
}

/**
 * Asks the user to choose the gateway and connects. Must run from a user gesture (a tap).
 * Throws {@link WebBluetoothError}.
 */
/** GATT connect + discovery + subscribe; Chrome's own link timeouts are longer and vary. */
export const CONNECT_TIMEOUT_MS = 20_000;

export async function connectGateway(
  options: { gatewayId?: string; connectTimeoutMs?: number } = {},
): Promise<WebBluetoothLink> {
  const bluetooth = webBluetooth();
  if (!bluetooth) throw new WebBluetoothError('unsupported');
  if (bluetooth.getAvailability && !(await bluetooth.getAvailability().catch(() => true))) {
    throw new WebBluetoothError('unavailable');
  }
  let device: BluetoothDeviceLike;
  try {
    device = await bluetooth.requestDevice({
      filters: [gatewayFilter(options.gatewayId)],
      optionalServices: [SERVICE_UUID],
    });
  } catch (err) {
    throw new WebBluetoothError(classifyRequestDeviceError(err), { cause: err });
  }
  const gatt = device.gatt;
  if (!gatt) throw new WebBluetoothError('connect-failed');
  let hello: BluetoothCharacteristic;
  let control: BluetoothCharacteristic;
  let events: BluetoothCharacteristic;
  try {
    // The chooser waits for the driver; connecting must not wait forever for the radio.
    [hello, control, events] = await withDeadline(
      (async () => {
        const server = await gatt.connect();
        const service = await server.getPrimaryService(SERVICE_UUID);
        const found = await Promise.all([
          service.getCharacteristic(HELLO_CHARACTERISTIC_UUID),
          service.getCharacteristic(CONTROL_CHARACTERISTIC_UUID),
          service.getCharacteristic(EVENTS_CHARACTERISTIC_UUID),
        ]);
        // Subscribe before returning: PhoneLink.onNotify is synchronous, and no event may be
        // missed between the first write and the subscription.
        await found[2].startNotifications();
        return found;
      })(),
      options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      () => new Error('no answer from the GATT server in time'),
    );
  } catch (err) {
    if (gatt.connected) gatt.disconnect();
    throw new WebBluetoothError('connect-failed', { cause: err });
  }

  const notifyListeners = new Set<(unit: Uint8Array) => void>();
  const onValue = (event: Event) => {
    const view = (event.target as BluetoothCharacteristic | null)?.value;
    if (!view) return;
    const unit = bytesOf(view);
    for (const listener of notifyListeners) listener(unit);
  };
  events.addEventListener('characteristicvaluechanged', onValue);

  return {
    deviceId: device.id,
    deviceName: device.name,
    get connected() {
      return gatt.connected;
    },
    disconnect() {
      events.removeEventListener('characteristicvaluechanged', onValue);
      if (gatt.connected) gatt.disconnect();
    },
    async readHello() {
      return bytesOf(await hello.readValue());
    },
    async write(unit) {
      if (unit.length > MAX_WRITE_BYTES)
        throw new RangeError(`write of ${unit.length} B exceeds ${MAX_WRITE_BYTES} B`);
      await control.writeValueWithResponse(unit.slice());
    },
    onNotify(listener) {
      notifyListeners.add(listener);
      return () => {
        notifyListeners.delete(listener);
      };
    },
    onDisconnect(listener) {
      const handler = () => listener();
      device.addEventListener('gattserverdisconnected', handler);
      return () => device.removeEventListener('gattserverdisconnected', handler);
    },
  };
}
