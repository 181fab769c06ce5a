/**
 * PileDriver for relay-enabled EVSEs: one RelayConnector per connector (enable output, contactor
 * feedback, optional plug and error inputs, a meter), polled every `pollMs` (readings and fault
 * rules), with the events of the PileDriver contract.
 *
 * Switching off: every enable is driven off when the driver is created (a relay EVSE cannot
 * carry a session across a gateway restart — the enable dropped when the old process ended, so
 * the start-up recovery finds the contactor open and closes the session on the meter register),
 * on `stop`, on every fault, on unplug, at the energy cap, and in `close()`, which waits for each
 * feedback to open (bounded) before releasing the lines. The lines' release, process exit, crash
 * and power loss all leave the enable at its hardware-pulled inactive level.
 * @module
 */

import type { ConnectorReading, PileDriver, PileEvent } from '../../contracts.ts';
import { type PileTimers, repeat } from '../timers.ts';
import {
  RelayConnector,
  type RelayConnectorHardware,
  RelayPileError,
  type RelayTiming,
} from './relay-connector.ts';

export { RelayPileError } from './relay-connector.ts';

export interface RelayPileDriverOptions {
  readonly connectors: readonly RelayConnectorHardware[];
  readonly timers: PileTimers;
  readonly timing: RelayTiming;
  /** Poll period, ms; 0 = no background polling (tests call `poll()`). */
  readonly pollMs: number;
  /** Releases lines, meters and buses after the connectors are off (called once, by close). */
  readonly release: () => Promise<void>;
  /** Where exceptions thrown by event listeners and failed background polls go (default console.error). */
  readonly onError?: (error: unknown) => void;
}

/** The relay PileDriver, plus `poll()` for tests and diagnostics. */
export interface RelayPileDriver extends PileDriver {
  /** Polls every connector once (the background loop does the same every `pollMs`). */
  poll(): Promise<void>;
  /** Why a connector is faulted, if it is. */
  faultDetail(connector: number): string | undefined;
}

export function createRelayPileDriver(options: RelayPileDriverOptions): RelayPileDriver {
  const onError = options.onError ?? ((error) => console.error('relay pile:', error));
  const listeners = new Set<(event: PileEvent) => void>();
  const emit = (event: PileEvent) => {
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (error) {
        onError(error);
      }
    }
  };
  if (options.connectors.length === 0) throw new RangeError('createRelayPileDriver: at least one connector');
  const byNumber = new Map<number, RelayConnector>();
  for (const hardware of options.connectors) {
    if (byNumber.has(hardware.connector)) throw new RangeError(`connector ${hardware.connector} given twice`);
    byNumber.set(hardware.connector, new RelayConnector(hardware, options.timers, options.timing, emit));
  }
  const connectors = Object.freeze([...byNumber.keys()]);
  let closed = false;

  function connectorOf(connector: number): RelayConnector {
    const found = byNumber.get(connector);
    if (!found)
      throw new RelayPileError('unknown-connector', connector, `this driver has no connector ${connector}`);
    if (closed) throw new RelayPileError('faulted', connector, 'relay pile driver is closed');
    return found;
  }

  const pollAll = async () => {
    await Promise.all([...byNumber.values()].map((c) => c.poll()));
  };
  const stopPolling =
    options.pollMs > 0 ? repeat(options.timers, options.pollMs, pollAll, onError) : () => {};

  return {
    connectors,
    poll: pollAll,
    faultDetail: (connector) => connectorOf(connector).faultDetail,
    async read(connector): Promise<ConnectorReading> {
      const c = connectorOf(connector);
      const reading = (await c.poll()) ?? c.reading();
      if (!reading) {
        throw new RelayPileError(
          'meter-unavailable',
          connector,
          `connector ${connector}: meter has not answered yet`,
        );
      }
      return reading;
    },
    async start(connector, limits) {
      const { maxEnergyWh } = limits;
      if (maxEnergyWh !== undefined && (!Number.isSafeInteger(maxEnergyWh) || maxEnergyWh <= 0)) {
        throw new RangeError('maxEnergyWh must be a positive integer (Wh)');
      }
      const c = connectorOf(connector);
      await c.poll(); // the rules see the present state before the enable goes on
      c.start(maxEnergyWh);
    },
    async stop(connector) {
      await connectorOf(connector).stop();
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    /** Switches every connector off, waits (bounded) for each feedback to open, releases the hardware. */
    async close() {
      if (closed) return;
      closed = true;
      stopPolling();
      const results = await Promise.allSettled([...byNumber.values()].map((c) => c.stop()));
      listeners.clear();
      await options.release();
      for (const result of results) if (result.status === 'rejected') onError(result.reason);
    },
  };
}
