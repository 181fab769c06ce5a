/**
 * The GPIO line layer the relay driver needs, as a small interface: request an output (driven
 * inactive at once), request an input, read/drive its *logical* level (active = the configured
 * active level, so `activeLow` is handled below this line), release. The real implementation is
 * libgpiod's character device (`libgpiod-lines.ts`); tests use a fake with a simulated contactor.
 * @module
 */

export type LineBias = 'as-is' | 'disable' | 'pull-up' | 'pull-down';

export interface LineSpec {
  /** Line offset on the chip (for the Raspberry Pi header: the BCM GPIO number). */
  readonly line: number;
  /** Active (logical 1) is the electrical low level. */
  readonly activeLow: boolean;
}

export interface InputLineSpec extends LineSpec {
  /** Internal bias; `as-is` leaves it to the external resistor (recommended on long wires). */
  readonly bias: LineBias;
}

export interface OutputLine {
  /** Drives the line to its active (true) or inactive (false) level. */
  set(active: boolean): void;
  /** Gives the line back to the kernel (on Raspberry Pi kernels it returns to input). */
  release(): void;
}

export interface InputLine {
  /** The line's logical level now. */
  isActive(): boolean;
  release(): void;
}

export interface GpioLines {
  /** Requests an output and drives it inactive in the same request (never a glitch to active). */
  requestOutput(spec: LineSpec, consumer: string): OutputLine;
  requestInput(spec: InputLineSpec, consumer: string): InputLine;
  /** Releases every line still held and the chip. */
  close(): void;
}

/**
 * The GPIO layer cannot be used (module missing, chip absent, line busy, permission), or must
 * not be: `persist` = this kernel keeps outputs driven after the process ends (see gpio-release.ts).
 */
export class GpioError extends Error {
  readonly code: 'unavailable' | 'chip' | 'line' | 'persist';
  constructor(code: GpioError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GpioError';
    this.code = code;
  }
}
