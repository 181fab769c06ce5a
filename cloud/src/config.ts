/**
 * Cloud configuration from the environment, on embedded defaults for a local station:
 * SQLite under ./data unless `DATABASE_URL` names PostgreSQL; the master key that encrypts
 * signing keys at rest from `PILEPASS_MASTER_KEY` (64 hex digits) — or, for local use only, a
 * key file created once under the data dir with a warning; the operator API token likewise.
 * Money rules (voucher lifetime 7 days, grace 30 days, caps) can be overridden per variable.
 * @module
 */

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MONEY_RULES, type MoneyRules } from './domain/context.ts';

export interface CloudConfig {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly masterKey: Uint8Array;
  readonly operatorToken: string;
  /** Shared secret for the sandbox PSP's signed webhooks. */
  readonly pspWebhookSecret: string;
  readonly rules: MoneyRules;
  readonly issuer: string;
  /** How often the refund job runs inside the service (s). */
  readonly refundJobSeconds: number;
  readonly warnings: readonly string[];
}

function secretFile(path: string, make: () => string, warnings: string[], what: string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const value = make();
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  warnings.push(`${what} generated in ${path} (local use only: set it from the environment in production)`);
  return value;
}

function intFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

export function loadCloudConfig(env: NodeJS.ProcessEnv = process.env): CloudConfig {
  const warnings: string[] = [];
  const dataDir = env.PILEPASS_DATA_DIR ?? './data';
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const masterHex =
    env.PILEPASS_MASTER_KEY ??
    secretFile(
      join(dataDir, 'cloud-master.key'),
      () => randomBytes(32).toString('hex'),
      warnings,
      'master key',
    );
  if (!/^[0-9a-fA-F]{64}$/.test(masterHex))
    throw new Error('PILEPASS_MASTER_KEY must be 64 hex digits (32 bytes)');
  const operatorToken =
    env.PILEPASS_OPERATOR_TOKEN ??
    secretFile(
      join(dataDir, 'operator-token'),
      () => randomBytes(24).toString('base64url'),
      warnings,
      'operator token',
    );
  const pspWebhookSecret =
    env.PILEPASS_PSP_WEBHOOK_SECRET ??
    secretFile(
      join(dataDir, 'psp-webhook-secret'),
      () => randomBytes(24).toString('base64url'),
      warnings,
      'PSP webhook secret',
    );
  return {
    port: intFromEnv(env, 'PORT', 8080),
    host: env.HOST ?? '127.0.0.1',
    dataDir,
    databaseUrl: env.DATABASE_URL || undefined,
    masterKey: new Uint8Array(Buffer.from(masterHex, 'hex')),
    operatorToken,
    pspWebhookSecret,
    rules: {
      voucherLifetimeSeconds: intFromEnv(
        env,
        'PILEPASS_VOUCHER_LIFETIME_SECONDS',
        DEFAULT_MONEY_RULES.voucherLifetimeSeconds,
      ),
      graceSeconds: intFromEnv(env, 'PILEPASS_GRACE_SECONDS', DEFAULT_MONEY_RULES.graceSeconds),
      perDeviceCap: intFromEnv(env, 'PILEPASS_PER_DEVICE_CAP', DEFAULT_MONEY_RULES.perDeviceCap),
      maxHold: intFromEnv(env, 'PILEPASS_MAX_HOLD', DEFAULT_MONEY_RULES.maxHold),
      minHold: intFromEnv(env, 'PILEPASS_MIN_HOLD', DEFAULT_MONEY_RULES.minHold),
    },
    issuer: env.PILEPASS_ISSUER ?? 'pilepass',
    refundJobSeconds: intFromEnv(env, 'PILEPASS_REFUND_JOB_SECONDS', 60),
    warnings,
  };
}
