/**
 * The gateway's working clock and its trusted time floor.
 *
 * A Raspberry Pi has no RTC by default; after a power cut with no network its system clock
 * may be days off either way. Policy (docs/gateway.md §Clock):
 * - The **floor** is the latest time the gateway has reason to believe has passed: the last
 *   working time it persisted, the `iat` of every voucher whose issuer signature verified,
 *   and cloud time from a sync bundle bound to the gateway's own nonce. It is persisted in the
 *   ledger and only ever raised — except by nonce-bound cloud time, the one source trusted to
 *   correct a clock that ran ahead.
 * - At start the working clock is max(system clock, floor); after that it advances with the
 *   process's monotonic timer, so a system clock stepped backwards (or forwards) while running
 *   changes nothing. A voucher `iat` above the working clock lifts it at once: a cold start
 *   days behind cannot deadlock, because the `iat` is raised *before* `nbf` is checked.
 * - Loss bound: with the working clock behind real time by D, an expired voucher can still be
 *   accepted up to D + tolerance after its `exp`. D never exceeds the time since the newest
 *   verified `iat` / persisted floor, and the cloud keeps every hold until exp + grace, so such a
 *   late receipt still captures (at worst via a claw-back bounded by the hold).
 * @module
 */

import type { TrustedClock } from './contracts.ts';

/** Where the floor lives (the ledger's meta table). */
export interface TimeFloorStore {
  timeFloor(): number;
  raiseTimeFloor(seconds: number): number;
  setTimeFloor(seconds: number): void;
}

export interface ClockSources {
  /** The system clock, Unix seconds (read at start only). */
  readonly systemNow?: () => number;
  /** A monotonic clock in ms (never steps). */
  readonly monotonicMs?: () => number;
}

export class GatewayClock implements TrustedClock {
  readonly #store: TimeFloorStore;
  readonly #monotonicMs: () => number;
  /** Working time = anchorSeconds + (monotonic − anchorMs) / 1000. */
  #anchorSeconds: number;
  #anchorMs: number;

  constructor(store: TimeFloorStore, sources: ClockSources = {}) {
    this.#store = store;
    this.#monotonicMs = sources.monotonicMs ?? (() => performance.now());
    const system = Math.floor((sources.systemNow ?? (() => Date.now() / 1000))());
    this.#anchorSeconds = Math.max(system, store.timeFloor());
    this.#anchorMs = this.#monotonicMs();
  }

  now(): number {
    return this.#anchorSeconds + Math.floor((this.#monotonicMs() - this.#anchorMs) / 1000);
  }

  observeIssuedAt(issuedAt: number): number {
    if (issuedAt > this.now()) {
      this.#reanchor(issuedAt);
      this.#store.raiseTimeFloor(issuedAt);
    }
    return this.now();
  }

  setCloudTime(cloudTime: number): void {
    this.#reanchor(cloudTime);
    this.#store.setTimeFloor(cloudTime);
  }

  /** Persists the working time as the floor (called periodically and at shutdown). */
  persist(): void {
    this.#store.raiseTimeFloor(this.now());
  }

  #reanchor(seconds: number): void {
    this.#anchorSeconds = seconds;
    this.#anchorMs = this.#monotonicMs();
  }
}
