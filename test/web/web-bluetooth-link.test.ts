/**
 * The Web Bluetooth PhoneLink against a fake `navigator.bluetooth` (node env): scan filter,
 * hello read, writes, notifications, disconnects and the typed failures.
 */

import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  CONTROL_CHARACTERISTIC_UUID,
  EVENTS_CHARACTERISTIC_UUID,
  HELLO_CHARACTERISTIC_UUID,
  SERVICE_UUID,
} from '../../shared/src/gatt.ts';
import {
  classifyRequestDeviceError,
  connectGateway,
  gatewayFilter,
  isWebBluetoothSupported,
  WebBluetoothError,
} from '../../web/src/ble/web-bluetooth-link.ts';

class FakeCharacteristic extends EventTarget {
  value: DataView | null = null;
  readonly writes: Uint8Array[] = [];
  notifying = false;
  readonly content: Uint8Array;
  constructor(content: Uint8Array = new Uint8Array()) {
    super();
    this.content = content;
  }
  async readValue() {
    const copy = new Uint8Array([0xff, ...this.content, 0xff]);
    return new DataView(copy.buffer, 1, this.content.length);
  }
  async writeValueWithResponse(value: BufferSource) {
    this.writes.push(new Uint8Array(value as ArrayBuffer | Uint8Array<ArrayBuffer>));
  }
  async startNotifications() {
    this.notifying = true;
    return this;
  }
  async stopNotifications() {
    this.notifying = false;
    return this;
  }
  notify(bytes: Uint8Array) {
    this.value = new DataView(bytes.slice().buffer);
    this.dispatchEvent(new Event('characteristicvaluechanged'));
  }
}

function fakeBluetooth(requestError?: Error) {
  const hello = new FakeCharacteristic(new Uint8Array([1, 2, 3]));
  const control = new FakeCharacteristic();
  const events = new FakeCharacteristic();
  const byUuid: Record<string, FakeCharacteristic> = {
    [HELLO_CHARACTERISTIC_UUID]: hello,
    [CONTROL_CHARACTERISTIC_UUID]: control,
    [EVENTS_CHARACTERISTIC_UUID]: events,
  };
  const device = new EventTarget() as EventTarget & { id: string; name: string; gatt: unknown };
  const gatt = {
    connected: false,
    async connect() {
      gatt.connected = true;
      return gatt;
    },
    disconnect() {
      gatt.connected = false;
      device.dispatchEvent(new Event('gattserverdisconnected'));
    },
    async getPrimaryService(uuid: string) {
      expect(uuid).toBe(SERVICE_UUID);
      return { getCharacteristic: async (id: string) => byUuid[id]! };
    },
  };
  Object.assign(device, { id: 'dev-1', name: 'GW-1', gatt });
  const requestDevice = vi.fn(async () => {
    if (requestError) throw requestError;
    return device;
  });
  vi.stubGlobal('navigator', { bluetooth: { getAvailability: async () => true, requestDevice } });
  return { hello, control, events, gatt, requestDevice };
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('Web Bluetooth PhoneLink', () => {
  it('fails with a bilingual typed error when Web Bluetooth is missing', async () => {
    vi.stubGlobal('navigator', {});
    expect(isWebBluetoothSupported()).toBe(false);
    const err = await connectGateway().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebBluetoothError);
    expect((err as WebBluetoothError).failure).toBe('unsupported');
    expect((err as WebBluetoothError).text.en).toMatch(/Chrome.*Android/);
    expect((err as WebBluetoothError).text.en).toMatch(/Bluefy/);
    expect((err as WebBluetoothError).text.zh).toMatch(/Bluefy/);
  });

  it('filters on the service, and on the gateway id (complete or shortened name)', () => {
    expect(gatewayFilter()).toEqual({ services: [SERVICE_UUID] });
    expect(gatewayFilter('GW-1')).toEqual({ services: [SERVICE_UUID], name: 'GW-1' });
    const long = 'station-0123456789-abcdefghijklmnop';
    expect(gatewayFilter(long)).toEqual({ services: [SERVICE_UUID], namePrefix: long.slice(0, 29) });
  });

  it('reads the hello, writes control, relays notifications and disconnects', async () => {
    const fake = fakeBluetooth();
    const link = await connectGateway({ gatewayId: 'GW-1' });
    expect(fake.requestDevice).toHaveBeenCalledWith({
      filters: [{ services: [SERVICE_UUID], name: 'GW-1' }],
      optionalServices: [SERVICE_UUID],
    });
    expect(fake.events.notifying).toBe(true);
    expect(link.deviceName).toBe('GW-1');
    expect(await link.readHello()).toEqual(new Uint8Array([1, 2, 3]));

    await link.write(new Uint8Array([9, 8]));
    expect(fake.control.writes).toEqual([new Uint8Array([9, 8])]);
    await expect(link.write(new Uint8Array(513))).rejects.toThrow(RangeError);

    const units: Uint8Array[] = [];
    const off = link.onNotify((u) => units.push(u));
    fake.events.notify(new Uint8Array([0, 1, 7]));
    off();
    fake.events.notify(new Uint8Array([0, 1, 8]));
    expect(units).toEqual([new Uint8Array([0, 1, 7])]);

    let dropped = 0;
    link.onDisconnect(() => dropped++);
    expect(link.connected).toBe(true);
    link.disconnect();
    expect(link.connected).toBe(false);
    expect(dropped).toBe(1);
  });

  it('gives up on a GATT connection that never answers ("connect-failed", link released)', async () => {
    const fake = fakeBluetooth();
    fake.gatt.connect = () => {
      fake.gatt.connected = true;
      return new Promise(() => {});
    };
    const err = await connectGateway({ connectTimeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebBluetoothError);
    expect((err as WebBluetoothError).failure).toBe('connect-failed');
    expect(fake.gatt.connected).toBe(false);
  });

  it('maps a cancelled chooser to "cancelled"', async () => {
    fakeBluetooth(new DOMException('User cancelled the requestDevice() chooser.', 'NotFoundError'));
    await expect(connectGateway()).rejects.toMatchObject({ failure: 'cancelled' });
  });

  it.each([
    ['NotFoundError', 'User cancelled the requestDevice() chooser.', 'cancelled'],
    ['NotFoundError', 'Bluetooth adapter not available.', 'unavailable'],
    ['NotFoundError', 'Location services are disabled.', 'location-off'],
    ['NotAllowedError', 'Permission to access Bluetooth devices was denied.', 'permission-denied'],
    ['SecurityError', 'Must be handling a user gesture to show a permission request.', 'permission-denied'],
    ['NetworkError', 'Connection failed for unknown reason.', 'connect-failed'],
  ] as const)(
    'classifies %s "%s" as %s, with a message in both languages',
    async (name, message, failure) => {
      expect(classifyRequestDeviceError(new DOMException(message, name))).toBe(failure);
      fakeBluetooth(new DOMException(message, name));
      const err = await connectGateway().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WebBluetoothError);
      expect((err as WebBluetoothError).failure).toBe(failure);
      expect((err as WebBluetoothError).text.en).not.toBe('');
      expect((err as WebBluetoothError).text.zh).not.toBe('');
    },
  );
});
