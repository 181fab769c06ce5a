/**
 * Waiting on child processes and promises with a bound — shared by the btvirt hub, the
 * gateway launcher, the Web Bluetooth bridge and the station test fixture. Node only.
 * @module
 */

import type { ChildProcess } from 'node:child_process';

export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Settles when `child` has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<ProcessExit> {
  return new Promise((resolveExit) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolveExit({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolveExit({ code, signal }));
  });
}

/** `promise`'s value, or undefined after `ms`. */
export async function settlesWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
