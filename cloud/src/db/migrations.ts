/**
 * The cloud's schema, as the ordered list of migrations `openDatabase` applies (format and
 * rules: migrate.ts; SQL subset: database.ts).
 *
 * Append new migrations at the end with a new id — never edit or reorder one that has
 * shipped: the runner refuses a database whose applied migration no longer matches. Ids sort
 * in list order by convention (`NNN_name`); domain tables start at 100.
 * @module
 */

import { DOMAIN_MIGRATIONS } from '../domain/schema.ts';
import type { Migration } from './migrate.ts';

export const MIGRATIONS: readonly Migration[] = [
  {
    // Small key/value facts about the installation (e.g. when it was created); also keeps
    // the runner exercised before the domain tables exist.
    id: '001_kv_meta',
    sql: `
CREATE TABLE kv_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at {{bigint}} NOT NULL
);
`,
  },
  // The money, station and settlement tables (ids from 100).
  ...DOMAIN_MIGRATIONS,
];
