/**
 * The cloud's storage abstraction: one repository layer, two backends — SQLite
 * (better-sqlite3, the embedded default; sqlite.ts) and PostgreSQL (`pg`, for scale;
 * postgres.ts) — chosen by open.ts. Repositories are written once, against `Queryable`, and
 * the same test suite runs them on both backends.
 *
 * ## The SQL dialect
 * One dialect in the code: PostgreSQL syntax restricted to what SQLite ≥ 3.35 and
 * Postgres-compatible distributed SQL also accept.
 * - Placeholders are `$1, $2, …` (each may repeat; every number from 1 to the highest must be
 *   used, and `params.length` must equal the highest — PostgreSQL's rule, enforced on SQLite
 *   too). The SQLite backend rewrites them to positional `?`.
 * - Allowed: SELECT/INSERT/UPDATE/DELETE, joins, subqueries, CTEs (`WITH`), `ORDER BY/LIMIT/
 *   OFFSET`, aggregates, `CASE`, `COALESCE`, `CAST(x AS BIGINT)`, `RETURNING`,
 *   `INSERT … ON CONFLICT (cols) DO NOTHING` and `… DO UPDATE SET c = excluded.c`
 *   (always name the conflict columns), the literals `TRUE`/`FALSE`.
 * - Not allowed: `::` casts (use `CAST`), `ILIKE`, `SELECT … FOR UPDATE` (not needed: see
 *   transactions), `NOW()`/`CURRENT_TIMESTAMP` (times are explicit Unix seconds passed as
 *   parameters), dollar-quoted strings, `SERIAL`, JSON operators, arrays, `NUMERIC`/`DECIMAL`
 *   columns, backend-specific functions. A parameter whose type only the context gives
 *   (`SELECT $1 AS x`) is text on PostgreSQL: write `CAST($1 AS BIGINT)`.
 * - Identifiers are lower-case snake_case, column aliases too: PostgreSQL folds unquoted
 *   names to lower case, SQLite keeps them as written, so `AS myName` would differ.
 * - A boolean-valued expression in a select list (`SELECT a = b AS same`) is a boolean on
 *   PostgreSQL and 0/1 on SQLite; select BOOLEAN *columns* (converted on both) or use
 *   `CASE WHEN … THEN 1 ELSE 0 END`.
 * - Schema (migrations) may use `{{bytes}}`, `{{bigint}}`, `{{bool}}`, `{{id}}`; see migrate.ts.
 *
 * ## Values
 * Parameters and results are `SqlParam`: TEXT ↔ string; BIGINT/INTEGER ↔ number (a safe
 * integer — values outside ±(2^53 − 1) are refused in both directions with a RangeError, never
 * rounded; a `bigint` parameter is accepted too); BYTEA/BLOB ↔ Uint8Array (a plain
 * Uint8Array, never a Buffer, on both backends); BOOLEAN ↔ boolean (SQLite stores 0/1 and
 * the backend converts columns declared BOOLEAN); NULL ↔ null. `undefined`, `Date`, objects
 * and non-finite numbers are refused. Money is integer minor units, time is Unix seconds;
 * both are BIGINT.
 *
 * ## Transactions
 * `transaction(fn)` runs `fn` with a transaction handle and commits when it resolves, rolls
 * back when it throws. Both backends give serializable transactions by default: SQLite takes
 * the write lock at `BEGIN IMMEDIATE` (other processes wait up to the busy timeout; a
 * SQLITE_BUSY after that is retried once), PostgreSQL runs `ISOLATION LEVEL SERIALIZABLE`
 * and retries serialization failures and deadlocks (SQLSTATE 40001/40P01) up to `retries`
 * times with a full-jitter exponential backoff (4 ms doubling, capped at 1 s). So
 * read-check-write code inside a transaction is safe on both. Consequences:
 * - `fn` may run more than once: it must have no effects outside the database (or only
 *   idempotent ones), and must not do slow I/O while the SQLite write lock is held.
 * - Inside `fn`, use only the `tx` handle: calling the `Database` itself (query or nested
 *   transaction) from inside `fn` throws instead of deadlocking.
 * - Do not catch a failed statement inside `fn` and carry on: PostgreSQL aborts the whole
 *   transaction (the commit then fails), SQLite only the statement. Let it throw.
 * - Statements outside `transaction` run in autocommit mode (each its own transaction, not
 *   retried): good for single-statement reads and conditional writes such as
 *   `UPDATE wallet SET balance = balance - $1 WHERE id = $2 AND balance >= $1`.
 * - Hot rows: under SERIALIZABLE every commit to a row aborts the PostgreSQL transactions
 *   waiting on it, so many concurrent transactions on one row cost retries (measured: 200
 *   concurrent debits of one wallet from two processes, ~1 000 retries; 400 at once through
 *   50 connections still completes with the default 20 retries). A transaction whose safety
 *   rests only on conditional statements and constraints (the wallet debit above plus
 *   inserts) may pass `isolation: 'read committed'`: PostgreSQL then re-checks the `WHERE`
 *   on the latest row version instead of failing, no retries. Read-then-write logic
 *   (`SELECT` a value, compute, `UPDATE` with it) needs the default. SQLite is always
 *   serializable. The migration runner uses 'read committed' under its advisory lock.
 * - Several processes on one SQLite file are safe (the write lock serializes them) but not
 *   fair: a waiting process sleeps in SQLite's busy handler, blocking its event loop, while
 *   a busy one may take the lock again and again (measured: one process runs its 100
 *   debits, then the other). Run one cloud process per SQLite file; use PostgreSQL to scale
 *   out.
 * @module
 */

