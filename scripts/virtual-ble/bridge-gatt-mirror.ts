/**
 * Mirrors a real peripheral's GATT table (read with noble) into Chromium's emulated device, for
 * the Web Bluetooth bridge. Chromium sends its `discovery` operation when the page first calls
 * `getPrimaryService`, and drops the mirrored table whenever the link ends, so the bridge
 * mirrors again on every discovery: services, characteristics (noble's property names are
 * CDP's), their descriptors — and a 0x2902 CCCD on every notify/indicate characteristic even
 * if the peripheral lists none, since Chromium refuses `startNotifications()` without it.
 * Services Chromium refuses to add are skipped (reported through `onSkipped`).
 * @module
 */

import type { Characteristic, Descriptor, Peripheral } from '@stoprocent/noble';
import { type BrowserSend, CCCD_UUID, cdpProperties, dashedUuid, withTimeout } from './bridge-cdp.ts';

export interface MirroredCharacteristic {
  /** Chromium's characteristicId. */
  readonly id: string;
  /** Dashed, lower-case. */
  readonly uuid: string;
  readonly noble: Characteristic;
  /** noble's property names (read, write, writeWithoutResponse, notify, indicate, …). */
  readonly properties: readonly string[];
}

export interface MirroredDescriptor {
  /** Chromium's descriptorId. */
  readonly id: string;
  readonly noble: Descriptor;
}

export interface GattMirror {
  readonly serviceIds: readonly string[];
  readonly characteristics: readonly MirroredCharacteristic[];
  readonly descriptors: readonly MirroredDescriptor[];
}

export interface MirrorOptions {
  /** Chromium's address of the emulated device. */
  readonly address: string;
  readonly send: BrowserSend;
  /** Timeout of each noble discovery step. */
  readonly operationTimeoutMs: number;
  readonly onSkipped?: (serviceUuid: string, error: Error) => void;
}

/** Discovers the whole table with noble and adds it to the emulated device. */
export async function mirrorGattTable(peripheral: Peripheral, options: MirrorOptions): Promise<GattMirror> {
  const { address, send, operationTimeoutMs } = options;
  const { services } = await withTimeout(
    peripheral.discoverAllServicesAndCharacteristicsAsync(),
    operationTimeoutMs,
    `discovery on ${address}`,
  );
  const serviceIds: string[] = [];
  const characteristics: MirroredCharacteristic[] = [];
  const descriptors: MirroredDescriptor[] = [];
  for (const service of services) {
    const serviceUuid = dashedUuid(service.uuid);
    let serviceId: string;
    try {
      ({ serviceId } = (await send('BluetoothEmulation.addService', { address, serviceUuid })) as {
        serviceId: string;
      });
    } catch (err) {
      options.onSkipped?.(serviceUuid, err as Error);
      continue;
    }
    serviceIds.push(serviceId);
    for (const characteristic of service.characteristics ?? []) {
      const uuid = dashedUuid(characteristic.uuid);
      const properties = characteristic.properties as readonly string[];
      const { characteristicId } = (await send('BluetoothEmulation.addCharacteristic', {
        serviceId,
        characteristicUuid: uuid,
        properties: cdpProperties(properties),
      })) as { characteristicId: string };
      characteristics.push({ id: characteristicId, uuid, noble: characteristic, properties });
      const found = await withTimeout(
        characteristic.discoverDescriptorsAsync(),
        operationTimeoutMs,
        `descriptors of ${uuid}`,
      );
      for (const descriptor of found) {
        const { descriptorId } = (await send('BluetoothEmulation.addDescriptor', {
          characteristicId,
          descriptorUuid: dashedUuid(descriptor.uuid),
        })) as { descriptorId: string };
        descriptors.push({ id: descriptorId, noble: descriptor });
      }
      const hasCccd = found.some((d) => dashedUuid(d.uuid) === CCCD_UUID);
      if (!hasCccd && (properties.includes('notify') || properties.includes('indicate'))) {
        await send('BluetoothEmulation.addDescriptor', { characteristicId, descriptorUuid: CCCD_UUID });
      }
    }
  }
  return { serviceIds, characteristics, descriptors };
}
