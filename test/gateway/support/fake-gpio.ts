/**
 * A fake of the relay driver's GPIO line layer (this kernel has no GPIO): lines hold logical
 * levels, requests and releases are recorded, a line cannot be requested twice. `FakeContactor`
 * plays the EVSE's contactor on virtual time: its feedback input closes some ms after the enable
 * output goes active (when the vehicle asks for energy) and opens some ms after it goes inactive —
 * unless the test welds it.
 */

import {
  GpioError,
  type GpioLines,
  type InputLine,
  type LineSpec,
  type OutputLine,
} from '../../../gateway/src/pile/relay/gpio.ts';
import type { PileTimers, TimerHandle } from '../../../gateway/src/pile/timers.ts';

export class FakeGpio implements GpioLines {
  /** Logical level of every line (outputs as driven, inputs as the test sets them). */
  readonly levels = new Map<number, boolean>();
  readonly held = new Set<number>();
  readonly requested: {
    readonly line: number;
    readonly kind: 'output' | 'input';
    readonly spec: LineSpec;
  }[] = [];
  readonly released: number[] = [];
  closed = false;
  readonly #outputListeners = new Set<(line: number, active: boolean) => void>();

  onOutput(listener: (line: number, active: boolean) => void): void {
    this.#outputListeners.add(listener);
  }

  level(line: number): boolean {
    return this.levels.get(line) ?? false;
  }

  setInput(line: number, active: boolean): void {
    this.levels.set(line, active);
  }

  #take(spec: LineSpec, kind: 'output' | 'input'): void {
    if (this.closed) throw new GpioError('line', 'closed');
    if (this.held.has(spec.line)) throw new GpioError('line', `line ${spec.line} busy`);
    this.held.add(spec.line);
    this.requested.push({ line: spec.line, kind, spec });
  }

  #give(line: number): void {
    if (!this.held.delete(line)) throw new Error(`line ${line} released twice`);
    this.released.push(line);
  }

  requestOutput(spec: LineSpec): OutputLine {
    this.#take(spec, 'output');
    const drive = (active: boolean) => {
      if (!this.held.has(spec.line)) throw new GpioError('line', `line ${spec.line} not held`);
      this.levels.set(spec.line, active);
      for (const listener of this.#outputListeners) listener(spec.line, active);
    };
    drive(false);
    return {
      set: drive,
      release: () => {
        drive(false);
        this.#give(spec.line);
      },
    };
  }

  requestInput(spec: LineSpec): InputLine {
    this.#take(spec, 'input');
    return {
      isActive: () => {
        if (!this.held.has(spec.line)) throw new GpioError('line', `line ${spec.line} not held`);
        return this.level(spec.line);
      },
      release: () => this.#give(spec.line),
    };
  }

  close(): void {
    this.closed = true;
  }
}

export interface FakeContactorOptions {
  readonly enableLine: number;
  readonly feedbackLine: number;
  readonly closeDelayMs?: number;
  readonly openDelayMs?: number;
}

export class FakeContactor {
  /** The vehicle asks for energy (the EVSE closes only then). */
  vehicleWantsEnergy = true;
  /** The contacts are welded: the feedback stays closed whatever the enable does. */
  welded = false;
  readonly #gpio: FakeGpio;
  readonly #timers: PileTimers;
  readonly #options: FakeContactorOptions;
  #pending: TimerHandle | undefined;
  #enabled = false;

  constructor(gpio: FakeGpio, timers: PileTimers, options: FakeContactorOptions) {
    this.#gpio = gpio;
    this.#timers = timers;
    this.#options = options;
    gpio.onOutput((line, active) => {
      if (line === options.enableLine) this.#follow(active);
    });
  }

  get closed(): boolean {
    return this.#gpio.level(this.#options.feedbackLine);
  }

  #follow(enabled: boolean): void {
    if (enabled === this.#enabled) return;
    this.#enabled = enabled;
    if (this.#pending !== undefined) this.#timers.clearTimeout(this.#pending);
    const target = enabled && this.vehicleWantsEnergy;
    const delay = target ? (this.#options.closeDelayMs ?? 100) : (this.#options.openDelayMs ?? 50);
    this.#pending = this.#timers.setTimeout(() => {
      this.#pending = undefined;
      if (!target && this.welded) return;
      this.#gpio.setInput(this.#options.feedbackLine, target);
    }, delay);
  }
}
