/**
 * One connector of a relay-enabled EVSE: the rules that turn GPIO levels and meter samples into
 * readings, events and switching decisions. No I/O of its own — it drives the lines and meter it
 * is given, on the timers it is given, so every rule is tested on virtual time.
 *
 * Rules (each fault switches the enable off before it is reported):
 * - **welded**: the enable is off but the contactor feedback is still closed `contactorOpenMs`
 *   after it was released (also at start-up) → latched fault "contactor welded"; `stop` rejects.
 * - **feedback mismatch**: the feedback is open but the meter shows more than `mismatchPowerW`
 *   for longer than `mismatchGraceMs` (feedback wiring broken, or a contact bypassed) → latched.
 * - **meter silent**: no good meter sample for `meterSilentMs` → fault until the meter answers
 *   again (energy cannot be billed, so nothing may flow).
 * - **EVSE error**: the controller's error output (optional input) is active → fault while it is.
 * - **unplug**: the plug input (optional) goes from plugged to unplugged → enable off, `unplugged`.
 * - **energy cap**: the register reaches start + `maxEnergyWh` → enable off (a second barrier;
 *   the charging logic enforces the cap too).
 * Weld and mismatch faults are latched: they clear only with a new process (after someone has
 * looked at the hardware). Meter and EVSE faults clear when their cause does.
 * @module
 */

import type { ConnectorReading, PileEvent } from '../../contracts.ts';
import { type PileTimers, sleep } from '../timers.ts';
import type { InputLine, OutputLine } from './gpio.ts';
import type { EnergyMeter, MeterSample } from './meter.ts';

export interface RelayTiming {
  /** After the enable is released the contactor feedback must open within this, ms. */
  readonly contactorOpenMs: number;
  /** A meter with no good sample for this long is a fault, ms. */
  readonly meterSilentMs: number;
  /** Power above this while the feedback is open is a mismatch, W. */
  readonly mismatchPowerW: number;
  /** …once it has lasted this long (meters average power over about a second), ms. */
  readonly mismatchGraceMs: number;
  /** How often `stop` looks at the feedback while waiting for it to open, ms. */
  readonly feedbackPollMs: number;
}

export interface RelayConnectorHardware {
  readonly connector: number;
  readonly enable: OutputLine;
  /** Auxiliary contact of the contactor: active = closed. */
  readonly feedback: InputLine;
  /** Vehicle plugged (from the EVSE controller), when it reports it. */
  readonly plug?: InputLine | undefined;
  /** The EVSE controller's error output, when it has one. */
  readonly evseError?: InputLine | undefined;
  readonly meter: EnergyMeter;
  /** Whether meter silence is detectable (Modbus yes; S0 cannot tell silence from no load). */
  readonly meterCanFallSilent: boolean;
}

export type RelayPileErrorCode =
  | 'faulted'
  | 'unplugged'
  | 'meter-unavailable'
  | 'welded'
  | 'unknown-connector';

/** A command the relay pile refuses or cannot confirm. */
export class RelayPileError extends Error {
  readonly code: RelayPileErrorCode;
  readonly connector: number;
  constructor(code: RelayPileErrorCode, connector: number, message: string) {
    super(message);
    this.name = 'RelayPileError';
    this.code = code;
    this.connector = connector;
  }
}

export class RelayConnector {
  readonly connector: number;
  readonly #hw: RelayConnectorHardware;
  readonly #timers: PileTimers;
  readonly #timing: RelayTiming;
  readonly #emit: (event: PileEvent) => void;

  #enabled = false;
  /** Monotonic ms since which the enable has been off (start-up counts as a release). */
  #disabledAt: number;
  #capWh: number | undefined;
  #feedbackClosed = false;
  #plugged: boolean | undefined;
  #sample: MeterSample | undefined;
  #lastSampleAt: number;
  #mismatchSince: number | undefined;
  #weldFault: string | undefined;
  #mismatchFault: string | undefined;
  #meterFault: string | undefined;
  #evseFault: string | undefined;
  #polling: Promise<ConnectorReading | undefined> | undefined;

  constructor(
    hardware: RelayConnectorHardware,
    timers: PileTimers,
    timing: RelayTiming,
    emit: (event: PileEvent) => void,
  ) {
    this.connector = hardware.connector;
    this.#hw = hardware;
    this.#timers = timers;
    this.#timing = timing;
    this.#emit = emit;
    hardware.enable.set(false);
    this.#disabledAt = timers.now();
    this.#lastSampleAt = timers.now();
    this.#feedbackClosed = hardware.feedback.isActive();
    this.#plugged = hardware.plug?.isActive();
  }

  get faulted(): boolean {
    return this.faultDetail !== undefined;
  }

