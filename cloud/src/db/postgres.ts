/**
 * The scale-out backend: a `pg` connection pool behind the async `Database` API, for
 * PostgreSQL and Postgres-compatible distributed SQL.
 *
 * Transactions are `SERIALIZABLE` by default and are retried on serialization failures and
 * deadlocks (SQLSTATE 40001, 40P01 — also when COMMIT reports them) with a bounded,
 * full-jitter exponential backoff, releasing the connection while waiting; a failure whose
 * outcome is unknown (connection lost during COMMIT) is never retried. Every connection has
 * a statement timeout and an idle-in-transaction timeout so a stuck client cannot hold locks
 * forever. TLS and everything else about the connection come from the URL (`sslmode=…`,
 * `options=-c search_path=…`).
 *
 * Values: BIGINT (int8) and NUMERIC arrive as exact JS numbers (a RangeError when not
 * exactly representable), BYTEA as plain Uint8Array; the parsers are per pool, the global
 * `pg.types` registry is left alone. Statements always use the extended protocol, so one
 * statement per call, as on SQLite, and are prepared once per connection under a name derived
 * from their text (parsed and planned once, not on every call).
 * @module
 */

import { createHash } from 'node:crypto';
import pg from 'pg';
import {
  assertOutsideTransaction,
  atMostOne,
  type Database,
  type DatabaseStats,
  type ExecuteResult,
  encodeParams,
  exactlyOne,
  type Isolation,
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

export const POSTGRES_DEFAULT_POOL_SIZE = 10;
export const POSTGRES_STATEMENT_TIMEOUT_MS = 30_000;
export const POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

export interface PostgresOptions {
  /** `postgres://` or `postgresql://` URL. */
  readonly url: string;
  /** Connections per process; default 10. */
  readonly poolSize?: number;
  readonly statementTimeoutMs?: number;
  readonly applicationName?: string;
  /** Errors of idle pooled connections (the pool drops them); default: a process warning. */
  readonly onError?: (error: Error) => void;
}

const OID_BYTEA = 17;
const OID_INT8 = 20;
const OID_NUMERIC = 1700;

function parseNumeric(text: string): number {
  // Integral values (SUM of BIGINT is NUMERIC in PostgreSQL) must be exact; others are floats,
  // as SQLite's REAL would be.
  return /^-?\d+$/.test(text) ? toSafeNumber(text) : Number(text);
}

const parseByteaText = pg.types.getTypeParser(OID_BYTEA, 'text') as (text: string) => Buffer;

/** This backend's value parsers; anything else falls back to pg's defaults. */
function getTypeParser(oid: number, format?: 'text' | 'binary'): unknown {
  if (format === 'binary') return pg.types.getTypeParser(oid, 'binary');
  switch (oid) {
    case OID_INT8:
      return (text: string) => toSafeNumber(text);
    case OID_NUMERIC:
      return parseNumeric;
    case OID_BYTEA:
      return (text: string) => plainBytes(parseByteaText(text));
    default:
      return pg.types.getTypeParser(oid, 'text');
  }
}

const TYPES = { getTypeParser } as pg.CustomTypesConfig;

function encodePgParam(value: SqlParam): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return value;
}

/** Statement names by SQL text: the repositories' SQL is a bounded set of constant strings. */
const statementNames = new Map<string, string>();
const MAX_STATEMENT_NAMES = 2_000;

/**
 * The name a statement is prepared under on each connection: `pp_` and 96 bits of its text's
 * SHA-256 (a name must never stand for two texts). Named, a statement is parsed and planned
 * once per connection instead of on every call.
 */