import { AsyncLocalStorage } from 'node:async_hooks';

export type Dialect = 'sqlite' | 'postgres';

/** A value bound to a `$n` placeholder. */
export type SqlParam = string | number | bigint | boolean | Uint8Array | null;

/** A result row, keyed by (lower-case) column name. */
export type Row = Record<string, unknown>;

export interface ExecuteResult {
  /** Rows inserted, updated or deleted (for a statement returning rows: how many it returned). */
  readonly rowCount: number;
}

/** What repositories are written against: a database, or a transaction on one. */
export interface Queryable {
  readonly dialect: Dialect;
  /** All rows of one statement (none for a statement that returns no rows). */
  query<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]>;
  /** Exactly one row, else a `RowCountError`. */
  one<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T>;
  /** The row, or undefined when there is none; more than one is a `RowCountError`. */
  maybeOne<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined>;
  /** Runs one statement and reports how many rows it affected. */
  execute(sql: string, params?: readonly SqlParam[]): Promise<ExecuteResult>;
  /** Runs several `;`-separated statements without parameters (migrations, setup). */
  executeScript(sql: string): Promise<void>;
}

export type Isolation = 'serializable' | 'read committed';

export interface TransactionOptions {
  /** How many times a retryable failure (serialization, deadlock, busy) is retried; default 20. */
  readonly retries?: number;
  /** Default 'serializable'. 'read committed' applies to PostgreSQL only. */
  readonly isolation?: Isolation;
}

export interface DatabaseStats {
  /** Transactions committed. */
  readonly commits: number;
  /** Transaction attempts that were rolled back and run again. */
  readonly retries: number;
}

export interface Database extends Queryable {
  transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Counters since open, for tests, benchmarks and health output. */
  stats(): DatabaseStats;
  close(): Promise<void>;
}

export const DEFAULT_TRANSACTION_RETRIES = 20;

/** `one`/`maybeOne` got the wrong number of rows. */
export class RowCountError extends Error {
  readonly rows: number;
  constructor(expected: string, rows: number, sql: string) {
    super(`expected ${expected} row, got ${rows}: ${sql.trim().slice(0, 200)}`);
    this.name = 'RowCountError';
    this.rows = rows;
  }
}

export function exactlyOne<T>(rows: T[], sql: string): T {
  if (rows.length !== 1) throw new RowCountError('exactly one', rows.length, sql);
  return rows[0]!;
}

export function atMostOne<T>(rows: T[], sql: string): T | undefined {
  if (rows.length > 1) throw new RowCountError('at most one', rows.length, sql);
  return rows[0];
}

// ---- values ------------------------------------------------------------------------------------

/** A BIGINT from the driver as a JS number, refusing anything that would lose precision. */
export function toSafeNumber(value: bigint | string, column?: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || (typeof value === 'bigint' ? BigInt(n) !== value : String(n) !== value)) {
    const where = column === undefined ? '' : ` in column ${column}`;
    throw new RangeError(`integer ${String(value)}${where} is outside the safe range of a JS number`);
  }
  return n;
}

/**
 * Checks the parameters every backend accepts and maps each through `convert` (the backend's
 * encoding of booleans, bigints and bytes).
 */
