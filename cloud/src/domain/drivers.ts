/**
 * Drivers: register and sign in (scrypt password hashes, expiring session tokens stored only
 * as hashes), the wallet (balance, sandbox top-up), and the driver's view of their vouchers.
 * @module
 */

import { createHash, randomBytes, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Queryable } from '../db/database.ts';
import { type CloudContext, DomainError } from './context.ts';
import {
  balance,
  ensureAccount,
  FUNDING_ACCOUNT,
  holdsAccount,
  MONEY_TX,
  post,
  walletAccount,
} from './money.ts';
import { PSP_FUNDING_ACCOUNT } from './psp.ts';

const scrypt = promisify(scryptCb) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: object,
) => Promise<Buffer>;
/** scrypt cost (N = 2^15, r = 8, p = 1: ~32 MiB, tens of ms — OWASP's recommended minimum). */
const SCRYPT = { N: 32_768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const SESSION_SECONDS = 30 * 86_400;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,190}\.[^\s@]{2,}$/;

async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, 32, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64');
  const actual = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: SCRYPT.maxmem,
  });
  return timingSafeEqual(actual, expected);
}

const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

export async function registerDriver(
  ctx: CloudContext,
  email: string,
  password: string,
  currency = 'CNY',
): Promise<{ driverId: string }> {
  const normalized = email.trim().toLowerCase();
  if (!EMAIL.test(normalized)) throw new DomainError('invalid_email', 'enter a valid e-mail address');
  if (password.length < 8 || password.length > 256)
    throw new DomainError('weak_password', 'the password needs 8–256 characters');
  const id = randomUUID();
  const passwordHash = await hashPassword(password);
  const now = ctx.now();
  await ctx.db.transaction(async (tx) => {
    if (await tx.maybeOne('SELECT id FROM drivers WHERE email = $1', [normalized])) {
      throw new DomainError('email_taken', 'an account with this e-mail exists', 409);
    }
    await tx.execute(
      'INSERT INTO drivers (id, email, password_hash, currency, created_at) VALUES ($1, $2, $3, $4, $5)',
      [id, normalized, passwordHash, currency, now],
    );
    await ensureAccount(tx, walletAccount(id), 'wallet', id, currency, now);
    await ensureAccount(tx, holdsAccount(id), 'holds', id, currency, now);
    await ensureAccount(tx, FUNDING_ACCOUNT, 'funding', 'sandbox', currency, now);
    await ensureAccount(tx, PSP_FUNDING_ACCOUNT, 'funding', 'psp', currency, now);
  });
  return { driverId: id };
}

export async function signIn(
  ctx: CloudContext,
  email: string,
  password: string,
): Promise<{ token: string; expiresAt: number }> {
  const row = await ctx.db.maybeOne<{ id: string; password_hash: string }>(
    'SELECT id, password_hash FROM drivers WHERE email = $1',
    [email.trim().toLowerCase()],
  );
  // Same work whether or not the account exists: no account enumeration by timing.
  const ok = await verifyPassword(
    password,
    row?.password_hash ?? (await hashPassword('not-a-real-password')),
  );
  if (!row || !ok) throw new DomainError('invalid_credentials', 'wrong e-mail or password', 401);
  const token = randomBytes(32).toString('base64url');
  const expiresAt = ctx.now() + SESSION_SECONDS;
  await ctx.db.execute('INSERT INTO auth_sessions (token_hash, driver_id, expires_at) VALUES ($1, $2, $3)', [
    tokenHash(token),
    row.id,
    expiresAt,
  ]);
  return { token, expiresAt };
}

/** The driver behind a bearer token, or a 401. */
export async function authenticate(ctx: CloudContext, token: string | undefined): Promise<string> {
  if (!token) throw new DomainError('unauthenticated', 'sign in first', 401);
  const row = await ctx.db.maybeOne<{ driver_id: string }>(
    'SELECT driver_id FROM auth_sessions WHERE token_hash = $1 AND expires_at > $2',
    [tokenHash(token), ctx.now()],
  );
  if (!row) throw new DomainError('unauthenticated', 'the session has expired; sign in again', 401);
  return row.driver_id;
}

/** Sandbox top-up inside the caller's transaction (the API's idempotency record shares it). */
export async function topUpIn(
  tx: Queryable,
  ctx: CloudContext,
  driverId: string,
  amount: number,
): Promise<{ balance: number }> {
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > 10_000_000) {
    throw new DomainError('invalid_amount', 'top up 1–10,000,000 minor units');
  }
  await post(tx, {
    kind: 'top-up',
    ref: driverId,
    at: ctx.now(),
    lines: [
      { account: FUNDING_ACCOUNT, amount: -amount },
      { account: walletAccount(driverId), amount },
    ],
  });
  return { balance: await balance(tx, walletAccount(driverId)) };
}

/** Sandbox top-up: money enters from the sandbox funding account (a real PSP in production). */
export async function topUp(
  ctx: CloudContext,
  driverId: string,
  amount: number,
): Promise<{ balance: number }> {
  return ctx.db.transaction((tx) => topUpIn(tx, ctx, driverId, amount), MONEY_TX);
}

export async function walletOf(ctx: CloudContext, driverId: string) {
  const row = await ctx.db.maybeOne<{ currency: string }>('SELECT currency FROM drivers WHERE id = $1', [
    driverId,
  ]);
  if (!row) throw new DomainError('unknown_driver', 'no such driver', 404);
  return {
    currency: row.currency,
    /** May be negative after a claw-back (bounded by the hold of the late voucher). */
    balance: await balance(ctx.db, walletAccount(driverId)),
    held: await balance(ctx.db, holdsAccount(driverId)),
  };
}

/** Which hold provider stands behind the driver's next vouchers. */
export async function setPaymentMethod(
  ctx: CloudContext,
  driverId: string,
  method: 'wallet' | 'sandbox-preauth',
): Promise<void> {
  const { rowCount } = await ctx.db.execute('UPDATE drivers SET payment_method = $1 WHERE id = $2', [
    method,
    driverId,
  ]);
  if (rowCount !== 1) throw new DomainError('unknown_driver', 'no such driver', 404);
}
