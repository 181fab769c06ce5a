/**
 * An in-memory PileDriver for fast gateway unit tests: connectors with a contactor, a plug,
 * a fault flag and a meter the test advances by hand (`deliver`). Records every command.
 */

import type { ConnectorReading, PileDriver, PileEvent } from '../../../gateway/src/contracts.ts';

interface FakeConnector {
  contactorOn: boolean;
  /** Meter register at which the pile opens its contactor by itself (the session cap). */
  stopAtWh: number | undefined;
  plugged: boolean | undefined;
  faulted: boolean;
  meterWh: number;
  refuseStart: boolean;
}

export class FakePile implements PileDriver {
  readonly connectors: readonly number[];
  readonly commands: string[] = [];
  readonly #state = new Map<number, FakeConnector>();
  readonly #listeners = new Set<(event: PileEvent) => void>();

  constructor(connectors: readonly number[] = [1, 2], initial: Partial<FakeConnector> = {}) {
    this.connectors = connectors;
    for (const c of connectors) {
      this.#state.set(c, {
        contactorOn: false,
        stopAtWh: undefined,
        plugged: true,
        faulted: false,
        meterWh: 1_000_000 + c * 10_000,
        refuseStart: false,
        ...initial,
      });
    }
  }

  connector(c: number): FakeConnector {
    const s = this.#state.get(c);
    if (!s) throw new Error(`no connector ${c}`);
    return s;
  }

  #reading(c: number): ConnectorReading {
    const s = this.connector(c);
    return {
      connector: c,
      contactorOn: s.contactorOn,
      plugged: s.plugged,
      faulted: s.faulted,
      meterWh: s.meterWh,
      meterId: `FAKE-${c}`,
      powerW: s.contactorOn ? 7_000 : 0,
    };
  }

  async read(c: number): Promise<ConnectorReading> {
    return this.#reading(c);
  }

  async start(c: number, limits: { readonly maxEnergyWh?: number }): Promise<void> {
    this.commands.push(`start ${c} max=${limits.maxEnergyWh}`);
    const s = this.connector(c);
    if (s.refuseStart || s.faulted) throw new Error('pile refused to start');
    s.contactorOn = true;
    s.stopAtWh = limits.maxEnergyWh === undefined ? undefined : s.meterWh + limits.maxEnergyWh;
    this.#emit({ kind: 'reading', reading: this.#reading(c) });
  }

  async stop(c: number): Promise<void> {
    this.commands.push(`stop ${c}`);
    this.connector(c).contactorOn = false;
    this.#emit({ kind: 'reading', reading: this.#reading(c) });
  }

  /** Energy flows (only while the contactor is on and a vehicle is plugged in). */
  deliver(c: number, wh: number): void {
    const s = this.connector(c);
    if (s.contactorOn && s.plugged !== false && !s.faulted) {
      s.meterWh = Math.min(s.meterWh + wh, s.stopAtWh ?? Number.MAX_SAFE_INTEGER);
      if (s.meterWh === s.stopAtWh) s.contactorOn = false; // the pile enforces the cap itself
    }
    this.#emit({ kind: 'reading', reading: this.#reading(c) });
  }

  unplug(c: number): void {
    this.connector(c).plugged = false;
    this.connector(c).contactorOn = false;
    this.#emit({ kind: 'unplugged', connector: c });
  }

  fault(c: number): void {
    const s = this.connector(c);
    s.faulted = true;
    s.contactorOn = false;
    this.#emit({ kind: 'fault', connector: c, detail: 'test fault' });
  }

  onEvent(listener: (event: PileEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }

  #emit(event: PileEvent): void {
    for (const l of [...this.#listeners]) l(event);
  }
}
