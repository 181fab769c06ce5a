/**
 * The fee rule: exact total, rounded half up once per session, charged = min(fee, hold); and
 * the stop threshold `maxEnergyWithinHold` is exactly the last Wh that stays within the hold.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chargedAmount, computeFee, maxEnergyWithinHold, type Tariff } from '../shared/src/index.ts';

const tariff = fc.record({
  energyPrice: fc.integer({ min: 0, max: 10_000_000 }),
  serviceFee: fc.integer({ min: 0, max: 5_000_000 }),
  timeFee: fc.integer({ min: 0, max: 1_000_000 }),
});

describe('fee rule', () => {
  it('rounds half up exactly once on the session total', () => {
    const t: Tariff = { energyPrice: 10_000, serviceFee: 0, timeFee: 0 }; // 1 minor unit per kWh
    expect(computeFee(t, 499, 0)).toBe(0); // 0.499
    expect(computeFee(t, 500, 0)).toBe(1); // 0.5 → 1
    expect(computeFee(t, 1_499, 0)).toBe(1);
    expect(computeFee(t, 1_500, 0)).toBe(2);
    // Components that would each round down add up before rounding: 0.4 + 0.4 = 0.8 → 1.
    const split: Tariff = { energyPrice: 4_000, serviceFee: 4_000, timeFee: 0 };
    expect(computeFee(split, 1_000, 0)).toBe(1);
  });

  it('time fee is pro rata per second', () => {
    const t: Tariff = { energyPrice: 0, serviceFee: 0, timeFee: 600_000 }; // 60 minor units per minute
    expect(computeFee(t, 0, 1)).toBe(1);
    expect(computeFee(t, 0, 90)).toBe(90);
  });

  it('is monotonic in energy and time, and charged never exceeds the hold', () => {
    fc.assert(
      fc.property(tariff, fc.nat(200_000), fc.nat(36_000), fc.nat(100_000), (t, wh, s, hold) => {
        expect(computeFee(t, wh + 1, s)).toBeGreaterThanOrEqual(computeFee(t, wh, s));
        expect(computeFee(t, wh, s + 1)).toBeGreaterThanOrEqual(computeFee(t, wh, s));
        expect(chargedAmount(t, wh, s, hold)).toBe(Math.min(computeFee(t, wh, s), hold));
      }),
      { numRuns: 500 },
    );
  });

  it('maxEnergyWithinHold is the last Wh inside the hold', () => {
    fc.assert(
      fc.property(tariff, fc.integer({ min: 1, max: 100_000 }), fc.nat(36_000), (t, hold, s) => {
        fc.pre(t.energyPrice + t.serviceFee > 0);
        const max = maxEnergyWithinHold(t, hold, s);
        if (computeFee(t, 0, s) > hold) {
          expect(max).toBe(0);
          return;
        }
        expect(computeFee(t, max, s)).toBeLessThanOrEqual(hold);
        expect(computeFee(t, max + 1, s)).toBeGreaterThan(hold);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses negative or fractional quantities', () => {
    const t: Tariff = { energyPrice: 1, serviceFee: 0, timeFee: 0 };
    expect(() => computeFee(t, -1, 0)).toThrow(RangeError);
    expect(() => computeFee(t, 1.5, 0)).toThrow(RangeError);
    expect(() => computeFee(t, 1, -3)).toThrow(RangeError);
  });
});

describe('tariff encoding', () => {
  it('a zero fee is omitted, and an explicit zero is refused as non-canonical', async () => {
    const { decodeTariff, encodeTariff, encodeCbor, ErrorCode } = await import('../shared/src/index.ts');
    const t: Tariff = { energyPrice: 5, serviceFee: 0, timeFee: 0 };
    expect(encodeCbor(encodeTariff(t))).toEqual(encodeCbor(new Map([[1, 5]])));
    expect(decodeTariff(encodeTariff(t))).toEqual(t);
    expect(() =>
      decodeTariff(
        new Map([
          [1, 5],
          [2, 0],
        ]),
      ),
    ).toThrow(expect.objectContaining({ code: ErrorCode.NON_CANONICAL }));
  });
});
