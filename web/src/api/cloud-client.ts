/**
 * The PWA's client for the PilePass cloud API (docs/cloud.md), same origin under `/v1` (in
 * production a TLS reverse proxy serves the app and the API together; locally the PWA server
 * proxies `/v1`). Every failure is a {@link CloudError}: `offline` when no answer came (the
 * normal case at a station), otherwise the cloud's own `{ code, message }`.
 * @module
 */

import type { StationView } from '../../../cloud/src/domain/stations.ts';

// The cloud's own definitions (type-only: nothing of the server is bundled into the app).
export type { ConnectorSpec, StationView } from '../../../cloud/src/domain/stations.ts';

export interface Wallet {
  readonly currency: string;
  /** Minor units; may be negative after a late claw-back (bounded by that voucher's hold). */
  readonly balance: number;
  readonly held: number;
}

export interface IssuedVoucher {
  readonly cti: string;
  /** base64url of the COSE voucher bytes. */
  readonly voucher: string;
  readonly holdAmount: number;
  readonly currency: string;
  readonly expiresAt: number;
  readonly graceUntil: number;
}

export type CloudVoucherState = 'issued' | 'cancelled' | 'settled' | 'refunded';

export interface CloudVoucher {
  readonly cti: string;
  readonly gatewayId: string;
  readonly connector: number | null;
  readonly state: CloudVoucherState;
  readonly holdAmount: number;
  readonly captured: number;
  readonly refunded: number;
  readonly clawedBack: number;
  readonly currency: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly voucher: string;
}

export type UploadOutcome = { readonly status: string; readonly hash?: string };

/** Why a cloud call failed: `offline` (no answer), or the cloud's error code. */
export class CloudError extends Error {
  override readonly name = 'CloudError';
  readonly code: string;
  readonly status: number;

  constructor(code: string, message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = status;
  }

  get offline(): boolean {
    return this.code === 'offline';
  }
}

export function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64Url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

function randomKey(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}

export interface CloudClientOptions {
  /** Base of the API, default `/v1` on this origin. */
  readonly base?: string;
  readonly fetch?: typeof fetch;
  /** How long to wait for an answer before calling the cloud unreachable. */
  readonly timeoutMs?: number;
}

export class CloudClient {
  readonly #base: string;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  token: string | undefined;

  constructor(options: CloudClientOptions = {}) {
    this.#base = options.base ?? '/v1';
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async #call<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    extra: { idempotent?: string; auth?: boolean } = {},
  ): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (extra.auth) {
      if (!this.token) throw new CloudError('unauthenticated', 'sign in first', 401);
      headers.authorization = `Bearer ${this.token}`;
    }
    // Money-moving POSTs carry an idempotency key, so a retry after a lost answer is safe.
    if (extra.idempotent) headers['idempotency-key'] = extra.idempotent;
    let response: Response;
    try {
      response = await this.#fetch(`${this.#base}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
        cache: 'no-store',
      });
    } catch (err) {
      throw new CloudError('offline', 'the cloud could not be reached', 0, { cause: err });
    }
    let payload: unknown;
    try {
      payload = await response.json();
    } catch (err) {
      // A proxy or the service worker answering for a cloud that is down.
      throw new CloudError(
        response.status >= 500 ? 'offline' : 'bad_response',
        `unexpected answer (${response.status})`,
        response.status,
        { cause: err },
      );
    }
    if (!response.ok) {
      const error = (payload as { error?: { code?: string; message?: string } }).error;
      throw new CloudError(
        error?.code ?? (response.status >= 500 ? 'offline' : 'bad_response'),
        error?.message ?? `HTTP ${response.status}`,
        response.status,
      );
    }
    return payload as T;
  }

  register(email: string, password: string, currency?: string): Promise<{ driverId: string }> {
    return this.#call('POST', '/drivers', { email, password, ...(currency ? { currency } : {}) });
  }

  async signIn(email: string, password: string): Promise<{ token: string; expiresAt: number }> {
    const session = await this.#call<{ token: string; expiresAt: number }>('POST', '/sessions', {
      email,
      password,
    });
    this.token = session.token;
    return session;
  }

  wallet(): Promise<Wallet> {
    return this.#call('GET', '/wallet', undefined, { auth: true });
  }

  topUp(amount: number, idempotencyKey = randomKey()): Promise<{ balance: number }> {
    return this.#call('POST', '/wallet/top-ups', { amount }, { auth: true, idempotent: idempotencyKey });
  }

  async stations(): Promise<StationView[]> {
    return (await this.#call<{ stations: StationView[] }>('GET', '/stations')).stations;
  }

  async bundle(gatewayId: string): Promise<{ bundle: Uint8Array; version: number }> {
    const r = await this.#call<{ bundle: string; version: number }>(
      'GET',
      `/stations/${encodeURIComponent(gatewayId)}/bundle`,
    );
    return { bundle: fromBase64Url(r.bundle), version: r.version };
  }

  issueVoucher(
    request: {
      readonly gatewayId: string;
      readonly connector?: number;
      readonly amount: number;
      readonly devicePublicKey: Uint8Array;
      readonly deviceId: string;
    },
    idempotencyKey = randomKey(),
  ): Promise<IssuedVoucher> {
    return this.#call(
      'POST',
      '/vouchers',
      {
        gatewayId: request.gatewayId,
        ...(request.connector === undefined ? {} : { connector: request.connector }),
        amount: request.amount,
        devicePublicKey: toBase64Url(request.devicePublicKey),
        deviceId: request.deviceId,
      },
      { auth: true, idempotent: idempotencyKey },
    );
  }

  async vouchers(): Promise<CloudVoucher[]> {
    return (await this.#call<{ vouchers: CloudVoucher[] }>('GET', '/vouchers', undefined, { auth: true }))
      .vouchers;
  }

  cancelVoucher(ctiHex: string, idempotencyKey = randomKey()): Promise<{ cti: string; state: string }> {
    return this.#call('POST', `/vouchers/${ctiHex}/cancel`, undefined, {
      auth: true,
      idempotent: idempotencyKey,
    });
  }

  /** Receipts and reports authenticate themselves (gateway + device signatures): no sign-in. */
  uploadReceipt(receipt: Uint8Array): Promise<UploadOutcome> {
    return this.#call('POST', '/receipts', { receipt: toBase64Url(receipt) });
  }

  uploadReport(report: Uint8Array): Promise<UploadOutcome> {
    return this.#call('POST', '/reports', { report: toBase64Url(report) });
  }
}
