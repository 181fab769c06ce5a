/**
 * Cross-process contention probe for the storage layer: many concurrent conditional debits
 * on one wallet, or a migration run, started on a signal so several processes collide. The
 * storage tests run it in child processes next to the test process; a benchmark can too.
 *
 *   PILEPASS_PROBE_JOB='{"kind":"debit",…}' tsx cloud/src/db/probe.ts
 *
 * Protocol on stdio: the probe opens its own `Database` (no migrations), prints `ready`,
 * waits for a line on stdin, runs the job, prints one JSON line with the outcome, closes the
 * database and exits.
 * @module
 */

import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import type { Database, Isolation } from './database.ts';
import { type Migration, runMigrations } from './migrate.ts';
import { openDatabase } from './open.ts';

/** The tables the debit job works on. */
export const PROBE_MIGRATIONS: readonly Migration[] = [
  {
    id: 'probe_001_wallets',
    sql: `
CREATE TABLE probe_wallets (
  id TEXT PRIMARY KEY,
  balance {{bigint}} NOT NULL
);
CREATE TABLE probe_debits (
  id TEXT PRIMARY KEY,
  wallet_id TEXT NOT NULL REFERENCES probe_wallets(id),
  amount {{bigint}} NOT NULL,
  balance_after {{bigint}} NOT NULL
);
`,
  },
];

export interface ProbeLocation {
  readonly databaseUrl?: string;
  readonly sqlitePath?: string;
}

export interface DebitJob {
  readonly kind: 'debit';
  readonly location: ProbeLocation;
  readonly walletId: string;
  /** Minor units per debit. */
  readonly amount: number;
  /** Debits fired at once. */
  readonly count: number;
  /** Prefix of this process's debit ids. */
  readonly tag: string;
  /** Transaction isolation (PostgreSQL); default the database's default, serializable. */
  readonly isolation?: Isolation;
}

export interface MigrateJob {
  readonly kind: 'migrate';
  readonly location: ProbeLocation;
  readonly migrations: readonly Migration[];
}

export type ProbeJob = DebitJob | MigrateJob;

export interface DebitOutcome {
  readonly kind: 'debit';
  /** Debits that took money. */
  readonly succeeded: number;
  /** Debits refused for insufficient balance. */
  readonly refused: number;
  /** Messages of debits that failed otherwise (should be none). */
  readonly errors: readonly string[];
  /** Lowest balance any successful debit left behind. */
  readonly lowestBalanceAfter: number | null;
  readonly retries: number;
  readonly elapsedMs: number;
}

export interface MigrateOutcome {
  readonly kind: 'migrate';
  readonly applied: readonly string[];
  readonly elapsedMs: number;
}

export type ProbeOutcome = DebitOutcome | MigrateOutcome;

/**
 * Fires `count` concurrent debit transactions: each takes `amount` only if the balance covers
 * it (`UPDATE … WHERE balance >= $1`) and records the debit in the same transaction.
 */
export async function fireDebits(
  db: Database,
  job: Omit<DebitJob, 'kind' | 'location'>,
): Promise<DebitOutcome> {
  const started = performance.now();
  const retriesBefore = db.stats().retries;
  const results = await Promise.allSettled(
    Array.from({ length: job.count }, (_, i) =>
      db.transaction(
        async (tx) => {
          const row = await tx.maybeOne<{ balance: number }>(
            'UPDATE probe_wallets SET balance = balance - $1 WHERE id = $2 AND balance >= $1 RETURNING balance',
            [job.amount, job.walletId],
          );
          if (!row) return undefined;
          await tx.execute(
            'INSERT INTO probe_debits (id, wallet_id, amount, balance_after) VALUES ($1, $2, $3, $4)',
            [`${job.tag}-${i}`, job.walletId, job.amount, row.balance],
          );
          return row.balance;
        },
        job.isolation ? { isolation: job.isolation } : {},
      ),
    ),
  );
  let succeeded = 0;
  let refused = 0;
  let lowest: number | null = null;
  const errors: string[] = [];
  for (const r of results) {
    if (r.status === 'rejected') errors.push(String((r.reason as Error)?.message ?? r.reason));
    else if (r.value === undefined) refused++;
    else {
      succeeded++;
      lowest = lowest === null ? r.value : Math.min(lowest, r.value);
    }
  }
  return {
    kind: 'debit',
    succeeded,
    refused,
    errors,
    lowestBalanceAfter: lowest,
    retries: db.stats().retries - retriesBefore,
    elapsedMs: performance.now() - started,
  };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.env.PILEPASS_PROBE_JOB ?? 'null') as ProbeJob | null;
  if (!job) throw new Error('PILEPASS_PROBE_JOB is not set');
  const db = await openDatabase({ ...job.location, migrations: [] });
  try {
    const lines = createInterface({ input: process.stdin });
    const go = new Promise<void>((resolve) => lines.once('line', () => resolve()));
    process.stdout.write('ready\n');
    await go;
    lines.close();
    let outcome: ProbeOutcome;
    if (job.kind === 'debit') {
      outcome = await fireDebits(db, job);
    } else {
      const started = performance.now();
      const { applied } = await runMigrations(db, job.migrations);
      outcome = { kind: 'migrate', applied, elapsedMs: performance.now() - started };
    }
    process.stdout.write(`${JSON.stringify(outcome)}\n`);
  } finally {
    await db.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(
      `probe failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}
