/**
 * Waiting for the charge point to do something (send a StopTransaction, a fresh MeterValues, a
 * StatusNotification): a set of conditions re-checked after every state change, each with its
 * own deadline, all rejected at once when the link drops. No polling, no fixed sleeps.
 * @module
 */

export interface Wait {
  /** Settles when the condition holds, or rejects on deadline / `rejectAll`. */
  readonly promise: Promise<void>;
  /** Gives up without settling (the caller no longer needs it). */
  cancel(): void;
}

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class Waiters {
  readonly #waiting = new Set<Waiter>();

  /** Waits until `check()` holds (checked now and on every `recheck`), at most `timeoutMs`. */
  until(check: () => boolean, timeoutMs: number, onTimeout: () => Error): Wait {
    if (check()) return { promise: Promise.resolve(), cancel() {} };
    let waiter: Waiter | undefined;
    const promise = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (waiter) this.#waiting.delete(waiter);
        reject(onTimeout());
      }, timeoutMs);
      waiter = { check, resolve, reject, timer };
      this.#waiting.add(waiter);
    });
    // A wait may be rejected (link lost) before its owner awaits it; that is not unhandled.
    promise.catch(() => {});
    return {
      promise,
      cancel: () => {
        if (!waiter) return;
        clearTimeout(waiter.timer);
        this.#waiting.delete(waiter);
      },
    };
  }

  /** Re-checks every condition after a state change. */
  recheck(): void {
    for (const waiter of [...this.#waiting]) {
      if (!waiter.check()) continue;
      clearTimeout(waiter.timer);
      this.#waiting.delete(waiter);
      waiter.resolve();
    }
  }

  /** Rejects every wait (link lost, driver closed). */
  rejectAll(error: () => Error): void {
    for (const waiter of [...this.#waiting]) {
      clearTimeout(waiter.timer);
      this.#waiting.delete(waiter);
      waiter.reject(error());
    }
  }
}
