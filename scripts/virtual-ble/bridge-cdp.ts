/**
 * The CDP vocabulary of the Web Bluetooth bridge (web-bluetooth-bridge.ts): the parameters of
 * the BluetoothEmulation (browser session) and DeviceAccess (page session) commands it sends,
 * the answer codes, UUID and property conversions between noble and CDP, and the timeouts
 * every command and noble operation runs under (Chromium never times an operation out).
 * @module
 */

/** HCI "Connection Failed to be Established": the page's connect() rejects with NetworkError. */
export const HCI_CONNECTION_FAILED = 0x3e;
/** ATT "Unlikely Error": any non-zero ATT code reaches the page as the same NotSupportedError. */
export const ATT_UNLIKELY_ERROR = 0x0e;
/** Client Characteristic Configuration: without it Chromium refuses startNotifications(). */
export const CCCD_UUID = '00002902-0000-1000-8000-00805f9b34fb';

export type CharacteristicOperationType =
  | 'read'
  | 'write'
  | 'subscribe-to-notifications'
  | 'unsubscribe-from-notifications';

export interface CdpCharacteristicProperties {
  broadcast?: boolean;
  read?: boolean;
  writeWithoutResponse?: boolean;
  write?: boolean;
  notify?: boolean;
  indicate?: boolean;
  authenticatedSignedWrites?: boolean;
  extendedProperties?: boolean;
}

/** Browser-session commands (BluetoothEmulation lives only there). */
export interface BrowserCommands {
  'BluetoothEmulation.enable': { state: 'powered-on'; leSupported: boolean };
  'BluetoothEmulation.disable': Record<string, never>;
  'BluetoothEmulation.simulatePreconnectedPeripheral': {
    address: string;
    name: string;
    manufacturerData: { key: number; data: string }[];
    knownServiceUuids: string[];
  };
  'BluetoothEmulation.simulateGATTOperationResponse': {
    address: string;
    type: 'connection' | 'discovery';
    code: number;
  };
  'BluetoothEmulation.simulateCharacteristicOperationResponse': {
    characteristicId: string;
    type: CharacteristicOperationType;
    code: number;
    data?: string;
  };
  'BluetoothEmulation.simulateDescriptorOperationResponse': {
    descriptorId: string;
    type: 'read' | 'write';
    code: number;
    data?: string;
  };
  'BluetoothEmulation.addService': { address: string; serviceUuid: string };
  'BluetoothEmulation.removeService': { serviceId: string };
  'BluetoothEmulation.addCharacteristic': {
    serviceId: string;
    characteristicUuid: string;
    properties: CdpCharacteristicProperties;
  };
  'BluetoothEmulation.addDescriptor': { characteristicId: string; descriptorUuid: string };
  'BluetoothEmulation.simulateGATTDisconnection': { address: string };
}

/** Page-session commands (DeviceAccess lives only there). */
export interface PageCommands {
  'Page.enable': Record<string, never>;
  'DeviceAccess.enable': Record<string, never>;
  'DeviceAccess.disable': Record<string, never>;
  'DeviceAccess.selectPrompt': { id: string; deviceId: string };
  'DeviceAccess.cancelPrompt': { id: string };
}

const CDP_PROPERTY_NAMES: readonly (keyof CdpCharacteristicProperties)[] = [
  'broadcast',
  'read',
  'writeWithoutResponse',
  'write',
  'notify',
  'indicate',
  'authenticatedSignedWrites',
  'extendedProperties',
];

/** noble's property names are CDP's. */
export function cdpProperties(properties: readonly string[]): CdpCharacteristicProperties {
  const out: CdpCharacteristicProperties = {};
  for (const name of CDP_PROPERTY_NAMES) if (properties.includes(name)) out[name] = true;
  return out;
}

/** Any UUID form (noble's compact 16/32/128-bit, dashed) as the dashed, lower-case 128-bit form. */
export function dashedUuid(uuid: string): string {
  const hex = uuid.replaceAll('-', '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex) || (hex.length !== 4 && hex.length !== 8 && hex.length !== 32)) {
    throw new TypeError(`not a UUID: ${uuid}`);
  }
  const full = hex.length === 32 ? hex : `${hex.padStart(8, '0')}00001000800000805f9b34fb`;
  return `${full.slice(0, 8)}-${full.slice(8, 12)}-${full.slice(12, 16)}-${full.slice(16, 20)}-${full.slice(20)}`;
}

/** The form noble uses (no dashes, lower-case; base-UUID ones as 4 hex digits). */
export function compactUuid(uuid: string): string {
  const full = dashedUuid(uuid).replaceAll('-', '');
  return full.startsWith('0000') && full.endsWith('00001000800000805f9b34fb') ? full.slice(4, 8) : full;
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
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

export { settlesWithin } from './child-exit.ts';

/** Sends one browser-session command (with its timeout). */
export type BrowserSend = <M extends keyof BrowserCommands>(
  method: M,
  params: BrowserCommands[M],
) => Promise<unknown>;
