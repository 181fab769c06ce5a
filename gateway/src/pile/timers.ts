/**
 * Monotonic time and timers for the hardware pile drivers (relay, CAN), behind a small interface
 * so their timing rules (contactor-open bound, meter silence, heartbeat windows, command
 * timeouts) are tested on virtual time instead of by sleeping. `systemTimers` is the real clock:
 * `performance.now()` (monotonic ms, immune to wall-clock steps) and Node's timers.
 * @module
 */

import { performance } from 'node:perf_hooks';

/** An opaque timer handle from `PileTimers.setTimeout`. */
export type TimerHandle = unknown;

export interface PileTimers {
  /** Monotonic milliseconds; only differences mean anything. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemTimers: PileTimers = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Resolves after `ms` on the given timers. */
export function sleep(timers: PileTimers, ms: number): Promise<void> {
  return new Promise((resolve) => {
    timers.setTimeout(resolve, ms);
  });
}

/**
 * Runs `task` every `periodMs` until the returned function is called. Runs never overlap: the
 * next one is scheduled when the previous one has settled, so a slow bus cannot pile up polls.
 * A task that throws or rejects goes to `onError` and the loop keeps running.
 */
export function repeat(
  timers: PileTimers,
  periodMs: number,
  task: () => void | Promise<void>,
  onError: (error: unknown) => void,
): () => void {
  let stopped = false;
  let handle: TimerHandle;
  const run = async () => {
    if (stopped) return;
    try {
      await task();
    } catch (error) {
      onError(error);
    }
    if (!stopped) handle = timers.setTimeout(run, periodMs);
  };
  handle = timers.setTimeout(run, periodMs);
  return () => {
    stopped = true;
    timers.clearTimeout(handle);
  };
}
