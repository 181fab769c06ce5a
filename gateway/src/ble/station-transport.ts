/**
 * The BLE transport of a real station: bleno on `hci` / `hci:N` (the kernel's adapter, taken
 * and reset through hci-adapter.ts) or `uart:<tty>` (an HCI UART board, or an emulated
 * controller in tests), wrapped in adapter recovery (adapter-recovery.ts).
 * @module
 */

import type { Logger } from 'pino';
import type { GatewayConfig } from '../config.ts';
import type { GattTransport } from '../contracts.ts';

export interface StationTransportHooks {
  /** The adapter did not come back after the bounded recovery attempts. */
  readonly onGiveUp: (error: Error) => void;
  readonly onStateChange?: (state: string) => void;
}

/** Whether `ble` names a Bluetooth controller (as opposed to `socket:` / `in-process`). */
export function isBleHardware(ble: string): boolean {
  return ble === 'hci' || ble.startsWith('hci:') || ble.startsWith('uart:');
}

export async function createBleTransport(
  config: GatewayConfig,
  logger: Logger,
  hooks: StationTransportHooks,
): Promise<GattTransport> {
  const ble = config.ble;
  if (!isBleHardware(ble)) throw new RangeError(`not a Bluetooth controller: ble = ${JSON.stringify(ble)}`);
  const { createBlenoTransport } = await import('./bleno-transport.ts');
  const { createRecoveringTransport } = await import('./adapter-recovery.ts');
  const { takeAdapter, resetAdapter } = await import('./hci-adapter.ts');
  const isHci = !ble.startsWith('uart:');
  const deviceId = ble.startsWith('hci:') ? Number(ble.slice(4)) : 0;
  const port = isHci ? ({ port: 'hci', deviceId } as const) : ({ port: 'uart', path: ble.slice(5) } as const);
  const log = logger.child({ ble });
  return createRecoveringTransport({
    name: isHci ? `hci${deviceId}` : ble,
    create: (onAdapterLost) =>
      createBlenoTransport(port, {
        name: config.name,
        gatewayId: config.gatewayId,
        onAdapterLost,
        onError: (err, link) => log.warn({ err: String(err), link }, 'BLE handler error'),
      }),
    // A UART controller has no kernel adapter to take or power-cycle.
    ...(isHci ? { prepare: () => takeAdapter(deviceId), reset: () => resetAdapter(deviceId) } : {}),
    onGiveUp: hooks.onGiveUp,
    ...(hooks.onStateChange ? { onStateChange: hooks.onStateChange } : {}),
    log,
  });
}
