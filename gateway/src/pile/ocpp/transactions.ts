/**
 * What the gateway hands the charge point to start and number transactions: a fresh idTag per
 * session (so the pile's Authorize and StartTransaction can be matched to exactly the start the
 * gateway asked for, and nothing else is authorized), transaction ids for StartTransaction.conf,
 * and the TxProfile charging profile that caps power where configured.
 * @module
 */

import { randomBytes, randomInt } from 'node:crypto';
import type { ChargingProfile } from './messages.ts';

/** "PP" + 18 hex digits = 20 characters, the OCPP 1.6 idTag maximum; 72 random bits. */
export function mintIdTag(): string {
  return `PP${randomBytes(9).toString('hex').toUpperCase()}`;
}

const MAX_INT32 = 2 ** 31 - 1;

/**
 * A transaction id (OCPP: integer) not in `inUse`. Random rather than counted, so ids stay
 * distinct across gateway restarts without persisting a counter.
 */
export function newTransactionId(inUse: ReadonlySet<number>): number {
  for (;;) {
    const id = randomInt(1, MAX_INT32);
    if (!inUse.has(id)) return id;
  }
}

/** A charging profile id for one remote start (the pile replaces profiles by id). */
export function newChargingProfileId(): number {
  return randomInt(1, MAX_INT32);
}

export interface ChargingLimit {
  readonly unit: 'W' | 'A';
  /** Whole W or A: the OCPP schema wants multiples of 0.1, which fractional JS numbers break. */
  readonly value: number;
}

/**
 * The TxProfile sent with RemoteStartTransaction: one period from the start of the
 * transaction (Relative) at the limit. OCPP 1.6 profiles cap power or current only; the energy
 * cap is the gateway's, enforced from meter values.
 */
export function txProfile(limit: ChargingLimit, chargingProfileId: number): ChargingProfile {
  return {
    chargingProfileId,
    stackLevel: 0,
    chargingProfilePurpose: 'TxProfile',
    chargingProfileKind: 'Relative',
    chargingSchedule: {
      chargingRateUnit: limit.unit,
      chargingSchedulePeriod: [{ startPeriod: 0, limit: limit.value }],
    },
  };
}
