/**
 * What every cloud domain operation needs: the database, the key store, the clock (the cloud's
 * clock is trusted — it is the reference gateways synchronise to) and the money rules.
 * @module
 */

import type { Database } from '../db/database.ts';
import type { KeyStore } from './keys.ts';

export interface MoneyRules {
  /** Default voucher lifetime (`exp − iat`), seconds. */
  readonly voucherLifetimeSeconds: number;
  /** After `exp`, how long an unused hold stays held for late receipts, seconds. */
  readonly graceSeconds: number;
  /** Most outstanding (issued, unsettled) voucher value per device, minor units. */
  readonly perDeviceCap: number;
  /** Largest single hold, minor units. */
  readonly maxHold: number;
  /** Smallest single hold, minor units. */
  readonly minHold: number;
}

export const DEFAULT_MONEY_RULES: MoneyRules = {
  voucherLifetimeSeconds: 7 * 86_400,
  graceSeconds: 30 * 86_400,
  perDeviceCap: 100_000,
  maxHold: 50_000,
  minHold: 100,
};

export interface CloudContext {
  readonly db: Database;
  readonly keys: KeyStore;
  /** Unix seconds. */
  readonly now: () => number;
  readonly rules: MoneyRules;
  /** The issuer name in vouchers. */
  readonly issuer: string;
}

/** A domain error the API maps to a 4xx JSON error: a stable code and a message. */
export class DomainError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.name = 'DomainError';
    this.code = code;
    this.status = status;
  }
}
