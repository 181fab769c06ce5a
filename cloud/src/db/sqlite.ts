/**
 * The embedded backend: one better-sqlite3 connection behind the async `Database` API.
 *
 * Durability and concurrency: the file runs in WAL mode with `synchronous=FULL`
 * (`SQLITE_SYNCHRONOUS`, also what the benchmark sets), so a commit has fsynced the WAL before
 * it returns. Several processes may open the same file: write transactions start with
 * `BEGIN IMMEDIATE`, which takes the write lock up front, so a second process waits (up to the
 * busy timeout) instead of failing half-way with SQLITE_BUSY; readers never block in WAL mode.
 * Within one process the connection is used by one transaction at a time: an async mutex
 * queues statements and transactions, since all of them share the connection.
 *
 * SQL is the PostgreSQL-style dialect of database.ts; `$n` placeholders become positional
 * `?` (better-sqlite3 binds `?NNN` only as named parameters, which breaks for gaps), with
 * the parameters reordered and repeated to match. Integers are read as bigints (safeIntegers)
 * and converted to numbers only when exact; BLOBs come back as Uint8Array; columns declared
 * BOOLEAN/BOOL come back as booleans.
 * @module
 */

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import {
  assertOutsideTransaction,
  atMostOne,
  type Database,
  type DatabaseStats,
  type ExecuteResult,
  encodeParams,
  exactlyOne,
  inTransactionScope,
  isRetryableTransactionError,
  plainBytes,
  type Queryable,
  type Row,
  retriesOf,
  retryDelayMs,
  type SqlParam,
  sleep,
  TransactionHandle,
  type TransactionOptions,
  toSafeNumber,
} from './database.ts';

/** Journal mode of every cloud SQLite file. */
export const SQLITE_JOURNAL_MODE = 'WAL';
/**
 * `PRAGMA synchronous` of every cloud SQLite file, and of the benchmark: FULL fsyncs the WAL
 * at each commit, so an acknowledged top-up or voucher survives power loss.
 */
export const SQLITE_SYNCHRONOUS = 'FULL';
/** How long a statement waits for another process's write lock before SQLITE_BUSY. */
export const SQLITE_BUSY_TIMEOUT_MS = 10_000;
/** Prepared statements kept per connection. */
const STATEMENT_CACHE_SIZE = 500;

export interface SqliteOptions {
  /** The database file; its directory is created if missing. */
  readonly path: string;
  readonly busyTimeoutMs?: number;
}

/** The connection's actual settings, for tests, the benchmark and health output. */
export interface SqliteSettings {
  readonly journalMode: string;
  /** 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA. */
  readonly synchronous: number;
  readonly busyTimeoutMs: number;
  readonly foreignKeys: boolean;
  readonly sqliteVersion: string;
}

// ---- placeholders --------------------------------------------------------------------------

export interface TranslatedSql {
  /** The SQL with each `$n` replaced by `?`. */
  readonly sql: string;
  /** For each `?` in order, the 0-based index of the parameter it binds. */
  readonly order: readonly number[];
  /** The highest `$n`: how many parameters the statement takes. */
  readonly parameterCount: number;
}

const IDENTIFIER_CHAR = /[A-Za-z0-9_$]/;

/**
 * Rewrites PostgreSQL `$n` placeholders to SQLite positional `?`, leaving string literals,
 * quoted identifiers and comments alone. Refuses `?` placeholders and gaps in the numbering.
 */
export function translatePlaceholders(sql: string): TranslatedSql {
  let out = '';
  const order: number[] = [];
  let i = 0;
  let copied = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      i++;
      while (i < n) {
        if (sql[i] === c) {
          if (sql[i + 1] === c) i += 2;
          else break;
        } else i++;
      }
      if (i >= n) throw new SyntaxError(`unterminated ${c === "'" ? 'string' : 'quoted identifier'} in SQL`);
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) throw new SyntaxError('unterminated comment in SQL');
      i = end + 2;
    } else if (c === '$' && /[0-9]/.test(sql[i + 1] ?? '') && !(i > 0 && IDENTIFIER_CHAR.test(sql[i - 1]!))) {
      let j = i + 1;
      while (j < n && /[0-9]/.test(sql[j]!)) j++;
      const number = Number(sql.slice(i + 1, j));
      if (number < 1) throw new SyntaxError(`placeholder $${number} in SQL: numbering starts at $1`);
      out += sql.slice(copied, i) + '?';
      order.push(number - 1);
      copied = j;
      i = j;
    } else if (c === '?') {
      throw new SyntaxError('`?` placeholder in SQL: use $1, $2, … on every backend');
    } else i++;
  }
  out += sql.slice(copied);
  const parameterCount = order.length === 0 ? 0 : Math.max(...order) + 1;
  const used = new Set(order);
  for (let k = 0; k < parameterCount; k++)
    if (!used.has(k)) throw new SyntaxError(`placeholder $${k + 1} is not used but $${parameterCount} is`);
  return { sql: out, order, parameterCount };
}

// ---- connection ------------------------------------------------------------------------------

