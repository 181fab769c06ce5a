/**
 * The sim pile's behaviour without I/O: connectors with a contactor, a plug sensor, a fault
 * latch and an energy meter, driven by requests and by a monotonic clock. Kept apart from the
 * process (sim-pile.ts) so the physics can be checked with a fake clock.
 *
 * Rules, as a real EVSE behaves: the meter register advances only while contactorOn && plugged
 * && !faulted, at ratedPowerW × speed (speed compresses simulated time for tests); fractional Wh
 * are kept internally and the register shows integer Wh. `start` is refused while faulted, or
 * while unplugged when requirePlug is set. A fault, an unplug and a reached energy cap open the
 * contactor. Nothing here reacts to clients coming and going: the contactor stays as it is.
 * @module
 */

import type {
  SimConnectorState,
  SimErrorCode,
  SimEvent,
  SimPileState,
  SimRequest,
  SimResponse,
  WireReading,
} from './sim-protocol.ts';

const MS_PER_HOUR = 3_600_000;

/** Initial meter register of a connector that was never persisted. */
export function initialMeterWh(connector: number): number {
  return 1_000_000 + connector * 10_000;
}

export function simMeterId(connector: number): string {
  return `SIM-${connector}`;
}

/** What the process persists with --state: enough to resume after a restart. */
export interface PersistedConnector {
  readonly connector: number;
  readonly contactorOn: boolean;
  readonly plugged: boolean;
  readonly faulted: boolean;
  readonly faultDetail: string | null;
  /** Register with its fraction, Wh. */
  readonly meterWhExact: number;
  readonly stopAtWh: number | null;
}

export interface PersistedSimState {
  readonly version: 1;
  readonly connectors: readonly PersistedConnector[];
}

export interface SimModelOptions {
  readonly connectors: readonly number[];
  /** Power while delivering, integer W. */
  readonly ratedPowerW: number;
  /** Simulated-time multiplier (> 0). */
  readonly speed: number;
  readonly requirePlug: boolean;
  /** Connectors with a vehicle plugged in at first start (ignored for restored connectors). */
  readonly plugged: readonly number[];
  /** Monotonic milliseconds (performance.now in the process, a fake in tests). */
  readonly nowMs: () => number;
  readonly restored?: PersistedSimState | undefined;
}

export interface SimOutcome {
  /** The reply to the asker, without its id (the caller adds it). */
  readonly response: SimResponse;
  /** Events for every client, in order. */
  readonly events: readonly SimEvent[];
}

export interface SimPileModel {
  readonly connectors: readonly number[];
  handle(request: SimRequest, clients: number): SimOutcome;
  /** Advances the meters to now and returns one reading event per connector. */
  tick(): readonly SimEvent[];
  snapshot(): PersistedSimState;
  anyContactorOn(): boolean;
}

interface ConnectorSim {
  readonly connector: number;
  readonly meterId: string;
  contactorOn: boolean;
  plugged: boolean;
  faulted: boolean;
  faultDetail: string | null;
  meterWhExact: number;
  stopAtWh: number | null;
}

