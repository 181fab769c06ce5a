/**
 * The gateway's sync agent: when the station has a network, it sends pending receipts home and
 * fetches a fresh bundle — keys, revocations, receipt acks and cloud time bound to its own
 * nonce. It runs beside authorization and never blocks it; any failure (cloud down, network
 * gone, a refused request) backs off exponentially with jitter and resumes, however long the
 * outage. The outbox is the ledger itself: a receipt leaves it only when the cloud's bundle
 * acknowledges it, so nothing is lost across restarts.
 * @module
 */

import type { CryptoProvider, SigningKey } from '../../shared/src/index.ts';
import { syncSignedBytes } from '../../shared/src/index.ts';
import type { Ledger } from './ledger/ledger.ts';
import type { GatewaySync } from './sync.ts';

export interface SyncAgentOptions {
  readonly cloudUrl: string;
  readonly gatewayId: string;
  readonly crypto: CryptoProvider;
  readonly gatewayKey: SigningKey;
  readonly sync: GatewaySync;
  readonly ledger: Ledger;
  /** Between successful rounds with nothing left to send, ms. */
  readonly intervalMs?: number;
  /** First retry delay and the cap of the exponential backoff, ms. */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  readonly requestTimeoutMs?: number;
  readonly fetch?: typeof fetch;
  readonly log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface SyncAgentStatus {
  readonly lastSuccessAt: number | undefined;
  readonly lastError: string | undefined;
  readonly consecutiveFailures: number;
  readonly rounds: number;
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
const fromB64 = (text: string) => new Uint8Array(Buffer.from(text, 'base64url'));

export class SyncAgent {
  readonly #o: SyncAgentOptions;
  readonly #fetch: typeof fetch;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #stopped = false;
  #status: { lastSuccessAt?: number; lastError?: string; consecutiveFailures: number; rounds: number } = {
    consecutiveFailures: 0,
    rounds: 0,
  };
  /** Resolves the waiter of `syncNow` after the next round. */
  #waiters: (() => void)[] = [];

  constructor(options: SyncAgentOptions) {
    this.#o = options;
    this.#fetch = options.fetch ?? fetch;
  }

  get status(): SyncAgentStatus {
    return { ...this.#status, lastSuccessAt: this.#status.lastSuccessAt, lastError: this.#status.lastError };
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Runs a round as soon as possible and resolves when one has finished (tests, CLI). */
  syncNow(): Promise<void> {
    const done = new Promise<void>((resolve) => this.#waiters.push(resolve));
    if (!this.#running) this.#schedule(0);
    return done;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#round(), delayMs);
    this.#timer.unref();
  }

  async #round(): Promise<void> {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    let next: number;
    try {
      const more = await this.#syncOnce();
      this.#status = {
        ...this.#status,
        lastSuccessAt: Date.now(),
        lastError: undefined,
        consecutiveFailures: 0,
      };
      // Pending receipts left (a report carries a bounded number): go again at once.
      next = more ? 0 : (this.#o.intervalMs ?? 60_000);
    } catch (err) {
      const failures = this.#status.consecutiveFailures + 1;
      this.#status = { ...this.#status, lastError: String(err), consecutiveFailures: failures };
      const { initial, max } = this.#o.backoffMs ?? { initial: 5_000, max: 15 * 60_000 };
      const ceiling = Math.min(max, initial * 2 ** Math.min(failures - 1, 20));
      next = Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // "equal jitter"
      this.#o.log?.warn(
        { failures, retryInMs: next, err: String(err) },
        'sync with the cloud failed; backing off',
      );
    } finally {
      this.#status.rounds++;
      this.#running = false;
      for (const resolve of this.#waiters.splice(0)) resolve();
    }
    this.#schedule(next);
  }

  /** One round: nonce → signed report upload → bundle install. Returns whether more is pending. */
  async #syncOnce(): Promise<boolean> {
    const { cloudUrl, gatewayId, crypto, gatewayKey, sync, ledger } = this.#o;
    const { nonce } = (await this.#post('/v1/gateway/nonce', { gatewayId })) as { nonce: string };
    const cloudNonce = fromB64(nonce);
    const sentBefore = ledger.pendingReceiptCount();
    const report = await sync.buildReport(cloudNonce);
    const gatewayNonce = crypto.randomBytes(16);
    const signature = await gatewayKey.sign(
      syncSignedBytes(gatewayId, cloudNonce, gatewayNonce, await crypto.sha256(report)),
    );
    const answer = (await this.#post('/v1/gateway/sync', {
      gatewayId,
      cloudNonce: nonce,
      gatewayNonce: b64(gatewayNonce),
      report: b64(report),
      signature: b64(signature),
    })) as { bundle: string };
    await sync.installBundle(fromB64(answer.bundle), gatewayNonce);
    const left = ledger.pendingReceiptCount();
    this.#o.log?.info({ cloudUrl, delivered: sentBefore - left, pending: left }, 'synced with the cloud');
    return left > 0 && left < sentBefore;
  }

  async #post(path: string, body: object): Promise<unknown> {
    const res = await this.#fetch(new URL(path, this.#o.cloudUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.#o.requestTimeoutMs ?? 15_000),
    });
    const json = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
    if (!res.ok)
      throw new Error(
        `${path}: HTTP ${res.status} ${json.error?.code ?? ''} ${json.error?.message ?? ''}`.trim(),
      );
    return json;
  }
}
