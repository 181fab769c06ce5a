/**
 * The ledger's SQLite schema as an ordered list of migrations, and the runner that brings a
 * database file up to date at open. The version lives in `meta.schema_version`; each migration
 * runs in its own transaction with its version bump, so a crash mid-upgrade leaves the file at
 * the last complete version. A file newer than this code is refused rather than misread.
 * @module
 */

import type Database from 'better-sqlite3';

export interface Migration {
  /** 1, 2, 3, … in order; the schema version after this migration. */
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/**
 * Append only: never edit a shipped migration, add the next one. Tables are STRICT so that a
 * wrong type is an error instead of a silent conversion.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'hash-chained records, spent vouchers, sessions, receipt outbox, bundle, revocations',
    sql: `
      -- The hash chain (see chain.ts). seq is assigned by the ledger as head + 1, never reused.
      CREATE TABLE records (
        seq       INTEGER PRIMARY KEY CHECK (seq >= 1),
        kind      TEXT    NOT NULL,
        at        INTEGER NOT NULL,              -- gateway working clock, Unix s (not hashed)
        payload   BLOB    NOT NULL,
        prev_hash BLOB    NOT NULL CHECK (length(prev_hash) = 32),
        hash      BLOB    NOT NULL CHECK (length(hash) = 32)
      ) STRICT;

      -- One row per voucher ever spent here; never deleted (a voucher starts one session, ever).
      -- revocation_hash: the bundle's name for this cti, for spent-before-install attestations.
      CREATE TABLE spent_vouchers (
        cti             BLOB    PRIMARY KEY CHECK (length(cti) BETWEEN 1 AND 64),
        revocation_hash BLOB    NOT NULL CHECK (length(revocation_hash) = 16),
        spent_at        INTEGER NOT NULL,        -- gateway working clock, Unix s
        spend_seq       INTEGER NOT NULL UNIQUE REFERENCES records (seq)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX spent_vouchers_by_revocation_hash ON spent_vouchers (revocation_hash);

      -- Receipt outbox and chain index: hash = SHA-256(bytes), the receipt's identity.
      CREATE TABLE receipts (
        sequence INTEGER PRIMARY KEY REFERENCES records (seq),
        hash     BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
        bytes    BLOB    NOT NULL,
        acked    INTEGER NOT NULL DEFAULT 0 CHECK (acked IN (0, 1))
      ) STRICT;
      CREATE INDEX receipts_pending ON receipts (sequence) WHERE acked = 0;

      CREATE TABLE sessions (
        session_id        BLOB    PRIMARY KEY,
        cti               BLOB    NOT NULL UNIQUE REFERENCES spent_vouchers (cti),
        connector         INTEGER NOT NULL,
        voucher           BLOB    NOT NULL,
        device_key        BLOB    NOT NULL,
        hold_amount       INTEGER NOT NULL,      -- minor units
        currency          TEXT    NOT NULL,
        energy_price      INTEGER NOT NULL,      -- tariff, 1/10,000 minor unit per kWh
        service_fee       INTEGER NOT NULL,      -- 1/10,000 minor unit per kWh
        time_fee          INTEGER NOT NULL,      -- 1/10,000 minor unit per minute
        device_signature  BLOB    NOT NULL,
        transcript_digest BLOB    NOT NULL,
        proof_version     INTEGER NOT NULL,      -- rest of the presentation proof, for the receipt
        hello_bytes       BLOB    NOT NULL,
        phone_key         BLOB    NOT NULL,
        meter_id          TEXT    NOT NULL,
        meter_start_wh    INTEGER NOT NULL,
        started_at        INTEGER NOT NULL,      -- gateway working clock, Unix s
        state             TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
        last_meter_wh     INTEGER NOT NULL,
        last_meter_at     INTEGER NOT NULL,      -- gateway working clock, Unix s
        receipt_seq       INTEGER UNIQUE REFERENCES receipts (sequence),
        CHECK ((state = 'closed') = (receipt_seq IS NOT NULL))
      ) STRICT;
      -- Backstop for the charging module's own check: a connector runs one session at a time.
      CREATE UNIQUE INDEX sessions_one_open_per_connector ON sessions (connector) WHERE state = 'open';

      -- The installed sync bundle: one row, replaced on each install.
      CREATE TABLE installed_bundle (
        slot         INTEGER PRIMARY KEY CHECK (slot = 1),
        version      INTEGER NOT NULL,
        bytes        BLOB    NOT NULL,
        installed_at INTEGER NOT NULL,           -- gateway working clock, Unix s
        bundle_seq   INTEGER NOT NULL REFERENCES records (seq)
      ) STRICT;

      -- Revoked vouchers of the installed bundle, by the 16-byte revocation hash of their cti.
      CREATE TABLE revocations (
        hash           BLOB    PRIMARY KEY CHECK (length(hash) = 16),
        bundle_version INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;

      -- "Bundle V installed at ledger sequence N; of its revoked vouchers these were already
      -- spent here" (16-byte revocation hashes, concatenated), for reports; the latest 16 kept.
      CREATE TABLE attestations (
        bundle_version       INTEGER PRIMARY KEY,
        ledger_seq           INTEGER NOT NULL UNIQUE REFERENCES records (seq),
        spent_before_install BLOB    NOT NULL CHECK (length(spent_before_install) % 16 = 0)
      ) STRICT;
    `,
  },
];

export const SCHEMA_VERSION: number = MIGRATIONS.at(-1)?.version ?? 0;

/** Creates the meta table if needed and applies every pending migration, in order. */
export function migrate(db: Database.Database): { from: number; to: number } {
  // meta holds schema_version and the trusted time floor; integers only.
  db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT');
  const readVersion = db.prepare<[], { value: number }>(
    "SELECT value FROM meta WHERE key = 'schema_version'",
  );
  const writeVersion = db.prepare<[number]>(
    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) " +
      'ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  const from = readVersion.get()?.value ?? 0;
  if (from > SCHEMA_VERSION) {
    throw new Error(`ledger schema version ${from} is newer than this gateway (${SCHEMA_VERSION})`);
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= from) continue;
    db.transaction(() => {
      // Re-read inside the write lock: another process may have migrated meanwhile.
      if ((readVersion.get()?.value ?? 0) >= migration.version) return;
      db.exec(migration.sql);
      writeVersion.run(migration.version);
    }).immediate();
  }
  return { from, to: SCHEMA_VERSION };
}
