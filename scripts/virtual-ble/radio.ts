/**
 * The emulated radio of a station without Bluetooth hardware: btvirt (machine-wide, locked;
 * scripts/virtual-ble/btvirt.ts) plus the HCI hub (scripts/virtual-ble/hci-hub.ts), giving one
 * HCI UART pty per BLE device — the gateway's bleno on one, each phone's noble (the phone
 * simulator, the Web Bluetooth bridge) on another — with several links up at once.
 * Used by the station test fixture and by `npm start`. Node only.
 * @module
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startVirtualBle, type VirtualBle } from './btvirt.ts';
import { type HciHub, startHciHub } from './hci-hub.ts';

export interface VirtualRadioOptions {
  /** Number of BLE devices (ptys), 1–8. */
  readonly devices: number;
  /** How long to wait for another holder of btvirt's machine-wide lock (default 150 s). */
  readonly lockTimeoutMs?: number;
  /** Called with each child PID (btvirt, socat) once started. */
  readonly onSpawn?: (pid: number) => void;
  /** Called with each child PID once it has exited in stop(). */
  readonly onExit?: (pid: number) => void;
}

export interface VirtualRadio {
  /** One HCI UART per device, for `--ble uart:<pty>` or BLUETOOTH_HCI_SOCKET_UART_PORT. */
  readonly ptys: readonly string[];
  /** Every child PID (btvirt, socat; each leads its own process group). */
  readonly pids: readonly number[];
  /** What the hub did so far (ACL packets routed, handles corrected, ACL left to btvirt). */
  stats(): { readonly routed: number; readonly corrected: number; readonly unrouted: number };
  /** Ends device `index`'s links as a supervision timeout would (its host vanished). */
  dropLinks(index: number): void;
  /** Stops the hub and btvirt, removes the ptys and releases the lock. Idempotent. */
  stop(): Promise<void>;
}

export async function startVirtualRadio(options: VirtualRadioOptions): Promise<VirtualRadio> {
  const vble: VirtualBle = await startVirtualBle({
    devices: 1, // btvirt's own pty stays idle: the probe proves the controller works
    lockTimeoutMs: options.lockTimeoutMs ?? 150_000,
  });
  for (const pid of vble.pids) options.onSpawn?.(pid);
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-radio-'));
  const stopBtvirt = async () => {
    await vble.stop();
    for (const pid of vble.pids) options.onExit?.(pid);
    rmSync(dir, { recursive: true, force: true });
  };
  let hub: HciHub;
  try {
    hub = await startHciHub({
      dir,
      devices: options.devices,
      ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
      ...(options.onExit ? { onExit: options.onExit } : {}),
    });
  } catch (err) {
    await stopBtvirt().catch(() => {});
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    ptys: hub.ptys,
    pids: [...vble.pids, ...hub.pids],
    stats: () => ({ ...hub.stats }),
    dropLinks: (index) => hub.dropLinks(index),
    stop() {
      stopping ??= (async () => {
        await hub.stop().catch(() => {});
        await stopBtvirt();
      })();
      return stopping;
    },
  };
}
