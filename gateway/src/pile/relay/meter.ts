/**
 * The energy meter of one relay-switched connector, as the relay driver sees it: a register in
 * integer Wh that never runs backwards and the present power in W. Two implementations: a
 * Modbus RTU/TCP meter (`modbus-meter.ts`) and an S0 pulse counter (`s0-meter.ts`).
 * @module
 */

export interface MeterSample {
  /** Total import register, integer Wh. */
  readonly energyWh: number;
  /** Present active power, integer W (negative values are reported as 0: this is an import meter). */
  readonly powerW: number;
}

export interface EnergyMeter {
  /** What receipts name the meter by (its serial number, as printed on it). */
  readonly meterId: string;
  /** Reads the meter now; rejects with MeterError when it does not answer or answers nonsense. */
  read(): Promise<MeterSample>;
  close(): Promise<void>;
}

export type MeterErrorCode = 'timeout' | 'bus' | 'exception' | 'implausible' | 'state';

/** A meter read that produced no usable value, or a meter that cannot be set up. */
export class MeterError extends Error {
  readonly code: MeterErrorCode;
  constructor(code: MeterErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeterError';
    this.code = code;
  }
}
