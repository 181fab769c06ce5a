/**
 * PileDriver for the simulated pile (sim-pile.ts, a separate process) over its Unix socket, and
 * a small controller for tests and the demo that plays the vehicle and the hardware (plug,
 * unplug, fault, clear fault, inspect state). The charging logic sees the same driver contract
 * as with real piles, so its recovery can be tested against a pile that outlived the gateway.
 *
 * Switching off: `stop` opens the contactor and the pile itself opens it on fault, unplug and
 * reached energy cap. `close()` only ends the socket and deliberately leaves the contactor as
 * it is — unlike the PileDriver contract's default for hardware drivers. The gateway closes its
 * driver on every shutdown, including a restart in the middle of a paid session; whether that
 * session continues or the connector is switched off is decided by the gateway's start-up
 * recovery (which sees the ledger's open sessions), and a crash never gets to call close()
 * anyway, so the recovery has to make that decision regardless. A lost link is reported as
 * `connection-lost`; the sim pile keeps its state, as hardware without a link watchdog would.
 * @module
 */

import type { ConnectorReading, PileDriver, PileEvent } from '../contracts.ts';
import { connectSimPile, type SimConnection, SimPileLinkError } from './sim-client.ts';
import {
  type SimEvent,
  type SimPileState,
  toConnectorReading,
  toSimPileState,
  type WireReading,
} from './sim-protocol.ts';

export { SimPileLinkError, SimPileRequestError } from './sim-client.ts';

const DEFAULT_REQUEST_TIMEOUT_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

export interface SimPileDriverOptions {
  readonly socketPath: string;
  /** Connectors this driver serves; each must exist in the sim pile. */
  readonly connectors: readonly number[];
  /** Per request, monotonic ms (default 2000). */
  readonly requestTimeoutMs?: number;
  /** How long to retry connecting while the pile starts, monotonic ms (default 5000). */
  readonly connectTimeoutMs?: number;
  /** Where exceptions thrown by event listeners go (default console.error); they never stop delivery. */
  readonly onListenerError?: (error: unknown) => void;
}

function protocolError(what: string): SimPileLinkError {
  return new SimPileLinkError('protocol', `sim pile sent an invalid ${what}`);
}

async function fetchState(connection: SimConnection, timeoutMs: number): Promise<SimPileState> {
  const body = await connection.request({ op: 'state' }, timeoutMs);
  const state = toSimPileState(body.state);
  if (state === undefined) throw protocolError('state');
  return state;
}

/**
 * Connects (retrying until connectTimeoutMs while the pile starts), checks that the pile has the
 * requested connectors, and returns the driver.
 */
export async function createSimPileDriver(options: SimPileDriverOptions): Promise<PileDriver> {
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const onListenerError =
    options.onListenerError ?? ((error) => console.error('pile event listener:', error));
  const connectors = Object.freeze([...options.connectors]);
  if (connectors.length === 0) throw new RangeError('createSimPileDriver: at least one connector');

  const connection = await connectSimPile(options.socketPath, {
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  });
  try {
    const state = await fetchState(connection, requestTimeoutMs);
    const missing = connectors.filter((c) => !state.connectors.some((s) => s.connector === c));
    if (missing.length > 0) throw new RangeError(`sim pile has no connector ${missing.join(', ')}`);
  } catch (error) {
    await connection.close();
    throw error;
  }

  const listeners = new Set<(event: PileEvent) => void>();
  const emit = (event: PileEvent) => {
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (error) {
        onListenerError(error);
      }
    }
  };
  const toPileEvent = (event: SimEvent): PileEvent => {
    switch (event.event) {
      case 'reading':
        return { kind: 'reading', reading: event.reading };
      case 'unplugged':
        return { kind: 'unplugged', connector: event.connector };
      case 'fault':
        return { kind: 'fault', connector: event.connector, detail: event.detail };
    }
  };
  connection.onEvent((event) => {
    const connector = event.event === 'reading' ? event.reading.connector : event.connector;
    if (connectors.includes(connector)) emit(toPileEvent(event));
  });
  connection.onClose((how) => {
    if (how === 'lost') emit({ kind: 'connection-lost' });
  });

  function checkConnector(connector: number): void {
    if (!connectors.includes(connector)) throw new RangeError(`this driver has no connector ${connector}`);
  }

  function readingOf(body: Record<string, unknown>, connector: number): ConnectorReading {
    const reading = toConnectorReading(body.reading);
    if (reading === undefined || reading.connector !== connector) throw protocolError('reading');
    return reading;
  }

  return {
    connectors,
    async read(connector) {
      checkConnector(connector);
      return readingOf(await connection.request({ op: 'read', connector }, requestTimeoutMs), connector);
    },
    async start(connector, limits) {
      checkConnector(connector);
      const { maxEnergyWh } = limits;
      if (maxEnergyWh !== undefined && (!Number.isSafeInteger(maxEnergyWh) || maxEnergyWh <= 0)) {
        throw new RangeError('maxEnergyWh must be a positive integer (Wh)');
      }
      await connection.request({ op: 'start', connector, maxEnergyWh }, requestTimeoutMs);
    },
    async stop(connector) {
      checkConnector(connector);
      await connection.request({ op: 'stop', connector }, requestTimeoutMs);
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    /** Ends the socket only; the contactor stays as it is (see the module comment for why). */
    async close() {
      listeners.clear();
      await connection.close();
    },
  };
}

// ---- controller for tests and the demo --------------------------------------------------------

/** Plays the vehicle and the hardware against a running sim pile. */
export interface SimPileControl {
  plug(connector: number): Promise<WireReading>;
  unplug(connector: number): Promise<WireReading>;
  fault(connector: number, detail?: string): Promise<WireReading>;
  clearFault(connector: number): Promise<WireReading>;
  read(connector: number): Promise<WireReading>;
  state(): Promise<SimPileState>;
  /** Raw pushed events (readings, unplugged, fault) for every connector. */
  onEvent(listener: (event: SimEvent) => void): () => void;
  close(): Promise<void>;
}

export async function createSimPileControl(
  socketPath: string,
  options: { readonly connectTimeoutMs?: number; readonly requestTimeoutMs?: number } = {},
): Promise<SimPileControl> {
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const connection = await connectSimPile(socketPath, {
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  });
  const act = async (
    op: 'plug' | 'unplug' | 'fault' | 'clear-fault' | 'read',
    connector: number,
    detail?: string,
  ): Promise<WireReading> => {
    const body = await connection.request({ op, connector, detail }, timeoutMs);
    const reading = toConnectorReading(body.reading);
    if (reading === undefined) throw protocolError('reading');
    return reading as WireReading;
  };
  return {
    plug: (connector) => act('plug', connector),
    unplug: (connector) => act('unplug', connector),
    fault: (connector, detail) => act('fault', connector, detail),
    clearFault: (connector) => act('clear-fault', connector),
    read: (connector) => act('read', connector),
    state: () => fetchState(connection, timeoutMs),
    onEvent: (listener) => connection.onEvent(listener),
    close: () => connection.close(),
  };
}