  /** Why the connector is faulted, if it is (latched first). */
  get faultDetail(): string | undefined {
    return this.#weldFault ?? this.#mismatchFault ?? this.#evseFault ?? this.#meterFault;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** The reading from the last poll, or undefined before the meter has answered once. */
  reading(): ConnectorReading | undefined {
    if (!this.#sample) return undefined;
    return {
      connector: this.connector,
      contactorOn: this.#feedbackClosed,
      plugged: this.#plugged,
      faulted: this.faulted,
      meterWh: this.#sample.energyWh,
      meterId: this.#hw.meter.meterId,
      powerW: this.#sample.powerW,
    };
  }

  /** Samples lines and meter and applies every rule; concurrent calls share one poll. */
  poll(): Promise<ConnectorReading | undefined> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #poll(): Promise<ConnectorReading | undefined> {
    let meterError: unknown;
    try {
      const sample = await this.#hw.meter.read();
      this.#sample = sample;
      this.#lastSampleAt = this.#timers.now();
    } catch (error) {
      meterError = error;
    }
    const now = this.#timers.now();
    this.#feedbackClosed = this.#hw.feedback.isActive();
    const plugged = this.#hw.plug?.isActive();
    const wasPlugged = this.#plugged;
    this.#plugged = plugged;
    const evseError = this.#hw.evseError?.isActive() ?? false;

    if (meterError === undefined) this.#meterFault = undefined;
    else if (
      this.#hw.meterCanFallSilent &&
      this.#meterFault === undefined &&
      now - this.#lastSampleAt >= this.#timing.meterSilentMs
    ) {
      const why = meterError instanceof Error ? meterError.message : String(meterError);
      this.#meterFault = `meter ${this.#hw.meter.meterId} silent for ${Math.round(now - this.#lastSampleAt)} ms (${why})`;
      this.#fault(this.#meterFault);
    }

    if (!evseError) this.#evseFault = undefined;
    else if (this.#evseFault === undefined) {
      this.#evseFault = 'EVSE controller reports an error';
      this.#fault(this.#evseFault);
    }

    this.#checkWeld(now);

    const sample = this.#sample;
    const freshSample = meterError === undefined && sample !== undefined;
    if (!this.#feedbackClosed && freshSample && sample.powerW > this.#timing.mismatchPowerW) {
      this.#mismatchSince ??= now;
      if (this.#mismatchFault === undefined && now - this.#mismatchSince >= this.#timing.mismatchGraceMs) {
        this.#mismatchFault = `feedback mismatch: contactor feedback open but the meter shows ${sample.powerW} W`;
        this.#fault(this.#mismatchFault);
      }
    } else if (freshSample) this.#mismatchSince = undefined;

    if (wasPlugged === true && plugged === false) {
      this.#switchOff();
      this.#emit({ kind: 'unplugged', connector: this.connector });
    }

    if (this.#enabled && this.#capWh !== undefined && sample && sample.energyWh >= this.#capWh)
      this.#switchOff();

    const reading = this.reading();
    if (reading) this.#emit({ kind: 'reading', reading });
    return reading;
  }

  /** Latches the weld fault when the feedback stayed closed too long after release; true if welded. */
  #checkWeld(now: number): boolean {
    if (this.#enabled || !this.#feedbackClosed) return false;
    const closedFor = now - this.#disabledAt;
    if (closedFor < this.#timing.contactorOpenMs) return false;
    if (this.#weldFault === undefined) {
      this.#weldFault = `contactor welded: feedback still closed ${Math.round(closedFor)} ms after the enable was released`;
      this.#emit({ kind: 'fault', connector: this.connector, detail: this.#weldFault });
    }
    return true;
  }

  #fault(detail: string): void {
    this.#switchOff();
    this.#emit({ kind: 'fault', connector: this.connector, detail });
  }

  #switchOff(): void {
    this.#hw.enable.set(false);
    this.#capWh = undefined;
    if (!this.#enabled) return;
    this.#enabled = false;
    this.#disabledAt = this.#timers.now();
  }

  /** Energises the enable; the EVSE closes its contactor when the vehicle asks for energy. */
  start(maxEnergyWh: number | undefined): void {
    const fault = this.faultDetail;
    if (fault !== undefined)
      throw new RelayPileError('faulted', this.connector, `connector ${this.connector}: ${fault}`);
    if (this.#plugged === false) {
      throw new RelayPileError(
        'unplugged',
        this.connector,
        `connector ${this.connector}: no vehicle plugged in`,
      );
    }
    const sample = this.#sample;
    if (!sample) {
      throw new RelayPileError(
        'meter-unavailable',
        this.connector,
        `connector ${this.connector}: meter not read yet`,
      );
    }
    this.#capWh = maxEnergyWh === undefined ? undefined : sample.energyWh + maxEnergyWh;
    this.#enabled = true;
    this.#hw.enable.set(true);
  }

  /**
   * Releases the enable and waits for the feedback to open. Past `contactorOpenMs` without it the
   * connector is latched faulted ("contactor welded") and this rejects.
   */
  async stop(): Promise<void> {
    this.#switchOff();
    for (;;) {
      this.#feedbackClosed = this.#hw.feedback.isActive();
      if (!this.#feedbackClosed) return;
      if (this.#checkWeld(this.#timers.now())) {
        throw new RelayPileError('welded', this.connector, `connector ${this.connector}: ${this.#weldFault}`);
      }
      await sleep(this.#timers, this.#timing.feedbackPollMs);
    }
  }
}
