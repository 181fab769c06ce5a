/**
 * The cloud's domain schema, as migrations for both backends. Portable SQL: BIGINT money in
 * minor units, BIGINT Unix seconds, TEXT ids, bytes as BYTEA (PostgreSQL) / BLOB (SQLite),
 * no backend-specific features beyond `INSERT … ON CONFLICT` and `RETURNING`.
 *
 * Money is double-entry: every movement is a journal entry whose lines sum to zero; account
 * balances are kept in `accounts.balance` and moved only by `money.ts`.
 * @module
 */

export interface DomainMigration {
  readonly id: string;
  /** SQL with {{bytes}} for the byte-string type. */
  readonly sql: string;
}

export const DOMAIN_MIGRATIONS: readonly DomainMigration[] = [
  {
    id: '100_money',
    sql: `
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  currency TEXT NOT NULL,
  balance BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL
);
CREATE TABLE journal (
  id TEXT PRIMARY KEY,
  at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL,
  memo TEXT NOT NULL DEFAULT ''
);
CREATE TABLE journal_lines (
  journal_id TEXT NOT NULL REFERENCES journal(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount BIGINT NOT NULL,
  PRIMARY KEY (journal_id, account_id)
);
CREATE INDEX journal_ref ON journal(ref);
`,
  },
  {
    id: '110_drivers',
    sql: `
CREATE TABLE drivers (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  currency TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE auth_sessions (
  token_hash TEXT PRIMARY KEY,
  driver_id TEXT NOT NULL REFERENCES drivers(id),
  expires_at BIGINT NOT NULL
);
`,
  },
  {
    id: '120_keys_and_stations',
    sql: `
CREATE TABLE signing_keys (
  kid {{bytes}} PRIMARY KEY,
  role TEXT NOT NULL,
  public_key {{bytes}} NOT NULL,
  encrypted_private_key {{bytes}} NOT NULL,
  not_before BIGINT NOT NULL,
  not_after BIGINT NOT NULL,
  revoked_at BIGINT,
  created_at BIGINT NOT NULL
);
CREATE TABLE gateways (
  id TEXT PRIMARY KEY,
  operator_id TEXT NOT NULL,
  name TEXT NOT NULL,
  public_key {{bytes}},
  key_digest {{bytes}},
  connectors TEXT NOT NULL,
  tariff TEXT NOT NULL,
  currency TEXT NOT NULL,
  location TEXT NOT NULL DEFAULT '',
  provisioning_code_hash TEXT,
  provisioning_expires_at BIGINT,
  provisioned_at BIGINT,
  key_revoked_at BIGINT,
  last_heartbeat_at BIGINT,
  flagged_at BIGINT,
  flag_reason TEXT,
  created_at BIGINT NOT NULL
);
CREATE TABLE bundle_versions (
  id TEXT PRIMARY KEY,
  version BIGINT NOT NULL
);
CREATE TABLE sync_nonces (
  nonce {{bytes}} PRIMARY KEY,
  gateway_id TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT
);
CREATE TABLE alerts (
  id TEXT PRIMARY KEY,
  gateway_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL,
  at BIGINT NOT NULL
);
`,
  },
  {
    id: '130_vouchers_and_receipts',
    sql: `
CREATE TABLE vouchers (
  cti {{bytes}} PRIMARY KEY,
  driver_id TEXT NOT NULL REFERENCES drivers(id),
  device_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL REFERENCES gateways(id),
  connector BIGINT,
  device_key {{bytes}} NOT NULL,
  revocation_hash {{bytes}} NOT NULL,
  hold_amount BIGINT NOT NULL,
  currency TEXT NOT NULL,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  grace_until BIGINT NOT NULL,
  state TEXT NOT NULL,
  captured BIGINT NOT NULL DEFAULT 0,
  refunded BIGINT NOT NULL DEFAULT 0,
  clawed_back BIGINT NOT NULL DEFAULT 0,
  cancelled_at BIGINT,
  cancelled_bundle_version BIGINT,
  voucher_bytes {{bytes}} NOT NULL
);
CREATE INDEX vouchers_driver ON vouchers(driver_id);
CREATE TABLE device_allowances (
  device_id TEXT PRIMARY KEY,
  outstanding BIGINT NOT NULL
);
CREATE INDEX vouchers_device_state ON vouchers(device_id, state);
CREATE INDEX vouchers_state_grace ON vouchers(state, grace_until);
CREATE TABLE receipts (
  hash {{bytes}} PRIMARY KEY,
  cti {{bytes}} NOT NULL,
  gateway_id TEXT NOT NULL,
  sequence BIGINT NOT NULL,
  previous_hash {{bytes}} NOT NULL,
  charged BIGINT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  gateway_verified {{bool}} NOT NULL,
  source TEXT NOT NULL,
  bytes {{bytes}} NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE INDEX receipts_cti ON receipts(cti);
CREATE INDEX receipts_gateway_seq ON receipts(gateway_id, sequence);
CREATE TABLE gateway_checkpoints (
  gateway_id TEXT NOT NULL,
  sequence BIGINT NOT NULL,
  head {{bytes}} NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (gateway_id, sequence)
);
CREATE TABLE revocation_attestations (
  gateway_id TEXT NOT NULL,
  bundle_version BIGINT NOT NULL,
  ledger_sequence BIGINT NOT NULL,
  spent_before_install TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (gateway_id, bundle_version)
);
CREATE TABLE idempotency_keys (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status_code BIGINT NOT NULL,
  response TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
`,
  },
  {
    id: '140_hold_providers',
    sql: `
ALTER TABLE drivers ADD COLUMN payment_method TEXT NOT NULL DEFAULT 'wallet';
ALTER TABLE vouchers ADD COLUMN hold_provider TEXT NOT NULL DEFAULT 'wallet';
ALTER TABLE vouchers ADD COLUMN hold_reference TEXT;
CREATE TABLE sandbox_cards (
  driver_id TEXT PRIMARY KEY,
  card_limit BIGINT NOT NULL,
  authorized BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE psp_authorizations (
  id TEXT PRIMARY KEY,
  driver_id TEXT NOT NULL,
  amount BIGINT NOT NULL,
  currency TEXT NOT NULL,
  captured BIGINT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE psp_events (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  authorization_id TEXT NOT NULL,
  received_at BIGINT NOT NULL
);
`,
  },
];
