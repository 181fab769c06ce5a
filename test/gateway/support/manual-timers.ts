/**
 * Virtual time for the hardware pile drivers' tests: a `PileTimers` whose clock moves only when
 * the test calls `advance`, which runs due timers in time order and lets promise callbacks that
 * they trigger settle between them. Deterministic: no test depends on how fast the machine is.
 */

import type { PileTimers, TimerHandle } from '../../../gateway/src/pile/timers.ts';

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
}

/** Lets queued promise callbacks (and I/O callbacks already due) run. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class ManualTimers implements PileTimers {
  #now = 1_000;
  #seq = 0;
  readonly #pending = new Set<Pending>();

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const entry: Pending = { at: this.#now + Math.max(0, ms), seq: this.#seq++, callback };
    this.#pending.add(entry);
    return entry;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#pending.delete(handle as Pending);
  }

  /** Number of timers waiting (a closed driver must leave none). */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await flushMicrotasks();
    for (;;) {
      let next: Pending | undefined;
      for (const p of this.#pending) {
        if (p.at > target) continue;
        if (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq)) next = p;
      }
      if (!next) break;
      this.#pending.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.callback();
      await flushMicrotasks();
    }
    this.#now = target;
    await flushMicrotasks();
  }

  /** Advances in steps until `promise` settles (or `limitMs` of virtual time pass), then returns it. */
  async settle<T>(promise: Promise<T>, stepMs = 10, limitMs = 60_000): Promise<T> {
    let settled = false;
    const watched = promise.then(
      (value) => {
        settled = true;
        return value;
      },
      (error: unknown) => {
        settled = true;
        throw error;
      },
    );
    watched.catch(() => {});
    await flushMicrotasks();
    for (let waited = 0; !settled && waited < limitMs; waited += stepMs) await this.advance(stepMs);
    return watched;
  }
}
