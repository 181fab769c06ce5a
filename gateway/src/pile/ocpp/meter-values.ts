/**
 * Turns OCPP 1.6 `MeterValues` (and `StopTransaction.transactionData`) into what the gateway
 * bills with: the energy register in integer Wh, present power in integer W, and the signed
 * meter data (e.g. OCMF) the pile attaches. Pure functions, no I/O.
 *
 * Rules, from the OCPP 1.6 `SampledValue` definition:
 * - `measurand` absent means `Energy.Active.Import.Register`; `unit` absent means Wh (energy)
 *   or W (power); `format` absent means Raw.
 * - Only the total counts: a value with a `phase` is a per-phase share and is skipped, as are
 *   values measured at the `EV` (they are the vehicle's, not the pile's meter).
 * - Energy is parsed as an exact decimal and rounded **down** to whole Wh (never bill a
 *   fraction that was not delivered); kWh is shifted by three digits, not multiplied as a
 *   float (1.001 kWh × 1000 in floating point is 1000.999…).
 * - `format: SignedData` values are opaque signed blobs (OCMF `OCMF|{…}|{…}` or the vendor's
 *   encoding); they are passed through as UTF-8 bytes, never parsed as numbers.
 * - With several `meterValue` entries the latest `timestamp` wins (ties: the later entry).
 * @module
 */

import type { MeterValue, SampledValue } from './messages.ts';

export const ENERGY_REGISTER = 'Energy.Active.Import.Register';
export const POWER_IMPORT = 'Power.Active.Import';

/** What one MeterValues message says about a connector; absent fields were not in it. */
export interface MeterSample {
  readonly energyWh?: number;
  readonly powerW?: number;
  /** The signed meter data string as sent (format SignedData). */
  readonly signedData?: string;
  /** Sampled values that could not be used, with the reason (for the log). */
  readonly skipped: readonly string[];
}

const DECIMAL = /^\+?(\d{1,18})(?:\.(\d{1,18}))?$/;

/** Whole units and the first `digits` fractional digits of a non-negative decimal string. */
function scaledDecimal(value: string, digits: number): { scaled: number; rest: string } | undefined {
  const match = DECIMAL.exec(value.trim());
  if (!match) return undefined;
  const whole = match[1]!;
  const fraction = (match[2] ?? '').padEnd(digits, '0');
  const scaled = Number(whole + fraction.slice(0, digits));
  if (!Number.isSafeInteger(scaled)) return undefined;
  return { scaled, rest: fraction.slice(digits) };
}

/** An energy register value in `unit` (Wh or kWh, default Wh) as integer Wh, rounded down. */
export function energyToWh(value: string, unit: string | undefined): number | undefined {
  const u = unit ?? 'Wh';
  if (u !== 'Wh' && u !== 'kWh') return undefined;
  return scaledDecimal(value, u === 'kWh' ? 3 : 0)?.scaled;
}

/** A power value in `unit` (W or kW, default W) as integer W, rounded half up. */
export function powerToW(value: string, unit: string | undefined): number | undefined {
  const u = unit ?? 'W';
  if (u !== 'W' && u !== 'kW') return undefined;
  const parsed = scaledDecimal(value, u === 'kW' ? 3 : 0);
  if (!parsed) return undefined;
  return parsed.scaled + ((parsed.rest[0] ?? '0') >= '5' ? 1 : 0);
}

function isTotal(sv: SampledValue): boolean {
  return sv.phase === undefined && sv.location !== 'EV';
}

function timeOf(mv: MeterValue): number {
  const t = Date.parse(mv.timestamp);
  return Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
}

/** Reads the register, power and signed data out of a MeterValues/transactionData array. */
export function readMeterValues(meterValues: readonly MeterValue[]): MeterSample {
  const ordered = meterValues
    .map((mv, index) => ({ mv, index }))
    .sort((a, b) => timeOf(a.mv) - timeOf(b.mv) || a.index - b.index);
  let energyWh: number | undefined;
  let powerW: number | undefined;
  let signedData: string | undefined;
  const skipped: string[] = [];
  for (const { mv } of ordered) {
    for (const sv of mv.sampledValue) {
      const measurand = sv.measurand ?? ENERGY_REGISTER;
      if (!isTotal(sv)) continue;
      if (sv.format === 'SignedData') {
        if (measurand === ENERGY_REGISTER && sv.value.length > 0) signedData = sv.value;
        continue;
      }
      if (measurand === ENERGY_REGISTER) {
        const wh = energyToWh(sv.value, sv.unit);
        if (wh === undefined) skipped.push(`${measurand} "${sv.value}" ${sv.unit ?? 'Wh'}`);
        else energyWh = wh;
      } else if (measurand === POWER_IMPORT) {
        const w = powerToW(sv.value, sv.unit);
        if (w === undefined) skipped.push(`${measurand} "${sv.value}" ${sv.unit ?? 'W'}`);
        else powerW = w;
      }
    }
  }
  return {
    ...(energyWh === undefined ? {} : { energyWh }),
    ...(powerW === undefined ? {} : { powerW }),
    ...(signedData === undefined ? {} : { signedData }),
    skipped,
  };
}