export function encodeParams<P>(params: readonly SqlParam[] | undefined, convert: (v: SqlParam) => P): P[] {
  if (params === undefined) return [];
  if (!Array.isArray(params)) throw new TypeError('SQL parameters must be an array');
  return params.map((value: unknown, i) => {
    const where = `SQL parameter $${i + 1}`;
    if (value === undefined) throw new TypeError(`${where} is undefined`);
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new RangeError(`${where} is ${value}`);
      if (Number.isInteger(value) && !Number.isSafeInteger(value))
        throw new RangeError(`${where} (${value}) is an integer outside the safe range; pass a bigint`);
    } else if (typeof value === 'bigint') {
      if (value > 0x7fff_ffff_ffff_ffffn || value < -0x8000_0000_0000_0000n)
        throw new RangeError(`${where} does not fit a 64-bit BIGINT`);
    } else if (
      value !== null &&
      typeof value !== 'string' &&
      typeof value !== 'boolean' &&
      !(value instanceof Uint8Array)
    ) {
      const kind = value instanceof Date ? 'a Date (pass Unix seconds)' : typeof value;
      throw new TypeError(`${where} is ${kind}, not a string, number, bigint, boolean, Uint8Array or null`);
    }
    return convert(value as SqlParam);
  });
}

/** A plain Uint8Array copy of a driver Buffer (which may be a view into a shared pool). */
export function plainBytes(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer);
}

// ---- errors --------------------------------------------------------------------------------------

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** A serialization failure, deadlock or lock timeout: the transaction may succeed if run again. */
export function isRetryableTransactionError(error: unknown): boolean {
  const code = errorCode(error);
  return code === '40001' || code === '40P01' || code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT';
}

/** UNIQUE or PRIMARY KEY violation, on either backend. */
export function isUniqueViolation(error: unknown): boolean {
  const code = errorCode(error);
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export function isForeignKeyViolation(error: unknown): boolean {
  const code = errorCode(error);
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

export function isCheckViolation(error: unknown): boolean {
  const code = errorCode(error);
  return code === '23514' || code === 'SQLITE_CONSTRAINT_CHECK';
}

export function isNotNullViolation(error: unknown): boolean {
  const code = errorCode(error);
  return code === '23502' || code === 'SQLITE_CONSTRAINT_NOTNULL';
}

// ---- transaction helpers ------------------------------------------------------------------------

/** Full-jitter exponential backoff before retry number `attempt` (1-based), in ms. */
export function retryDelayMs(attempt: number, baseMs = 4, capMs = 1000): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** (attempt - 1));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function retriesOf(options: TransactionOptions | undefined): number {
  const retries = options?.retries ?? DEFAULT_TRANSACTION_RETRIES;
  if (!Number.isInteger(retries) || retries < 0)
    throw new RangeError(`retries must be a non-negative integer`);
  return retries;
}

interface TransactionScope {
  readonly owner: object;
  open: boolean;
}

const transactionScope = new AsyncLocalStorage<TransactionScope>();

/** Runs `fn` marked as inside a transaction of `owner` (until it settles). */
export async function inTransactionScope<T>(owner: object, fn: () => Promise<T>): Promise<T> {
  const scope: TransactionScope = { owner, open: true };
  try {
    return await transactionScope.run(scope, fn);
  } finally {
    scope.open = false;
  }
}

/** Throws when called from inside a transaction callback of the same database. */
export function assertOutsideTransaction(owner: object): void {
  const scope = transactionScope.getStore();
  if (scope?.open && scope.owner === owner)
    throw new Error(
      'database used directly inside its own transaction callback: use the tx handle passed to the callback',
    );
}

/** A handle that refuses use once its transaction attempt has ended. */
export class TransactionHandle implements Queryable {
  readonly dialect: Dialect;
  #inner: Queryable | undefined;

  constructor(inner: Queryable) {
    this.dialect = inner.dialect;
    this.#inner = inner;
  }

  end(): void {
    this.#inner = undefined;
  }

  #live(): Queryable {
    if (!this.#inner) throw new Error('transaction handle used after its transaction ended');
    return this.#inner;
  }

  async query<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    return this.#live().query<T>(sql, params);
  }
  async one<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T> {
    return this.#live().one<T>(sql, params);
  }
  async maybeOne<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return this.#live().maybeOne<T>(sql, params);
  }
  async execute(sql: string, params?: readonly SqlParam[]): Promise<ExecuteResult> {
    return this.#live().execute(sql, params);
  }
  async executeScript(sql: string): Promise<void> {
    return this.#live().executeScript(sql);
  }
}
