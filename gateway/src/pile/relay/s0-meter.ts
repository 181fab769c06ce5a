/**
 * An EnergyMeter from S0 pulses (EN 62053-31: an opto output that closes for ≥ 30 ms per pulse)
 * counted on a GPIO input. node-libgpiod 0.5.x has no edge-event reading, so the input is
 * sampled every `sampleMs` (default 10 ms, well under the 30 ms minimum pulse) and each
 * inactive→active transition is one pulse.
 *
 * The register is `initialWh + ⌊pulses × 1000 / pulsesPerKwh⌋` (set `initialWh` to the meter's
 * display at commissioning so both agree). Power is estimated from the time between pulses.
 *
 * **Not billable where the law requires a verified meter**: the count lives in this process, a
 * pulse missed by the sampler is energy nobody pays for, and nothing signs it. Use a Modbus MID
 * meter where billing must be legally verified.
 *
 * Restarts: receipts must show registers that never run backwards per meter id, so the count is
 * persisted *ahead*: the store holds a reserved pulse count R above the count, raised to
 * count + step (asynchronously, fsync'd) whenever the count comes within half a step of R. A
 * crash resumes at R — never below a register already reported, at most `reserveStepWh` above
 * it; a clean `close()` stores the exact count, so only crashes move the register ahead of the
 * meter's display. The price of that rule: a session that the gateway's recovery closes after a
 * crash may include up to one step of energy that was not delivered. Keep the step small
 * (default 20 Wh).
 * @module
 */

import { readFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { type PileTimers, repeat } from '../timers.ts';
import type { InputLine } from './gpio.ts';
import { type EnergyMeter, MeterError, type MeterSample } from './meter.ts';

/** What survives a restart. */
export interface S0State {
  readonly meterId: string;
  readonly pulsesPerKwh: number;
  readonly initialWh: number;
  /** Pulses reserved: the count resumes here after a restart. */
  readonly reservedPulses: number;
}

export interface S0Store {
  load(): S0State | undefined;
  save(state: S0State): Promise<void>;
}

/** A JSON file written atomically (temp file, fsync, rename). */
export function createFileS0Store(path: string): S0Store {
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new MeterError('state', `cannot read S0 state ${path}: ${(error as Error).message}`);
      }
      let state: Partial<S0State>;
      try {
        state = JSON.parse(text) as Partial<S0State>;
      } catch {
        throw new MeterError('state', `S0 state ${path} is not valid JSON`);
      }
      const ok =
        typeof state.meterId === 'string' &&
        Number.isSafeInteger(state.pulsesPerKwh) &&
        Number.isSafeInteger(state.initialWh) &&
        Number.isSafeInteger(state.reservedPulses) &&
        (state.reservedPulses as number) >= 0;
      if (!ok) throw new MeterError('state', `S0 state ${path} has missing or invalid fields`);
      return state as S0State;
    },
    async save(state) {
      const temp = `${path}.tmp`;
      const file = await open(temp, 'w', 0o600);
      try {
        await file.writeFile(`${JSON.stringify(state)}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path);
    },
  };
}

export interface S0MeterOptions {
  readonly input: InputLine;
  readonly meterId: string;
  readonly pulsesPerKwh: number;
  /** Register value at pulse count 0, Wh. */
  readonly initialWh: number;
  readonly store: S0Store;
  readonly timers: PileTimers;
  /** Input sampling period, ms (default 10). */
  readonly sampleMs?: number;
  /** How far ahead the persisted count runs, Wh (default 20). */
  readonly reserveStepWh?: number;
  /** A persist or a line read that failed (the count keeps going; the next raise retries). */
  readonly onError?: (error: unknown) => void;
}

/** Counts S0 pulses; `read()` never fails (an S0 output cannot tell silence from no load). */
export interface S0Meter extends EnergyMeter {
  /** Pulses counted since the count began (including the reserve taken at the last start). */
  readonly pulses: number;
}

/** W from a pulse interval: each pulse is 1000/ppk Wh; W = Wh × 3 600 000 / ms. */
export function s0PowerW(pulsesPerKwh: number, intervalMs: number): number {
  if (!(intervalMs > 0)) return 0;
  return Math.round(((1000 / pulsesPerKwh) * 3_600_000) / intervalMs);
}

/** Beyond this without a pulse, power reads 0 (at 1000 imp/kWh: below 12 W). */
const POWER_IDLE_MS = 300_000;

export function createS0Meter(options: S0MeterOptions): S0Meter {
  const { pulsesPerKwh, initialWh, meterId, store, timers } = options;
  const stepPulses = Math.max(1, Math.ceil(((options.reserveStepWh ?? 20) * pulsesPerKwh) / 1000));
  const saved = store.load();
  if (
    saved &&
    (saved.meterId !== meterId || saved.pulsesPerKwh !== pulsesPerKwh || saved.initialWh !== initialWh)
  ) {
    throw new MeterError(
      'state',
      `S0 state belongs to meter ${saved.meterId} (${saved.pulsesPerKwh} imp/kWh from ${saved.initialWh} Wh) ` +
        `but the config says ${meterId} (${pulsesPerKwh} imp/kWh from ${initialWh} Wh); ` +
        'move the state file away to start a new count',
    );
  }
  let pulses = saved?.reservedPulses ?? 0;
  let reserved = pulses;
  let saving: Promise<void> = Promise.resolve();
  const persist = (reservedPulses: number) => {
    saving = saving
      .then(() => store.save({ meterId, pulsesPerKwh, initialWh, reservedPulses }))
      .catch((error: unknown) => options.onError?.(error));
    return saving;
  };
  const reserve = () => {
    reserved = pulses + stepPulses;
    void persist(reserved);
  };
  reserve();

  let wasActive = options.input.isActive();
  let lastPulseAt: number | undefined;
  let lastIntervalMs: number | undefined;
  const stopSampling = repeat(
    timers,
    options.sampleMs ?? 10,
    () => {
      const active = options.input.isActive();
      if (active && !wasActive) {
        const now = timers.now();
        if (lastPulseAt !== undefined) lastIntervalMs = now - lastPulseAt;
        lastPulseAt = now;
        pulses += 1;
        if (pulses >= reserved - stepPulses / 2) reserve();
      }
      wasActive = active;
    },
    (error) => options.onError?.(error),
  );
  let closed = false;

  const powerW = (): number => {
    if (lastPulseAt === undefined || lastIntervalMs === undefined) return 0;
    const since = timers.now() - lastPulseAt;
    if (since > POWER_IDLE_MS) return 0;
    return s0PowerW(pulsesPerKwh, Math.max(lastIntervalMs, since));
  };

  return {
    meterId,
    get pulses() {
      return pulses;
    },
    async read(): Promise<MeterSample> {
      return { energyWh: initialWh + Math.floor((pulses * 1000) / pulsesPerKwh), powerW: powerW() };
    },
    /** Stops counting and stores the exact count (a clean restart resumes where it left off). */
    async close() {
      if (closed) return;
      closed = true;
      stopSampling();
      await persist(pulses);
    },
  };
}
