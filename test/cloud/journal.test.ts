/**
 * money.ts post(), on both backends: debits one statement each, then all credits in one. A
 * guarded debit that would overdraw, or a line naming a missing account, refuses the whole
 * entry — the balances it did move are moved back, so nothing changes even when the caller
 * catches the error and commits — and concurrent guarded debits of one wallet under READ
 * COMMITTED never take it below zero, without deadlocks (no transaction retried).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../cloud/src/db/database.ts';
import {
  balance,
  ensureAccount,
  InsufficientFundsError,
  MONEY_TX,
  post,
} from '../../cloud/src/domain/money.ts';
import { withPostgres } from '../support/postgres.ts';
import { type Backend, type CloudWorld, openCloudWorld } from './support/cloud-world.ts';

describe.each<Backend>(['sqlite', 'postgres'])('journal entries on %s', (backend) => {
  let world: CloudWorld;
  let db: Database;
  let stopPostgres: (() => Promise<void>) | undefined;
  let n = 0;
  /** Three fresh accounts: a wallet with `funds`, an empty holds account and an empty revenue one. */
  const accounts = async (funds: number) => {
    const id = `journal-${backend}-${n++}`;
    const names = { wallet: `wallet:${id}`, holds: `holds:${id}`, revenue: `revenue:${id}` };
    await db.transaction(async (tx) => {
      for (const [kind, account] of Object.entries(names))
        await ensureAccount(tx, account, kind, id, 'CNY', 1);
      await tx.execute('UPDATE accounts SET balance = $1 WHERE id = $2', [funds, names.wallet]);
    });
    return names;
  };
  const balances = async (names: Record<string, string>) =>
    Object.fromEntries(
      await Promise.all(Object.entries(names).map(async ([k, v]) => [k, await balance(db, v)] as const)),
    );
  const journalCount = async (ref: string) =>
    (await db.query('SELECT id FROM journal WHERE ref = $1', [ref])).length;

  beforeAll(async () => {
    let postgresUrl: string | undefined;
    if (backend === 'postgres') {
      const pg = await withPostgres();
      postgresUrl = pg.url;
      stopPostgres = pg.stop;
    }
    world = await openCloudWorld(backend, { postgresUrl });
    db = world.db;
  }, 120_000);

  afterAll(async () => {
    await world?.close();
    await stopPostgres?.();
  });

  it('moves every line and records the entry and its lines', async () => {
    const a = await accounts(1_000);
    await db.transaction((tx) =>
      post(tx, {
        kind: 'capture',
        ref: 'ok-1',
        at: 2,
        lines: [
          { account: a.wallet, amount: -700, guarded: true },
          { account: a.revenue, amount: 200 },
          { account: a.holds, amount: 500 },
        ],
      }),
    );
    expect(await balances(a)).toEqual({ wallet: 300, holds: 500, revenue: 200 });
    const lines = await db.query<{ account_id: string; amount: number }>(
      'SELECT account_id, amount FROM journal_lines WHERE journal_id = (SELECT id FROM journal WHERE ref = $1) ORDER BY account_id',
      ['ok-1'],
    );
    expect(lines).toEqual([
      { account_id: a.holds, amount: 500 },
      { account_id: a.revenue, amount: 200 },
      { account_id: a.wallet, amount: -700 },
    ]);
  });

  it('refuses an overdrawing guarded debit as a whole, even when the caller catches and commits', async () => {
    const a = await accounts(100);
    const caught = await db.transaction(async (tx) => {
      try {
        await post(tx, {
          kind: 'hold',
          ref: 'overdraw-1',
          at: 2,
          lines: [
            { account: a.holds, amount: 101 },
            { account: a.wallet, amount: -101, guarded: true },
          ],
        });
        return undefined;
      } catch (err) {
        return err;
      }
    });
    expect(caught).toBeInstanceOf(InsufficientFundsError);
    expect((caught as InsufficientFundsError).account).toBe(a.wallet);
    expect(await balances(a)).toEqual({ wallet: 100, holds: 0, revenue: 0 });
    expect(await journalCount('overdraw-1')).toBe(0);
  });

  it('moves debits back when a later credit names a missing account', async () => {
    const a = await accounts(100);
    const caught = await db.transaction(async (tx) =>
      post(tx, {
        kind: 'capture',
        ref: 'missing-2',
        at: 2,
        lines: [
          { account: a.wallet, amount: -60, guarded: true },
          { account: a.revenue, amount: 20 },
          { account: 'revenue:nobody', amount: 40 },
        ],
      }).catch((err: unknown) => err),
    );
    expect(String(caught)).toMatch(/no such account revenue:nobody/);
    expect(await balances(a)).toEqual({ wallet: 100, holds: 0, revenue: 0 });
  });

  it('refuses a line on a missing account as a whole', async () => {
    const a = await accounts(100);
    const caught = await db.transaction(async (tx) =>
      post(tx, {
        kind: 'top-up',
        ref: 'missing-1',
        at: 2,
        lines: [
          { account: a.wallet, amount: -50, guarded: true },
          { account: 'wallet:nobody', amount: 50 },
        ],
      }).catch((err: unknown) => err),
    );
    expect(String(caught)).toMatch(/no such account wallet:nobody/);
    expect(await balances(a)).toEqual({ wallet: 100, holds: 0, revenue: 0 });
    expect(await journalCount('missing-1')).toBe(0);
  });

  it('refuses an entry that names one account twice, or does not balance', async () => {
    const a = await accounts(100);
    await expect(
      db.transaction((tx) =>
        post(tx, {
          kind: 'refund',
          ref: 'twice-1',
          at: 2,
          lines: [
            { account: a.wallet, amount: -10 },
            { account: a.wallet, amount: 10 },
          ],
        }),
      ),
    ).rejects.toThrow(/names an account twice/);
    await expect(
      db.transaction((tx) =>
        post(tx, { kind: 'refund', ref: 'unbalanced-1', at: 2, lines: [{ account: a.wallet, amount: -10 }] }),
      ),
    ).rejects.toThrow(/unbalanced/);
    expect(await balances(a)).toEqual({ wallet: 100, holds: 0, revenue: 0 });
  });

  it('never overdraws under 60 concurrent guarded debits at READ COMMITTED (money for 25)', async () => {
    const a = await accounts(25 * 40);
    const retriesBefore = db.stats().retries;
    const outcomes = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        db
          .transaction(
            (tx) =>
              post(tx, {
                kind: 'hold',
                ref: `race-${backend}-${i}`,
                at: 2,
                lines: [
                  { account: a.wallet, amount: -40, guarded: true },
                  { account: a.holds, amount: 40 },
                ],
              }),
            MONEY_TX,
          )
          .then(
            () => 'ok',
            (err: unknown) => (err instanceof InsufficientFundsError ? 'refused' : err),
          ),
      ),
    );
    expect(outcomes.filter((o) => o !== 'ok' && o !== 'refused')).toEqual([]);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(25);
    expect(outcomes.filter((o) => o === 'refused')).toHaveLength(35);
    expect(await balances(a)).toEqual({ wallet: 0, holds: 1_000, revenue: 0 });
    // The entries queue on the wallet's debit, first in each: no deadlock, so nothing retried.
    expect(db.stats().retries - retriesBefore).toBe(0);
  });
});