interface CachedStatement {
  readonly statement: BetterSqlite3.Statement;
  readonly order: readonly number[];
  readonly parameterCount: number;
  readonly reader: boolean;
  /** Result columns declared BOOLEAN/BOOL. */
  readonly booleanColumns: readonly string[];
}

function encodeSqliteParam(value: SqlParam): unknown {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return value;
}

/** The connection as a Queryable, without locking: used by the database under its mutex and by transactions. */
class SqliteConnection implements Queryable {
  readonly dialect = 'sqlite' as const;
  readonly #db: BetterSqlite3.Database;
  readonly #cache = new Map<string, CachedStatement>();

  constructor(db: BetterSqlite3.Database) {
    this.#db = db;
  }

  #prepare(sql: string): CachedStatement {
    const hit = this.#cache.get(sql);
    if (hit) {
      // Least recently used goes first out: re-insert at the end.
      this.#cache.delete(sql);
      this.#cache.set(sql, hit);
      return hit;
    }
    const translated = translatePlaceholders(sql);
    const statement = this.#db.prepare(translated.sql);
    statement.safeIntegers(true);
    const reader = statement.reader;
    const booleanColumns = reader
      ? statement
          .columns()
          .filter((c) => /^BOOL(EAN)?$/i.test(c.type ?? ''))
          .map((c) => c.name)
      : [];
    const entry: CachedStatement = {
      statement,
      order: translated.order,
      parameterCount: translated.parameterCount,
      reader,
      booleanColumns,
    };
    this.#cache.set(sql, entry);
    if (this.#cache.size > STATEMENT_CACHE_SIZE) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return entry;
  }

  #bind(entry: CachedStatement, params: readonly SqlParam[] | undefined): unknown[] {
    const values = encodeParams(params, encodeSqliteParam);
    if (values.length !== entry.parameterCount)
      throw new RangeError(
        `SQL takes ${entry.parameterCount} parameter(s) but ${values.length} were supplied`,
      );
    return entry.order.map((k) => values[k]);
  }

  #rows<T>(sql: string, params: readonly SqlParam[] | undefined): T[] {
    const entry = this.#prepare(sql);
    const bound = this.#bind(entry, params);
    if (!entry.reader) {
      entry.statement.run(...bound);
      return [];
    }
    const rows = entry.statement.all(...bound) as Row[];
    for (const row of rows) {
      for (const key of Object.keys(row)) {
        const value = row[key];
        if (typeof value === 'bigint') row[key] = toSafeNumber(value, key);
        else if (value instanceof Uint8Array) row[key] = plainBytes(value);
      }
      for (const key of entry.booleanColumns) {
        const value = row[key];
        if (typeof value === 'number') row[key] = value !== 0;
      }
    }
    return rows as T[];
  }

  async query<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    return this.#rows<T>(sql, params);
  }

  async one<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T> {
    return exactlyOne(this.#rows<T>(sql, params), sql);
  }

  async maybeOne<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return atMostOne(this.#rows<T>(sql, params), sql);
  }

  async execute(sql: string, params?: readonly SqlParam[]): Promise<ExecuteResult> {
    const entry = this.#prepare(sql);
    const bound = this.#bind(entry, params);
    if (entry.reader) return { rowCount: entry.statement.all(...bound).length };
    return { rowCount: entry.statement.run(...bound).changes };
  }

  async executeScript(sql: string): Promise<void> {
    this.#db.exec(sql);
  }
}

/**
 * A pragma that may need an exclusive lock (switching a new file to WAL): SQLite answers BUSY at
 * once, without its busy handler, when another process is opening the same new file at the
 * same moment — so retry here, with short waits, for up to the busy timeout.
 */
function pragmaWhenFree(db: BetterSqlite3.Database, pragma: string, timeoutMs: number): unknown {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      return db.pragma(pragma, { simple: true });
    } catch (error) {
      const busy = (error as { code?: string }).code?.startsWith('SQLITE_BUSY');
      if (!busy || Date.now() > deadline) throw error;
      Atomics.wait(pause, 0, 0, 10 + Math.floor(Math.random() * 20)); // open() is synchronous
    }
  }
}

/** Most transactions one commit makes durable together. */
const MAX_GROUP_COMMIT = 64;

interface QueuedTransaction<T> {
  readonly fn: (tx: Queryable) => Promise<T>;
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
  readonly retries: number;
}

/** Runs async critical sections one after another. */
class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

export class SqliteDatabase implements Database {
  readonly dialect = 'sqlite' as const;
  readonly path: string;
  readonly #db: BetterSqlite3.Database;
  readonly #conn: SqliteConnection;
  readonly #mutex = new Mutex();
  readonly #queue: QueuedTransaction<unknown>[] = [];
  #commits = 0;
  #retries = 0;
  #closed = false;

  private constructor(path: string, db: BetterSqlite3.Database) {
    this.path = path;
    this.#db = db;
    this.#conn = new SqliteConnection(db);
  }

