/**
 * GpioLines on the Linux GPIO character device through npm `node-libgpiod` 0.5.3, a binding to
 * **libgpiod 1.x** (it does not build against libgpiod 2.x). Raspberry Pi OS *bookworm* (Debian
 * 12) pins libgpiod 1.6.3 (packages `libgpiod2`, `libgpiod-dev`, `gpiod`); *trixie* (Debian 13)
 * moved to libgpiod 2.x, which this binding cannot use.
 *
 * The module is an optional dependency loaded on first use (dynamic import), so a gateway that
 * drives no GPIO runs without it; when it is missing or its native part fails to load, the
 * error is a `GpioError('unavailable')` saying what to install.
 *
 * Safety: outputs are requested with their inactive level as the request's default value, so
 * the enable relay never glitches on. When this process exits, a synchronous `exit` hook drives
 * every output inactive before the kernel releases the lines; a crash, SIGKILL or power loss
 * skips the hook, which is why the enable input must be pulled to its inactive level in hardware
 * (see ../README.md).
 * @module
 */

import {
  GpioError,
  type GpioLines,
  type InputLine,
  type InputLineSpec,
  type LineSpec,
  type OutputLine,
} from './gpio.ts';

/** The parts of node-libgpiod 0.5.x this layer uses (its own typings mistype the flag bitmask). */
export interface LibgpiodModule {
  readonly Chip: new (device: string) => unknown;
  readonly Line: new (chip: unknown, offset: number) => LibgpiodLine;
}

export interface LibgpiodLine {
  getValue(): number;
  setValue(value: number): void;
  requestOutputModeFlags(consumer: string, flags: number, defaultValue: number): void;
  requestInputModeFlags(consumer: string, flags: number): void;
  release(): void;
}

/** gpiod_line_request_flags of libgpiod 1.x (gpiod.h). */
const REQUEST_FLAG_ACTIVE_LOW = 1 << 2;
const REQUEST_FLAG_BIAS_DISABLE = 1 << 3;
const REQUEST_FLAG_BIAS_PULL_DOWN = 1 << 4;
const REQUEST_FLAG_BIAS_PULL_UP = 1 << 5;

const BIAS_FLAGS: Readonly<Record<InputLineSpec['bias'], number>> = {
  'as-is': 0,
  disable: REQUEST_FLAG_BIAS_DISABLE,
  'pull-down': REQUEST_FLAG_BIAS_PULL_DOWN,
  'pull-up': REQUEST_FLAG_BIAS_PULL_UP,
};

/** Loads node-libgpiod, or throws GpioError('unavailable') naming what is missing. */
export async function loadLibgpiod(): Promise<LibgpiodModule> {
  let loaded: unknown;
  // A variable specifier: the optional module may be absent, and type-checking must not need it.
  const specifier = 'node-libgpiod';
  try {
    loaded = await import(specifier);
  } catch (error) {
    throw new GpioError(
      'unavailable',
      'GPIO unavailable: npm optional dependency node-libgpiod (0.5.3) is not installed or its native ' +
        'addon did not load; it needs libgpiod 1.x (Raspberry Pi OS bookworm: apt-get install ' +
        `libgpiod-dev gpiod build-essential, then npm install) — ${(error as Error).message}`,
      { cause: error },
    );
  }
  const mod = ((loaded as { default?: unknown }).default ?? loaded) as Partial<LibgpiodModule>;
  if (typeof mod.Chip !== 'function' || typeof mod.Line !== 'function') {
    throw new GpioError('unavailable', 'GPIO unavailable: node-libgpiod has no Chip/Line classes');
  }
  return mod as LibgpiodModule;
}

function lineFlags(spec: LineSpec): number {
  return spec.activeLow ? REQUEST_FLAG_ACTIVE_LOW : 0;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Opens the chip (`gpiochip0`, a number, a path or a label, as libgpiod's chip lookup accepts)
 * and returns the line layer. `module` is injectable for tests; default: `loadLibgpiod()`.
 */
export async function openLibgpiodLines(
  chipName: string,
  module?: LibgpiodModule,
  processHooks: Pick<NodeJS.Process, 'once' | 'removeListener'> = process,
): Promise<GpioLines> {
  const gpiod = module ?? (await loadLibgpiod());
  let chip: unknown;
  try {
    chip = new gpiod.Chip(chipName);
  } catch (error) {
    throw new GpioError('chip', `cannot open GPIO chip ${chipName}: ${errorText(error)}`, { cause: error });
  }
  const outputs = new Set<LibgpiodLine>();
  const held = new Set<LibgpiodLine>();
  const driveAllInactive = () => {
    for (const line of outputs) {
      try {
        line.setValue(0);
      } catch {
        // The process is ending; the hardware pull takes over for any line we cannot drive.
      }
    }
  };
  processHooks.once('exit', driveAllInactive);
  let closed = false;

  function request(offset: number, how: (line: LibgpiodLine) => void): LibgpiodLine {
    if (closed) throw new GpioError('line', 'GPIO layer is closed');
    let line: LibgpiodLine;
    try {
      line = new gpiod.Line(chip, offset);
      how(line);
    } catch (error) {
      throw new GpioError('line', `cannot request GPIO line ${offset} on ${chipName}: ${errorText(error)}`, {
        cause: error,
      });
    }
    held.add(line);
    return line;
  }

  function releaseLine(line: LibgpiodLine): void {
    if (!held.delete(line)) return;
    outputs.delete(line);
    line.release();
  }

  return {
    requestOutput(spec: LineSpec, consumer: string): OutputLine {
      const line = request(spec.line, (l) => l.requestOutputModeFlags(consumer, lineFlags(spec), 0));
      outputs.add(line);
      return {
        set: (active) => line.setValue(active ? 1 : 0),
        release: () => {
          line.setValue(0);
          releaseLine(line);
        },
      };
    },
    requestInput(spec: InputLineSpec, consumer: string): InputLine {
      const line = request(spec.line, (l) =>
        l.requestInputModeFlags(consumer, lineFlags(spec) | BIAS_FLAGS[spec.bias]),
      );
      return {
        isActive: () => line.getValue() === 1,
        release: () => releaseLine(line),
      };
    },
    close() {
      if (closed) return;
      closed = true;
      driveAllInactive();
      for (const line of [...held]) releaseLine(line);
      processHooks.removeListener('exit', driveAllInactive);
    },
  };
}