export function createSimPileModel(options: SimModelOptions): SimPileModel {
  const { ratedPowerW, speed, requirePlug, nowMs } = options;
  if (!Number.isSafeInteger(ratedPowerW) || ratedPowerW < 0)
    throw new RangeError('ratedPowerW: integer W ≥ 0');
  if (!(speed > 0) || !Number.isFinite(speed)) throw new RangeError('speed must be a positive number');
  if (options.connectors.length === 0) throw new RangeError('at least one connector');

  const byNumber = new Map<number, ConnectorSim>();
  for (const connector of options.connectors) {
    const saved = options.restored?.connectors.find((c) => c.connector === connector);
    byNumber.set(connector, {
      connector,
      meterId: simMeterId(connector),
      contactorOn: saved?.contactorOn ?? false,
      plugged: saved?.plugged ?? options.plugged.includes(connector),
      faulted: saved?.faulted ?? false,
      faultDetail: saved?.faultDetail ?? null,
      meterWhExact: Math.max(saved?.meterWhExact ?? 0, initialMeterWh(connector)),
      stopAtWh: saved?.stopAtWh ?? null,
    });
  }
  const sims = [...byNumber.values()];
  let lastAdvanceMs = nowMs();

  const delivering = (c: ConnectorSim) => c.contactorOn && c.plugged && !c.faulted;

  const reading = (c: ConnectorSim): WireReading => ({
    connector: c.connector,
    contactorOn: c.contactorOn,
    plugged: c.plugged,
    faulted: c.faulted,
    meterWh: Math.floor(c.meterWhExact),
    meterId: c.meterId,
    powerW: delivering(c) ? ratedPowerW : 0,
  });

  const connectorState = (c: ConnectorSim): SimConnectorState => ({
    ...reading(c),
    faultDetail: c.faultDetail,
    stopAtWh: c.stopAtWh,
  });

  /** Integrates energy up to now; returns the connectors whose cap opened the contactor. */
  function advance(): ConnectorSim[] {
    const now = nowMs();
    const elapsedMs = Math.max(0, now - lastAdvanceMs);
    lastAdvanceMs = now;
    const capped: ConnectorSim[] = [];
    for (const c of sims) {
      if (!delivering(c)) continue;
      const next = c.meterWhExact + (ratedPowerW * speed * elapsedMs) / MS_PER_HOUR;
      if (c.stopAtWh !== null && next >= c.stopAtWh) {
        c.meterWhExact = Math.max(c.meterWhExact, c.stopAtWh);
        c.contactorOn = false;
        c.stopAtWh = null;
        capped.push(c);
      } else {
        c.meterWhExact = next;
      }
    }
    return capped;
  }

  const fail = (code: SimErrorCode, error: string): SimOutcome => ({
    response: { id: null, ok: false, code, error },
    events: [],
  });

  function handle(request: SimRequest, clients: number): SimOutcome {
    const events: SimEvent[] = advance().map((c) => ({ event: 'reading', reading: reading(c) }));
    if (request.op === 'state') {
      const state: SimPileState = {
        connectors: sims.map(connectorState),
        ratedPowerW,
        speed,
        requirePlug,
        clients,
      };
      return { response: { id: null, ok: true, state }, events };
    }
    const c = request.connector === undefined ? undefined : byNumber.get(request.connector);
    if (c === undefined) return { ...fail('unknown-connector', `no connector ${request.connector}`), events };

    let changed = false;
    switch (request.op) {
      case 'read':
        break;
      case 'start':
        if (c.faulted) return { ...fail('faulted', `connector ${c.connector} is faulted`), events };
        if (requirePlug && !c.plugged) {
          return { ...fail('unplugged', `connector ${c.connector} has no vehicle plugged in`), events };
        }
        // A start while on keeps delivering and replaces the cap, counted from now.
        c.stopAtWh =
          request.maxEnergyWh === undefined ? null : Math.floor(c.meterWhExact) + request.maxEnergyWh;
        changed = !c.contactorOn || request.maxEnergyWh !== undefined;
        c.contactorOn = true;
        break;
      case 'stop':
        changed = c.contactorOn;
        c.contactorOn = false;
        c.stopAtWh = null;
        break;
      case 'plug':
        changed = !c.plugged;
        c.plugged = true;
        break;
      case 'unplug':
        if (c.plugged) {
          changed = true;
          c.plugged = false;
          c.contactorOn = false;
          c.stopAtWh = null;
          events.push({ event: 'unplugged', connector: c.connector });
        }
        break;
      case 'fault': {
        const detail = request.detail ?? 'simulated fault';
        changed = true;
        c.faulted = true;
        c.faultDetail = detail;
        c.contactorOn = false;
        c.stopAtWh = null;
        events.push({ event: 'fault', connector: c.connector, detail });
        break;
      }
      case 'clear-fault':
        changed = c.faulted;
        c.faulted = false;
        c.faultDetail = null;
        break;
    }
    const now = reading(c);
    if (changed) events.push({ event: 'reading', reading: now });
    return { response: { id: null, ok: true, reading: now }, events };
  }

  return {
    connectors: sims.map((c) => c.connector),
    handle,
    tick() {
      advance();
      return sims.map((c) => ({ event: 'reading', reading: reading(c) }));
    },
    snapshot() {
      advance();
      return {
        version: 1,
        connectors: sims.map((c) => ({
          connector: c.connector,
          contactorOn: c.contactorOn,
          plugged: c.plugged,
          faulted: c.faulted,
          faultDetail: c.faultDetail,
          meterWhExact: c.meterWhExact,
          stopAtWh: c.stopAtWh,
        })),
      };
    },
    anyContactorOn: () => sims.some((c) => c.contactorOn),
  };
}

/** Checks a persisted state file's content; undefined when it is not one. */
export function parsePersistedState(value: unknown): PersistedSimState | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  if (record.version !== 1 || !Array.isArray(record.connectors)) return undefined;
  const connectors: PersistedConnector[] = [];
  for (const item of record.connectors as unknown[]) {
    if (typeof item !== 'object' || item === null) return undefined;
    const c = item as Record<string, unknown>;
    if (
      typeof c.connector !== 'number' ||
      typeof c.contactorOn !== 'boolean' ||
      typeof c.plugged !== 'boolean' ||
      typeof c.faulted !== 'boolean' ||
      (c.faultDetail !== null && typeof c.faultDetail !== 'string') ||
      typeof c.meterWhExact !== 'number' ||
      !Number.isFinite(c.meterWhExact) ||
      (c.stopAtWh !== null && typeof c.stopAtWh !== 'number')
    ) {
      return undefined;
    }
    connectors.push({
      connector: c.connector,
      contactorOn: c.contactorOn,
      plugged: c.plugged,
      faulted: c.faulted,
      faultDetail: c.faultDetail as string | null,
      meterWhExact: c.meterWhExact,
      stopAtWh: c.stopAtWh as number | null,
    });
  }
  return { version: 1, connectors };
}
