/**
 * Holds behind one interface, so that a wallet balance or a payment provider's
 * pre-authorisation (authorize / capture / void) can stand behind a voucher:
 *
 * - `wallet`: the driver's prepaid balance; a hold moves money wallet → holds; capture moves
 *   the fee to the operator and the rest back; release returns it; claw-back takes a late fee
 *   from the wallet (possibly below zero, bounded by the hold).
 * - `sandbox-preauth`: a card pre-authorisation at the sandbox payment provider (psp.ts);
 *   capture collects the fee from the provider, release voids the authorisation, claw-back is
 *   a merchant-initiated charge. Money enters the ledger only when captured.
 *
 * Every method runs inside the caller's transaction and keeps the journal balanced.
 * @module
 */

import type { Queryable } from '../db/database.ts';
import { DomainError } from './context.ts';
import { holdsAccount, InsufficientFundsError, post, revenueAccount, walletAccount } from './money.ts';
import { PSP_FUNDING_ACCOUNT, SandboxPsp } from './psp.ts';

export type HoldProviderName = 'wallet' | 'sandbox-preauth';

export interface HoldRef {
  readonly driverId: string;
  /** The voucher's cti in hex. */
  readonly ref: string;
  readonly amount: number;
  readonly currency: string;
  readonly at: number;
  /** The provider's reference (authorisation id) once held. */
  readonly reference?: string | null;
  /** Why (journal memo). */
  readonly memo?: string;
}

export interface HoldProvider {
  readonly name: HoldProviderName;
  /** Reserves `amount`; returns the provider's reference. Throws DomainError when refused. */
  hold(tx: Queryable, h: HoldRef): Promise<string | null>;
  /** Takes `charged` of the hold for the operator and releases the rest. */
  capture(tx: Queryable, h: HoldRef, charged: number, operatorId: string): Promise<void>;
  /** Releases the whole hold. */
  release(tx: Queryable, h: HoldRef): Promise<void>;
  /** After a release: takes `charged` (≤ the hold) for the operator anyway. */
  clawBack(tx: Queryable, h: HoldRef, charged: number, operatorId: string): Promise<void>;
}

export const walletHolds: HoldProvider = {
  name: 'wallet',
  async hold(tx, h) {
    try {
      await post(tx, {
        kind: 'hold',
        ref: h.ref,
        at: h.at,
        lines: [
          { account: walletAccount(h.driverId), amount: -h.amount, guarded: true },
          { account: holdsAccount(h.driverId), amount: h.amount },
        ],
      });
    } catch (err) {
      if (err instanceof InsufficientFundsError)
        throw new DomainError('insufficient_funds', 'the wallet balance is too low', 402);
      throw err;
    }
    return null;
  },
  async capture(tx, h, charged, operatorId) {
    await post(tx, {
      kind: 'capture',
      ref: h.ref,
      at: h.at,
      lines: [
        { account: holdsAccount(h.driverId), amount: -h.amount, guarded: true },
        { account: revenueAccount(operatorId), amount: charged },
        { account: walletAccount(h.driverId), amount: h.amount - charged },
      ],
    });
  },
  async release(tx, h) {
    await post(tx, {
      kind: 'refund',
      ref: h.ref,
      at: h.at,
      memo: h.memo,
      lines: [
        { account: holdsAccount(h.driverId), amount: -h.amount, guarded: true },
        { account: walletAccount(h.driverId), amount: h.amount },
      ],
    });
  },
  async clawBack(tx, h, charged, operatorId) {
    await post(tx, {
      kind: 'claw-back',
      ref: h.ref,
      at: h.at,
      lines: [
        { account: walletAccount(h.driverId), amount: -charged },
        { account: revenueAccount(operatorId), amount: charged },
      ],
    });
  },
};

/** Money collected by the PSP enters the ledger: funding:psp → the operator's revenue. */
async function creditFromPsp(
  tx: Queryable,
  kind: 'capture' | 'claw-back',
  h: HoldRef,
  charged: number,
  operatorId: string,
): Promise<void> {
  await post(tx, {
    kind,
    ref: h.ref,
    at: h.at,
    lines: [
      { account: PSP_FUNDING_ACCOUNT, amount: -charged },
      { account: revenueAccount(operatorId), amount: charged },
    ],
  });
}

export const sandboxPreAuthHolds: HoldProvider = {
  name: 'sandbox-preauth',
  async hold(tx, h) {
    return SandboxPsp.authorize(tx, h.driverId, h.amount, h.currency, h.at);
  },
  async capture(tx, h, charged, operatorId) {
    await SandboxPsp.capture(tx, h.reference!, charged, h.at);
    await creditFromPsp(tx, 'capture', h, charged, operatorId);
  },
  async release(tx, h) {
    await SandboxPsp.void(tx, h.reference!, h.at);
  },
  async clawBack(tx, h, charged, operatorId) {
    await SandboxPsp.charge(tx, h.driverId, charged, h.currency, h.at);
    await creditFromPsp(tx, 'claw-back', h, charged, operatorId);
  },
};

export function holdProvider(name: string): HoldProvider {
  if (name === 'wallet') return walletHolds;
  if (name === 'sandbox-preauth') return sandboxPreAuthHolds;
  throw new Error(`unknown hold provider ${name}`);
}
