/**
 * The storage layer's contract, one suite run on both backends: migrations, value round
 * trips, placeholders, RETURNING, ON CONFLICT, transactions, and concurrency from several
 * processes (a wallet debited by 200 concurrent transactions from two processes never
 * overdraws; two processes racing the migration runner apply each migration once).
 *
 * PostgreSQL comes from DATABASE_URL when set, else from a throwaway cluster
 * (test/support/postgres.ts).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type Database,
  type Isolation,
  isForeignKeyViolation,
  isUniqueViolation,
  type Queryable,
  RowCountError,
} from '../../cloud/src/db/database.ts';
import { type Migration, migrationSql, runMigrations } from '../../cloud/src/db/migrate.ts';
import { MIGRATIONS } from '../../cloud/src/db/migrations.ts';
import { openDatabase, resolveDatabaseLocation } from '../../cloud/src/db/open.ts';
import {
  type DebitOutcome,
  fireDebits,
  type MigrateOutcome,
  PROBE_MIGRATIONS,
  type ProbeJob,
} from '../../cloud/src/db/probe.ts';
import { SQLITE_SYNCHRONOUS, SqliteDatabase, translatePlaceholders } from '../../cloud/src/db/sqlite.ts';
import { type PostgresFixture, withPostgres } from '../support/postgres.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROBE = join(ROOT, 'cloud/src/db/probe.ts');
const TSX = join(ROOT, 'node_modules/.bin/tsx');

type Backend = 'sqlite' | 'postgres';
type Location = { databaseUrl?: string; sqlitePath?: string };

const VALUES_TABLE: Migration = {
  id: 't_001_values',
  sql: `
CREATE TABLE t_values (
  id TEXT PRIMARY KEY,
  bytes {{bytes}},
  amount {{bigint}},
  flag {{bool}},
  label TEXT
);
CREATE TABLE t_counters (
  name TEXT PRIMARY KEY,
  value BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE t_items (
  id {{id}},
  counter TEXT NOT NULL REFERENCES t_counters(name),
  note TEXT NOT NULL DEFAULT ''
);
`,
};

/** The installation table every cloud database has; most tests need nothing else of the schema. */
const KV_META = MIGRATIONS.find((m) => m.id === '001_kv_meta')!;

/** A probe process: spawned, opened its database, waiting for `go`. */
interface Probe {
  go(): void;
  readonly outcome: Promise<unknown>;
}