  /**
   * Opens (creating file and directories if needed) the database at `options.path` in WAL
   * mode with `synchronous=FULL`; refuses a file whose journal cannot be put in WAL mode.
   * Does not run migrations (open.ts does).
   */
  static open(options: SqliteOptions): SqliteDatabase {
    const path = resolve(options.path);
    const busyTimeoutMs = options.busyTimeoutMs ?? SQLITE_BUSY_TIMEOUT_MS;
    mkdirSync(dirname(path), { recursive: true });
    const db = new BetterSqlite3(path, { timeout: busyTimeoutMs });
    try {
      // The busy timeout first: switching to WAL needs a lock another process may hold.
      db.pragma(`busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
      const journalMode = pragmaWhenFree(db, `journal_mode = ${SQLITE_JOURNAL_MODE}`, busyTimeoutMs);
      if (String(journalMode).toUpperCase() !== SQLITE_JOURNAL_MODE)
        throw new Error(`sqlite ${path}: journal_mode is ${String(journalMode)}, not ${SQLITE_JOURNAL_MODE}`);
      db.pragma(`synchronous = ${SQLITE_SYNCHRONOUS}`);
      db.pragma('foreign_keys = ON');
      return new SqliteDatabase(path, db);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  settings(): SqliteSettings {
    return {
      journalMode: String(this.#db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.#db.pragma('synchronous', { simple: true })),
      busyTimeoutMs: Number(this.#db.pragma('busy_timeout', { simple: true })),
      foreignKeys: Number(this.#db.pragma('foreign_keys', { simple: true })) === 1,
      sqliteVersion: String(this.#db.prepare('SELECT sqlite_version() AS v').pluck().get()),
    };
  }

  /** Runs `fn` on the connection when no other statement or transaction of this process is using it. */
  async #run<T>(fn: (conn: SqliteConnection) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error('database is closed');
    assertOutsideTransaction(this);
    return this.#mutex.run(() => fn(this.#conn));
  }

  query<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    return this.#run((c) => c.query<T>(sql, params));
  }

  one<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T> {
    return this.#run((c) => c.one<T>(sql, params));
  }

  maybeOne<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return this.#run((c) => c.maybeOne<T>(sql, params));
  }

  execute(sql: string, params?: readonly SqlParam[]): Promise<ExecuteResult> {
    return this.#run((c) => c.execute(sql, params));
  }

  executeScript(sql: string): Promise<void> {
    return this.#run((c) => c.executeScript(sql));
  }

  /**
   * Group commit: transactions requested while another batch holds the connection are queued
   * and then run together — each in its own SAVEPOINT, so one that throws rolls back alone —
   * inside one `BEGIN IMMEDIATE … COMMIT`. One fsync then makes the whole batch durable, and
   * only after it does any caller's promise settle. With synchronous=FULL an fsync per request
   * would otherwise cap the throughput of the one writer.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T> {
    if (this.#closed) return Promise.reject(new Error('database is closed'));
    assertOutsideTransaction(this);
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve, reject, retries: retriesOf(options) } as QueuedTransaction<unknown>);
      if (this.#queue.length === 1) void this.#mutex.run(() => this.#drain());
    });
  }

  /** Runs every queued transaction, in batches, until the queue is empty. */
  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_GROUP_COMMIT);
      await this.#runBatch(batch);
    }
  }

  async #runBatch(batch: QueuedTransaction<unknown>[]): Promise<void> {
    // IMMEDIATE: take the write lock now (waiting up to busy_timeout for another process),
    // so no transaction can fail later on a read-to-write lock upgrade.
    for (let attempt = 1; ; attempt++) {
      try {
        this.#db.exec('BEGIN IMMEDIATE');
        break;
      } catch (error) {
        // BEGIN IMMEDIATE already waited the whole busy timeout: one more try, not `retries`.
        if (attempt > 1 || !isRetryableTransactionError(error)) {
          for (const job of batch) job.reject(error);
          return;
        }
        this.#retries++;
        await sleep(retryDelayMs(attempt));
      }
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    for (const job of batch) {
      this.#db.exec('SAVEPOINT pilepass_tx');
      const handle = new TransactionHandle(this.#conn);
      try {
        const value = await inTransactionScope(this, () => job.fn(handle));
        this.#db.exec('RELEASE pilepass_tx');
        outcomes.push({ ok: true, value });
      } catch (error) {
        this.#db.exec('ROLLBACK TO pilepass_tx');
        this.#db.exec('RELEASE pilepass_tx');
        outcomes.push({ ok: false, error });
      } finally {
        handle.end();
      }
    }
    try {
      this.#db.exec('COMMIT');
    } catch (error) {
      if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
      for (const job of batch) job.reject(error);
      return;
    }
    this.#commits += outcomes.filter((o) => o.ok).length;
    batch.forEach((job, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.error);
    });
  }

  stats(): DatabaseStats {
    return { commits: this.#commits, retries: this.#retries };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#mutex.run(async () => {
      if (this.#closed) return;
      this.#closed = true;
      // Lets SQLite refresh planner statistics for the next start; cheap when nothing changed.
      this.#db.pragma('optimize');
      this.#db.close();
    });
  }
}

export function openSqlite(options: SqliteOptions): SqliteDatabase {
  return SqliteDatabase.open(options);
}
