/**
 * Builds the CAN PileDriver from its validated config: opens SocketCAN on the configured
 * interface (socketcan loaded lazily, unless a socket is injected) and starts the driver, which
 * waits up to `startupWaitMs` for the pile to report every connector.
 * @module
 */

import { type PileTimers, systemTimers } from '../timers.ts';
import { type CanPileDriver, createCanPileDriver } from './can-driver.ts';
import { type CanSocket, openSocketCan } from './can-socket.ts';
import type { CanPileConfig } from './config.ts';

export interface CanPileDeps {
  /** The gateway's connector numbers. */
  readonly connectors: readonly number[];
  /** The CAN socket; default SocketCAN on `config.interface`. */
  readonly socket?: CanSocket;
  readonly timers?: PileTimers;
  readonly onError?: (error: unknown) => void;
}

export async function openCanPile(config: CanPileConfig, deps: CanPileDeps): Promise<CanPileDriver> {
  const socket = deps.socket ?? (await openSocketCan(config.interface, { pileNodeId: config.pileNodeId }));
  try {
    return await createCanPileDriver({
      socket,
      connectors: deps.connectors,
      pileNodeId: config.pileNodeId,
      gatewayNodeId: config.gatewayNodeId,
      heartbeatMs: config.heartbeatMs,
      heartbeatTimeoutMs: config.heartbeatTimeoutMs,
      commandTimeoutMs: config.commandTimeoutMs,
      stopTimeoutMs: config.stopTimeoutMs,
      staleMs: config.staleMs,
      startupWaitMs: config.startupWaitMs,
      meterIds: Object.fromEntries(config.meters.map((m) => [String(m.connector), m.meterId])),
      timers: deps.timers ?? systemTimers,
      ...(deps.onError ? { onError: deps.onError } : {}),
    });
  } catch (error) {
    socket.close();
    throw error;
  }
}
