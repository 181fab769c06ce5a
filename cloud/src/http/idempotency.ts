/**
 * Idempotency keys for every POST that moves money (Stripe's shape): the client sends an
 * `Idempotency-Key`; the first request with it runs and its response is stored; a retry with
 * the same key and body gets the stored response; the same key with another body is refused.
 * The key is reserved before the work starts, so two concurrent retries cannot both run.
 * @module
 */

import { createHash } from 'node:crypto';
import type { CloudContext } from '../domain/context.ts';
import { DomainError } from '../domain/context.ts';

export interface StoredResponse {
  readonly statusCode: number;
  readonly body: unknown;
}

const KEY = /^[A-Za-z0-9._:-]{8,128}$/;
const IN_PROGRESS = 0;

export async function withIdempotency(
  ctx: CloudContext,
  scope: string,
  key: string | undefined,
  requestBody: unknown,
  run: () => Promise<StoredResponse>,
): Promise<StoredResponse> {
  if (!key)
    throw new DomainError(
      'idempotency_key_required',
      'send an Idempotency-Key header (8–128 characters)',
      400,
    );
  if (!KEY.test(key))
    throw new DomainError(
      'invalid_idempotency_key',
      'the Idempotency-Key must be 8–128 of A–Z a–z 0–9 . _ : -',
    );
  const requestHash = createHash('sha256')
    .update(JSON.stringify(requestBody ?? null))
    .digest('hex');
  const reserved = await ctx.db.execute(
    `INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at)
     VALUES ($1, $2, $3, $4, '', $5) ON CONFLICT (scope, key) DO NOTHING`,
    [scope, key, requestHash, IN_PROGRESS, ctx.now()],
  );
  if (reserved.rowCount !== 1) {
    const stored = await ctx.db.one<{ request_hash: string; status_code: number; response: string }>(
      'SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND key = $2',
      [scope, key],
    );
    if (stored.request_hash !== requestHash) {
      throw new DomainError(
        'idempotency_key_reused',
        'this Idempotency-Key was used with a different request',
        422,
      );
    }
    if (stored.status_code === IN_PROGRESS) {
      throw new DomainError(
        'request_in_progress',
        'the first request with this Idempotency-Key is still running',
        409,
      );
    }
    return { statusCode: stored.status_code, body: JSON.parse(stored.response) };
  }
  let response: StoredResponse;
  try {
    response = await run();
  } catch (err) {
    if (err instanceof DomainError && err.status < 500) {
      response = { statusCode: err.status, body: { error: { code: err.code, message: err.message } } };
    } else {
      // Nothing happened that a retry should not redo: free the key.
      await ctx.db.execute('DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2', [scope, key]);
      throw err;
    }
  }
  await ctx.db.execute(
    'UPDATE idempotency_keys SET status_code = $1, response = $2 WHERE scope = $3 AND key = $4',
    [response.statusCode, JSON.stringify(response.body), scope, key],
  );
  return response;
}