async function startProbe(job: ProbeJob): Promise<Probe> {
  const child: ChildProcess = spawn(TSX, [PROBE], {
    cwd: ROOT,
    env: { ...process.env, PILEPASS_PROBE_JOB: JSON.stringify(job) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const lines = createInterface({ input: child.stdout! });
  const received: string[] = [];
  let notify: (() => void) | undefined;
  lines.on('line', (line) => {
    received.push(line);
    notify?.();
  });
  const exit = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  const nextLine = async (): Promise<string> => {
    while (received.length === 0) {
      const code = await Promise.race([
        new Promise<undefined>((r) => {
          notify = () => r(undefined);
        }),
        exit,
      ]);
      if (code !== undefined && received.length === 0) throw new Error(`probe exited ${code}: ${stderr}`);
    }
    return received.shift()!;
  };
  expect(await nextLine()).toBe('ready');
  return {
    go: () => child.stdin!.write('go\n'),
    outcome: (async () => {
      const line = await nextLine();
      expect(await exit, stderr).toBe(0);
      return JSON.parse(line) as unknown;
    })(),
  };
}

describe.each<Backend>(['sqlite', 'postgres'])('storage on %s', (backend) => {
  let postgres: PostgresFixture | undefined;
  let dir: string;
  const opened: Database[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pilepass-db-'));
    if (backend === 'postgres') {
      postgres = await withPostgres();
      console.info(
        `postgres ready in ${postgres.startupMs.toFixed(0)} ms (${postgres.external ? 'DATABASE_URL' : 'throwaway cluster'})`,
      );
    }
  });

  afterEach(async () => {
    for (const db of opened.splice(0)) await db.close();
  });

  afterAll(async () => {
    await postgres?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A new, empty database location on this backend. */
  async function freshLocation(): Promise<Location> {
    if (backend === 'postgres') return { databaseUrl: await postgres!.freshUrl() };
    return { sqlitePath: join(dir, `${randomUUID()}.sqlite`) };
  }

  async function open(location?: Location, migrations: readonly Migration[] = [KV_META, VALUES_TABLE]) {
    const db = await openDatabase({ ...(location ?? (await freshLocation())), migrations });
    opened.push(db);
    return db;
  }

  it('opens the chosen backend with its durability settings', async () => {
    const db = await open();
    expect(db.dialect).toBe(backend);
    if (db instanceof SqliteDatabase) {
      const s = db.settings();
      expect(s.journalMode).toBe('wal');
      expect(SQLITE_SYNCHRONOUS).toBe('FULL');
      expect(s.synchronous).toBe(2);
      expect(s.foreignKeys).toBe(true);
      expect(s.busyTimeoutMs).toBeGreaterThan(0);
    } else {
      const timeout = await db.one<{ statement_timeout: string }>('SHOW statement_timeout');
      expect(timeout.statement_timeout).toBe('30s');
    }
  });

  it('applies the project schema (MIGRATIONS) to an empty database, then nothing', async () => {
    const location = await freshLocation();
    const db = await open(location, MIGRATIONS);
    const ids = await db.query<{ id: string }>('SELECT id FROM schema_migrations');
    expect(ids.map((r) => r.id).toSorted()).toEqual(MIGRATIONS.map((m) => m.id).toSorted());
    expect(await runMigrations(db, MIGRATIONS)).toEqual({ applied: [] });
    const again = await open(location, MIGRATIONS);
    expect(await again.one('SELECT COUNT(*) AS n FROM schema_migrations')).toEqual({ n: MIGRATIONS.length });
  });

  it('runs migrations once and is idempotent', async () => {
    const location = await freshLocation();
    const db = await open(location, [KV_META]);
    const rows = await db.query<{ id: string; applied_at: number }>(
      'SELECT id, applied_at FROM schema_migrations',
    );
    expect(rows.map((r) => r.id)).toEqual(['001_kv_meta']);
    expect(typeof rows[0]!.applied_at).toBe('number');
    await db.execute('INSERT INTO kv_meta (key, value, updated_at) VALUES ($1, $2, $3)', [
      'created',
      'yes',
      1_800_000_000,
    ]);

    expect(await runMigrations(db, [KV_META])).toEqual({ applied: [] });
    expect(await runMigrations(db, [KV_META, VALUES_TABLE])).toEqual({ applied: ['t_001_values'] });
    expect(await runMigrations(db, [KV_META, VALUES_TABLE])).toEqual({ applied: [] });
    // Reopening applies nothing and keeps the data.
    const again = await open(location, [KV_META, VALUES_TABLE]);
    expect(await again.one('SELECT COUNT(*) AS n FROM schema_migrations')).toEqual({ n: 2 });
    expect(await again.one('SELECT value FROM kv_meta WHERE key = $1', ['created'])).toEqual({
      value: 'yes',
    });
    // A list that lacks an applied migration (a newer release ran) is fine.
    expect(await runMigrations(db, [])).toEqual({ applied: [] });

    // An applied migration that changed is refused; a failing one leaves nothing behind.
    await expect(
      runMigrations(db, [{ id: '001_kv_meta', sql: 'CREATE TABLE other (x TEXT)' }]),
    ).rejects.toThrow(/applied with different SQL/);
    const broken: Migration = {
      id: 't_002_broken',
      sql: 'CREATE TABLE half (x TEXT); INSERT INTO nowhere VALUES (1)',
    };
    await expect(runMigrations(db, [KV_META, VALUES_TABLE, broken])).rejects.toThrow();
    expect(await db.maybeOne("SELECT id FROM schema_migrations WHERE id = 't_002_broken'")).toBeUndefined();
    await db.execute('CREATE TABLE half (y TEXT)'); // would fail if the broken migration's table had stayed
    expect(() => migrationSql({ id: 'x', sql: 'CREATE TABLE x (a {{nope}})' }, backend)).toThrow(
      /unknown placeholder/,
    );
    await expect(runMigrations(db, [VALUES_TABLE, VALUES_TABLE])).rejects.toThrow(/twice/);
  });

  it('round-trips bytes, BIGINT, booleans, text and NULL', async () => {
    const db = await open();
    const all = new Uint8Array(256).map((_, i) => i);
    const rows: [string, Uint8Array | null, number | null, boolean | null, string | null][] = [
      ['a', all, Number.MAX_SAFE_INTEGER, true, 'héllo ✓'],
      ['b', new Uint8Array(0), Number.MIN_SAFE_INTEGER, false, ''],
      ['c', null, null, null, null],
      ['d', all.subarray(10, 20), 0, true, "it's"],
    ];
    for (const r of rows)
      await db.execute(
        'INSERT INTO t_values (id, bytes, amount, flag, label) VALUES ($1, $2, $3, $4, $5)',
        r,
      );
    const back = await db.query<{
      id: string;
      bytes: Uint8Array | null;
      amount: number | null;
      flag: boolean | null;
    }>('SELECT id, bytes, amount, flag, label FROM t_values ORDER BY id');
    expect(back).toEqual(
      rows.map(([id, bytes, amount, flag, label]) => ({ id, bytes, amount, flag, label })),
    );
    for (const r of back) if (r.bytes) expect(Object.getPrototypeOf(r.bytes)).toBe(Uint8Array.prototype);
    expect(back[3]!.bytes).toEqual(new Uint8Array([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]));

    // Booleans as parameters and literals; aggregates come back as numbers.
    expect(await db.query('SELECT id FROM t_values WHERE flag = $1 ORDER BY id', [true])).toEqual([
      { id: 'a' },
      { id: 'd' },
    ]);
    expect(await db.query('SELECT id FROM t_values WHERE flag = FALSE')).toEqual([{ id: 'b' }]);
    expect(
      await db.one('SELECT COUNT(*) AS n, SUM(amount) AS total FROM t_values WHERE amount >= 0'),
    ).toEqual({
      n: 2,
      total: Number.MAX_SAFE_INTEGER,
    });
    expect(await db.one('SELECT CAST(SUM(amount) AS BIGINT) AS total FROM t_values')).toEqual({ total: 0 });
    // A bigint parameter is accepted within 64 bits; a value past 2^53 is refused on the way out.
    await db.execute('INSERT INTO t_values (id, amount) VALUES ($1, $2)', ['big', 2n ** 60n]);
    await expect(db.query("SELECT amount FROM t_values WHERE id = 'big'")).rejects.toThrow(RangeError);
    expect(
      await db.one("SELECT amount - CAST($1 AS BIGINT) AS rest FROM t_values WHERE id = 'big'", [
        2n ** 60n - 5n,
      ]),
    ).toEqual({ rest: 5 });
    // Parameters that would lose or invent data are refused before reaching the database.
    await expect(db.execute('UPDATE t_values SET amount = $1', [2 ** 60])).rejects.toThrow(RangeError);
    await expect(db.execute('UPDATE t_values SET amount = $1', [Number.NaN])).rejects.toThrow(RangeError);
    await expect(db.execute('UPDATE t_values SET label = $1', [undefined as never])).rejects.toThrow(
      /undefined/,
    );
    await expect(db.execute('UPDATE t_values SET label = $1', [new Date() as never])).rejects.toThrow(/Date/);
    await expect(db.execute('UPDATE t_values SET amount = $1', [2n ** 63n])).rejects.toThrow(RangeError);
  });

  it('binds $n placeholders the same way on both backends', async () => {
    const db = await open();
    expect(
      await db.one(
        'SELECT CAST($2 AS BIGINT) AS a, CAST($1 AS BIGINT) AS b, CAST($1 AS BIGINT) + 1 AS c',
        [1, 2],
      ),
    ).toEqual({
      a: 2,
      b: 1,
      c: 2,
    });
    const ten = Array.from({ length: 10 }, (_, i) => i + 1);
    expect(
      await db.one(
        `SELECT ${ten.map((n) => `CAST($${n} AS BIGINT)`).join(' + ')} AS total`,
        ten.map((n) => n * 10),
      ),
    ).toEqual({ total: 550 });
    // Placeholder-like text in literals, quoted identifiers and comments is left alone.
    expect(
      await db.one(
        `SELECT '$1 and ''$2''' AS "weird$1", CAST($1 AS TEXT) AS v -- $2 in a comment
        /* and $3 here */`,
        ['x'],
      ),
    ).toEqual({ weird$1: "$1 and '$2'", v: 'x' });
    // Wrong parameter counts and gaps fail on both.
    await expect(db.query('SELECT CAST($1 AS TEXT) AS v', ['a', 'b'])).rejects.toThrow();
    await expect(db.query('SELECT CAST($1 AS TEXT) AS v, CAST($2 AS TEXT) AS w', ['a'])).rejects.toThrow();
    await expect(db.query('SELECT CAST($2 AS TEXT) AS v', ['a', 'b'])).rejects.toThrow();
    // One statement per call on both.
    await expect(db.query('SELECT 1 AS a; SELECT 2 AS b')).rejects.toThrow();
    // one / maybeOne enforce their row counts.
    await expect(db.one('SELECT id FROM t_values')).rejects.toThrow(RowCountError);
    expect(await db.maybeOne('SELECT id FROM t_values')).toBeUndefined();
    await db.execute("INSERT INTO t_values (id) VALUES ('p'), ('q')");
    await expect(db.maybeOne('SELECT id FROM t_values')).rejects.toThrow(RowCountError);
  });

  it('supports RETURNING on INSERT, UPDATE and DELETE', async () => {
    const db = await open();
    await db.execute("INSERT INTO t_counters (name, value, updated_at) VALUES ('c', 0, 1)");
    const inserted = await db.query<{ id: number; note: string }>(
      "INSERT INTO t_items (counter, note) VALUES ('c', $1), ('c', $2) RETURNING id, note",
      ['first', 'second'],
    );
    expect(inserted.map((r) => r.note)).toEqual(['first', 'second']);
    expect(inserted[1]!.id).toBeGreaterThan(inserted[0]!.id);
    expect(
      await db.one('UPDATE t_counters SET value = value + $1 WHERE name = $2 RETURNING value', [5, 'c']),
    ).toEqual({
      value: 5,
    });
    expect(
      await db.execute("UPDATE t_counters SET value = value + 1 WHERE name = 'c' RETURNING value"),
    ).toEqual({
      rowCount: 1,
    });
    expect(await db.query('DELETE FROM t_items WHERE note = $1 RETURNING note', ['first'])).toEqual([
      { note: 'first' },
    ]);
    expect(await db.execute('DELETE FROM t_items WHERE note = $1', ['nothing'])).toEqual({ rowCount: 0 });
  });

  it('supports INSERT … ON CONFLICT DO NOTHING and DO UPDATE', async () => {
    const db = await open();
    const insert =
      'INSERT INTO t_counters (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING';
    expect(await db.execute(insert, ['k', 1, 100])).toEqual({ rowCount: 1 });
    expect(await db.execute(insert, ['k', 2, 200])).toEqual({ rowCount: 0 });
    expect(await db.one('SELECT value FROM t_counters WHERE name = $1', ['k'])).toEqual({ value: 1 });
    expect(await db.query(`${insert} RETURNING name`, ['k', 3, 300])).toEqual([]);

    const upsert = `INSERT INTO t_counters (name, value, updated_at) VALUES ($1, $2, $3)
      ON CONFLICT (name) DO UPDATE SET value = t_counters.value + excluded.value, updated_at = excluded.updated_at
      WHERE excluded.updated_at > t_counters.updated_at
      RETURNING value, updated_at`;
    expect(await db.query(upsert, ['k', 10, 400])).toEqual([{ value: 11, updated_at: 400 }]);
    expect(await db.query(upsert, ['k', 10, 300])).toEqual([]); // stale: the WHERE keeps the row
    expect(await db.query(upsert, ['new', 7, 500])).toEqual([{ value: 7, updated_at: 500 }]);
    // Constraint errors are recognisable the same way on both backends.
    const duplicate = await db
      .execute('INSERT INTO t_counters (name, value, updated_at) VALUES ($1, 0, 0)', ['k'])
      .catch((e: unknown) => e);
    expect(isUniqueViolation(duplicate)).toBe(true);
    const orphan = await db
      .execute("INSERT INTO t_items (counter) VALUES ('missing')")
      .catch((e: unknown) => e);
    expect(isForeignKeyViolation(orphan)).toBe(true);
  });

  it('commits a transaction when its callback resolves and rolls back when it throws', async () => {
    const db = await open();
    const committed = await db.transaction(async (tx) => {
      await tx.execute("INSERT INTO t_counters (name, value, updated_at) VALUES ('kept', 1, 1)");
      return tx.one<{ value: number }>("SELECT value FROM t_counters WHERE name = 'kept'");
    });
    expect(committed).toEqual({ value: 1 });

    const failure = new Error('boom');
    let leaked: Queryable | undefined;
    await expect(
      db.transaction(async (tx) => {
        leaked = tx;
        await tx.execute("INSERT INTO t_counters (name, value, updated_at) VALUES ('lost', 1, 1)");
        await tx.execute("UPDATE t_counters SET value = 99 WHERE name = 'kept'");
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await db.query('SELECT name, value FROM t_counters ORDER BY name')).toEqual([
      { name: 'kept', value: 1 },
    ]);
    // The handle dies with its transaction; the database itself is off limits inside one.
    await expect(leaked!.query('SELECT 1 AS one')).rejects.toThrow(/after its transaction ended/);
    await expect(db.transaction(() => db.query('SELECT 1 AS one'))).rejects.toThrow(/use the tx handle/);
    await expect(db.transaction(() => db.transaction(async () => 1))).rejects.toThrow(/use the tx handle/);
    // A failing statement rolls back the whole transaction.
    await expect(
      db.transaction(async (tx) => {
        await tx.execute("UPDATE t_counters SET value = 5 WHERE name = 'kept'");
        await tx.execute("INSERT INTO t_counters (name, value, updated_at) VALUES ('kept', 0, 0)");
      }),
    ).rejects.toSatisfy(isUniqueViolation);
    expect(await db.one("SELECT value FROM t_counters WHERE name = 'kept'")).toEqual({ value: 1 });
    // Still usable afterwards, and multi-statement scripts run inside transactions too.
    await db.transaction((tx) =>
      tx.executeScript('UPDATE t_counters SET value = 2; UPDATE t_counters SET value = value * 3'),
    );
    expect(await db.one("SELECT value FROM t_counters WHERE name = 'kept'")).toEqual({ value: 6 });
  });

  it('makes read-then-write transactions serializable (no lost updates in one process)', async () => {
    const db = await open();
    await db.execute("INSERT INTO t_counters (name, value, updated_at) VALUES ('rmw', 0, 0)");
    const n = 60;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        db.transaction(async (tx) => {
          const { value } = await tx.one<{ value: number }>(
            "SELECT value FROM t_counters WHERE name = 'rmw'",
          );
          await tx.execute("UPDATE t_counters SET value = $1, updated_at = $2 WHERE name = 'rmw'", [
            value + 1,
            i,
          ]);
        }),
      ),
    );
    expect(await db.one("SELECT value FROM t_counters WHERE name = 'rmw'")).toEqual({ value: n });
    console.info(`${backend}: ${n} concurrent read-modify-write transactions, ${db.stats().retries} retries`);
  });

  it.each<Isolation>(['serializable', 'read committed'])(
    'never overdraws a wallet under 200 concurrent debits from two processes (%s)',
    async (isolation) => {
      const location = await freshLocation();
      const db = await open(location, PROBE_MIGRATIONS);
      const amount = 700;
      const affordable = 150;
      await db.execute('INSERT INTO probe_wallets (id, balance) VALUES ($1, $2)', [
        'w1',
        amount * affordable,
      ]);
      const job = { location, walletId: 'w1', amount, count: 100, isolation };
      const child = await startProbe({ kind: 'debit', ...job, tag: 'child' });
      child.go();
      const started = performance.now();
      const [mine, theirs] = await Promise.all([
        fireDebits(db, { ...job, tag: 'parent' }),
        child.outcome as Promise<DebitOutcome>,
      ]);
      const elapsed = performance.now() - started;
      expect(mine.errors).toEqual([]);
      expect(theirs.errors).toEqual([]);
      expect(mine.succeeded + theirs.succeeded).toBe(affordable);
      expect(mine.refused + theirs.refused).toBe(200 - affordable);
      expect(mine.succeeded).toBeGreaterThan(0);
      expect(theirs.succeeded).toBeGreaterThan(0);
      expect(Math.min(mine.lowestBalanceAfter ?? 0, theirs.lowestBalanceAfter ?? 0)).toBe(0);
      expect(await db.one('SELECT balance FROM probe_wallets WHERE id = $1', ['w1'])).toEqual({ balance: 0 });
      expect(
        await db.one(
          'SELECT COUNT(*) AS n, SUM(amount) AS total, MIN(balance_after) AS low FROM probe_debits',
        ),
      ).toEqual({
        n: affordable,
        total: amount * affordable,
        low: 0,
      });
      // How often consecutive debits (in balance order) came from different processes.
      const order = await db.query<{ id: string }>('SELECT id FROM probe_debits ORDER BY balance_after DESC');
      let switches = 0;
      for (let i = 1; i < order.length; i++)
        if (order[i]!.id.split('-')[0] !== order[i - 1]!.id.split('-')[0]) switches++;
      console.info(
        `${backend} (${isolation}): ${switches} process switches; 200 debits from 2 processes in ${elapsed.toFixed(0)} ms — parent ${mine.succeeded} ok/${mine.refused} refused/${mine.retries} retries, child ${theirs.succeeded}/${theirs.refused}/${theirs.retries}`,
      );
    },
  );

  it('applies each migration once when two processes race the runner', async () => {
    const location = await freshLocation();
    const migrations: Migration[] = [
      KV_META,
      { id: 'race_001', sql: 'CREATE TABLE race_log (id {{id}}, note TEXT NOT NULL)' },
      { id: 'race_002', sql: "INSERT INTO race_log (note) VALUES ('applied race_002')" },
      {
        id: 'race_003',
        sql: 'CREATE TABLE race_more (k TEXT PRIMARY KEY); CREATE INDEX race_log_note ON race_log (note)',
      },
      { id: 'race_004', sql: "INSERT INTO race_log (note) VALUES ('applied race_004')" },
    ];
    // Both processes start against an empty database (not even schema_migrations).
    const probes = await Promise.all([
      startProbe({ kind: 'migrate', location, migrations }),
      startProbe({ kind: 'migrate', location, migrations }),
    ]);
    for (const p of probes) p.go();
    const outcomes = (await Promise.all(probes.map((p) => p.outcome))) as MigrateOutcome[];
    const applied = outcomes.flatMap((o) => o.applied);
    expect(applied.toSorted()).toEqual(migrations.map((m) => m.id).toSorted());
    const db = await open(location, migrations);
    expect(await db.query('SELECT id FROM schema_migrations ORDER BY id')).toEqual(
      migrations.map((m) => ({ id: m.id })).toSorted((a, b) => a.id.localeCompare(b.id)),
    );
    expect(await db.query('SELECT note FROM race_log ORDER BY note')).toEqual([
      { note: 'applied race_002' },
      { note: 'applied race_004' },
    ]);
    console.info(`${backend}: migration race split ${outcomes.map((o) => o.applied.length).join(' + ')}`);
  });
});

describe('storage configuration', () => {
  it('chooses the backend from the URL', () => {
    expect(resolveDatabaseLocation({})).toEqual({ dialect: 'sqlite', path: './data/cloud.sqlite' });
    expect(resolveDatabaseLocation({ databaseUrl: '', sqlitePath: '/tmp/x.sqlite' })).toEqual({
      dialect: 'sqlite',
      path: '/tmp/x.sqlite',
    });
    expect(resolveDatabaseLocation({ databaseUrl: 'postgres://u@h/db' })).toEqual({
      dialect: 'postgres',
      url: 'postgres://u@h/db',
    });
    expect(resolveDatabaseLocation({ databaseUrl: 'postgresql://u@h/db?sslmode=require' }).dialect).toBe(
      'postgres',
    );
    expect(resolveDatabaseLocation({ databaseUrl: 'sqlite:./data/a.sqlite' })).toEqual({
      dialect: 'sqlite',
      path: './data/a.sqlite',
    });
    expect(resolveDatabaseLocation({ databaseUrl: 'file:///var/lib/pp.sqlite' })).toEqual({
      dialect: 'sqlite',
      path: '/var/lib/pp.sqlite',
    });
    expect(() => resolveDatabaseLocation({ databaseUrl: 'postgress://typo' })).toThrow(/DATABASE_URL/);
  });

  it('translates placeholders for SQLite', () => {
    expect(translatePlaceholders('SELECT $2, $1, $1')).toEqual({
      sql: 'SELECT ?, ?, ?',
      order: [1, 0, 0],
      parameterCount: 2,
    });
    expect(translatePlaceholders("SELECT '$1' || $1 -- $2\n")).toEqual({
      sql: "SELECT '$1' || ? -- $2\n",
      order: [0],
      parameterCount: 1,
    });
    expect(() => translatePlaceholders('SELECT $2')).toThrow(/\$1 is not used/);
    expect(() => translatePlaceholders('SELECT ?')).toThrow(/\$1, \$2/);
    expect(() => translatePlaceholders("SELECT 'open")).toThrow(/unterminated/);
  });
});