function statementName(sql: string): string | undefined {
  let name = statementNames.get(sql);
  if (name === undefined) {
    // A runaway set of texts (SQL built with values inlined) would prepare without bound.
    if (statementNames.size >= MAX_STATEMENT_NAMES) return undefined;
    name = `pp_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
    statementNames.set(sql, name);
  }
  return name;
}

/** One statement, extended protocol (so never several statements in one call), prepared by name. */
function statement(sql: string, params: readonly SqlParam[] | undefined): pg.QueryConfig {
  return {
    name: statementName(sql),
    text: sql,
    values: encodeParams(params, encodePgParam),
    queryMode: 'extended',
  } as pg.QueryConfig;
}

type PgRunner = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** A pool or a checked-out client as a Queryable. */
class PgQueryable implements Queryable {
  readonly dialect = 'postgres' as const;
  readonly #runner: PgRunner;

  constructor(runner: PgRunner) {
    this.#runner = runner;
  }

  async query<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    const result = await this.#runner.query(statement(sql, params));
    return result.rows as T[];
  }

  async one<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T> {
    return exactlyOne(await this.query<T>(sql, params), sql);
  }

  async maybeOne<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return atMostOne(await this.query<T>(sql, params), sql);
  }

  async execute(sql: string, params?: readonly SqlParam[]): Promise<ExecuteResult> {
    const result = await this.#runner.query(statement(sql, params));
    return { rowCount: result.rowCount ?? 0 };
  }

  async executeScript(sql: string): Promise<void> {
    await this.#runner.query(sql);
  }
}

const BEGIN: Record<Isolation, string> = {
  serializable: 'BEGIN ISOLATION LEVEL SERIALIZABLE',
  'read committed': 'BEGIN ISOLATION LEVEL READ COMMITTED',
};

export class PostgresDatabase implements Database {
  readonly dialect = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #direct: PgQueryable;
  #commits = 0;
  #retries = 0;
  #closed = false;

  constructor(options: PostgresOptions) {
    const onError =
      options.onError ??
      ((error: Error) => process.emitWarning(`idle PostgreSQL connection failed: ${error.message}`));
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? POSTGRES_DEFAULT_POOL_SIZE,
      statement_timeout: options.statementTimeoutMs ?? POSTGRES_STATEMENT_TIMEOUT_MS,
      idle_in_transaction_session_timeout: POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      application_name: options.applicationName ?? 'pilepass-cloud',
      connectionTimeoutMillis: 15_000,
      idleTimeoutMillis: 30_000,
      types: TYPES,
    });
    this.#pool.on('error', onError);
    this.#direct = new PgQueryable(this.#pool);
  }

  #checked(): PgQueryable {
    if (this.#closed) throw new Error('database is closed');
    assertOutsideTransaction(this);
    return this.#direct;
  }

  async query<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    return this.#checked().query<T>(sql, params);
  }

  async one<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T> {
    return this.#checked().one<T>(sql, params);
  }

  async maybeOne<T = Row>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return this.#checked().maybeOne<T>(sql, params);
  }

  async execute(sql: string, params?: readonly SqlParam[]): Promise<ExecuteResult> {
    return this.#checked().execute(sql, params);
  }

  async executeScript(sql: string): Promise<void> {
    return this.#checked().executeScript(sql);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.#checked();
    const retries = retriesOf(options);
    const begin = BEGIN[options?.isolation ?? 'serializable'];
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#attempt(fn, begin);
      } catch (error) {
        if (attempt > retries || !isRetryableTransactionError(error)) throw error;
        this.#retries++;
        await sleep(retryDelayMs(attempt));
      }
    }
  }

  async #attempt<T>(fn: (tx: Queryable) => Promise<T>, begin: string): Promise<T> {
    const client = await this.#pool.connect();
    const handle = new TransactionHandle(new PgQueryable(client));
    // A connection in an unknown state is destroyed rather than returned to the pool.
    let broken: Error | undefined;
    try {
      try {
        await client.query(begin);
      } catch (error) {
        broken = asError(error);
        throw error;
      }
      let result: T;
      try {
        result = await inTransactionScope(this, () => fn(handle));
      } catch (error) {
        handle.end();
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = asError(rollbackError);
        });
        throw error;
      }
      handle.end();
      let committed: pg.QueryResult;
      try {
        committed = await client.query('COMMIT');
      } catch (error) {
        // A serialization failure at COMMIT means the server rolled back: safe to retry.
        // Anything else (connection lost) leaves the outcome unknown: surface it as is.
        if (!isRetryableTransactionError(error)) broken = asError(error);
        throw error;
      }
      // COMMIT of a transaction aborted by an earlier (caught) error answers ROLLBACK.
      if (committed.command !== 'COMMIT')
        throw new Error('transaction rolled back: a statement in it failed and the error was caught');
      this.#commits++;
      return result;
    } finally {
      handle.end();
      client.release(broken);
    }
  }

  stats(): DatabaseStats {
    return { commits: this.#commits, retries: this.#retries };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

export function openPostgres(options: PostgresOptions): PostgresDatabase {
  return new PostgresDatabase(options);
}
