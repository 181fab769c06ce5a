/**
 * Tariffs and the one fee rule.
 *
 * Prices are integers in **1/10,000 of a minor unit** (`TARIFF_SCALE`) so that a price per kWh
 * can be finer than a minor unit: energy price and service fee per kWh, time fee per minute.
 * Energy is integer Wh, duration integer seconds. The session total is computed exactly (big
 * integers) and rounded **once, half up**, to a minor unit; the charged amount is
 * min(computed, hold). Gateway and cloud call the same function, so they always agree.
 * @module
 */

export const TARIFF_SCALE = 10_000;

export interface Tariff {
  /** Energy price, 1/10,000 minor unit per kWh. */
  readonly energyPrice: number;
  /** Service fee, 1/10,000 minor unit per kWh (0 when none). */
  readonly serviceFee: number;
  /** Time fee, 1/10,000 minor unit per minute, pro rata per second (0 when none). */
  readonly timeFee: number;
}

// Exact total in units of 1 / (TARIFF_SCALE · 1000 Wh/kWh · 60 s/min) minor units.
const DENOMINATOR = BigInt(TARIFF_SCALE) * 1000n * 60n;

function exactNumerator(tariff: Tariff, energyWh: number, durationSeconds: number): bigint {
  return (
    BigInt(energyWh) * BigInt(tariff.energyPrice + tariff.serviceFee) * 60n +
    BigInt(tariff.timeFee) * BigInt(durationSeconds) * 1000n
  );
}

/** The computed fee in minor units: exact total rounded half up, once. */
export function computeFee(tariff: Tariff, energyWh: number, durationSeconds: number): number {
  if (!Number.isSafeInteger(energyWh) || energyWh < 0)
    throw new RangeError('energyWh must be a non-negative integer');
  if (!Number.isSafeInteger(durationSeconds) || durationSeconds < 0) {
    throw new RangeError('durationSeconds must be a non-negative integer');
  }
  const n = exactNumerator(tariff, energyWh, durationSeconds);
  return Number((n * 2n + DENOMINATOR) / (DENOMINATOR * 2n));
}

/** What the driver pays: the computed fee, never more than the hold. */
export function chargedAmount(
  tariff: Tariff,
  energyWh: number,
  durationSeconds: number,
  hold: number,
): number {
  return Math.min(computeFee(tariff, energyWh, durationSeconds), hold);
}

/**
 * The most energy (Wh) that keeps the fee within `hold` after `durationSeconds`; the gateway
 * stops the pile before crossing it. 0 when the time fee alone has used the hold.
 */
export function maxEnergyWithinHold(tariff: Tariff, hold: number, durationSeconds: number): number {
  const perWh = BigInt(tariff.energyPrice + tariff.serviceFee) * 60n;
  if (perWh === 0n) return Number.MAX_SAFE_INTEGER;
  // Largest n with round_half_up(fee) <= hold  ⇔  exact fee < hold + 1/2.
  const limit = (BigInt(hold) * 2n + 1n) * DENOMINATOR; // 2·numerator must stay below this
  const timePart = BigInt(tariff.timeFee) * BigInt(durationSeconds) * 1000n * 2n;
  if (timePart >= limit) return 0;
  const wh = (limit - timePart - 1n) / (perWh * 2n);
  return Number(wh > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : wh);
}
