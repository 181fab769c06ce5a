/**
 * Opens the cloud's database from configuration and brings its schema up to date.
 *
 * Backend choice: a `postgres://` or `postgresql://` URL (usually `DATABASE_URL`) selects
 * PostgreSQL; no URL selects SQLite at `sqlitePath` (default ./data/cloud.sqlite, relative to
 * the working directory). `sqlite:PATH` / `file:PATH` URLs name a SQLite file too; any other
 * URL is a configuration error rather than a silent fallback to a local file.
 * @module
 */

import type { Database } from './database.ts';
import { type Migration, runMigrations } from './migrate.ts';
import { MIGRATIONS } from './migrations.ts';
import { openPostgres } from './postgres.ts';
import { openSqlite } from './sqlite.ts';

export const DEFAULT_SQLITE_PATH = './data/cloud.sqlite';

export interface OpenDatabaseOptions {
  /** `DATABASE_URL`; empty or absent means SQLite. */
  readonly databaseUrl?: string | undefined;
  /** The SQLite file when there is no URL; default ./data/cloud.sqlite. */
  readonly sqlitePath?: string | undefined;
  /** Schema to apply; default the cloud's `MIGRATIONS`. */
  readonly migrations?: readonly Migration[];
  /** PostgreSQL connections in this process's pool. */
  readonly poolSize?: number;
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** Which backend and where, without opening anything. */
export function resolveDatabaseLocation(
  options: Pick<OpenDatabaseOptions, 'databaseUrl' | 'sqlitePath'>,
):
  | { readonly dialect: 'postgres'; readonly url: string }
  | { readonly dialect: 'sqlite'; readonly path: string } {
  const url = options.databaseUrl?.trim();
  if (url) {
    if (isPostgresUrl(url)) return { dialect: 'postgres', url };
    const file = /^(?:sqlite|file):(.+)$/i.exec(url);
    if (file?.[1]) return { dialect: 'sqlite', path: file[1].replace(/^\/\/(?=\/)/, '') };
    throw new Error('DATABASE_URL must start with postgres://, postgresql://, sqlite: or file:');
  }
  return { dialect: 'sqlite', path: options.sqlitePath || DEFAULT_SQLITE_PATH };
}

/** Opens the configured backend and runs the migrations; closes it again if they fail. */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  const location = resolveDatabaseLocation(options);
  const db: Database =
    location.dialect === 'postgres'
      ? openPostgres({ url: location.url, ...(options.poolSize ? { poolSize: options.poolSize } : {}) })
      : openSqlite({ path: location.path });
  try {
    await runMigrations(db, options.migrations ?? MIGRATIONS);
  } catch (error) {
    await db.close();
    throw error;
  }
  return db;
}
