/**
 * A GattTransport that survives its Bluetooth adapter: when the inner transport reports the
 * adapter lost (powered off, unplugged, a controller hardware error), it drops every link,
 * resets the adapter and brings up a fresh inner transport, with exponential backoff and a log
 * line per attempt. Start-up gets the same bounded retries (a Pi's controller may still be
 * loading firmware when the service starts).
 *
 * Escalation when the attempts run out: `onGiveUp` (the gateway then stops and exits non-zero
 * once no session is open, so systemd restarts the process; repeated restarts reboot the Pi
 * through the unit's StartLimitAction). Charging sessions are not this module's business: an
 * adapter problem only stops new phones from connecting.
 * @module
 */

import type { GattHandler, GattTransport, LinkId } from '../contracts.ts';

export type AdapterState = 'stopped' | 'starting' | 'up' | 'recovering' | 'failed';

export interface RecoveryLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

export interface RecoveringTransportOptions {
  /** Builds a fresh inner transport; it calls `onLost` (once is enough) when its adapter goes away. */
  readonly create: (onLost: (reason: string) => void) => GattTransport;
  /** Before the first start: take the adapter (see hci-adapter.ts takeAdapter). */
  readonly prepare?: () => Promise<void>;
  /** Before every later attempt: reset the adapter (see hci-adapter.ts resetAdapter). */
  readonly reset?: () => Promise<void>;
  /** Attempts at start-up before start() rejects (default 5). */
  readonly startAttempts?: number;
  /** Attempts after a loss before `onGiveUp` (default 10). */
  readonly recoveryAttempts?: number;
  /** First delay between attempts and its cap, ms (default 1000 and 60000; doubles each time). */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  readonly onGiveUp?: (error: Error) => void;
  readonly onStateChange?: (state: AdapterState, detail: string) => void;
  readonly log?: RecoveryLog;
  /** What the logs call the adapter, e.g. "hci0". */
  readonly name?: string;
  /** Waits `ms` (tests pass a fake; default setTimeout). Resolves early when `signal` aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface RecoveringTransport extends GattTransport {
  readonly state: AdapterState;
  /** Successful recoveries since start. */
  readonly recoveries: number;
}

const defaultSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });

export function createRecoveringTransport(options: RecoveringTransportOptions): RecoveringTransport {
  const name = options.name ?? 'adapter';
  const startAttempts = positive(options.startAttempts ?? 5, 'startAttempts');
  const recoveryAttempts = positive(options.recoveryAttempts ?? 10, 'recoveryAttempts');
  const backoff = options.backoffMs ?? { initial: 1_000, max: 60_000 };
  if (!(backoff.initial > 0 && backoff.max >= backoff.initial)) {
    throw new RangeError(`backoffMs: need 0 < initial ≤ max, got ${backoff.initial} / ${backoff.max}`);
  }
  const sleep = options.sleep ?? defaultSleep;
  const log = options.log;

  let state: AdapterState = 'stopped';
  let inner: GattTransport | undefined;
  let handler: GattHandler | undefined;
  let generation = 0;
  let recoveries = 0;
  let abort = new AbortController();
  let recovering: Promise<void> | undefined;

  const setState = (next: AdapterState, detail: string) => {
    if (state === next) return;
    state = next;
    options.onStateChange?.(next, detail);
  };

  const delayFor = (attempt: number) => Math.min(backoff.max, backoff.initial * 2 ** (attempt - 1));

  /** One attempt: a fresh inner transport, started. Its losses are ignored once superseded. */
  const attempt = async (h: GattHandler): Promise<GattTransport> => {
    const mine = ++generation;
    const candidate = options.create((reason) => {
      if (mine !== generation || state !== 'up') return;
      recovering = recover(reason).catch((err: unknown) =>
        log?.error({ adapter: name, err: String(err) }, 'BLE adapter recovery crashed'),
      );
    });
    inner = candidate;
    try {
      await candidate.start(h);
    } catch (err) {
      if (inner === candidate) inner = undefined;
      throw err;
    }
    return candidate;
  };

  const recover = async (reason: string): Promise<void> => {
    setState('recovering', reason);
    log?.warn({ adapter: name, reason }, 'BLE adapter lost: dropping links and resetting it');
    const lost = inner;
    inner = undefined;
    // Stopping the old transport drops its links (the handler hears onDisconnect for each).
    await lost
      ?.stop()
      .catch((err: unknown) => log?.warn({ err: String(err) }, 'stopping the lost transport failed'));
    const signal = abort.signal;
    let lastError: Error = new Error(reason);
    for (let n = 1; n <= recoveryAttempts; n++) {
      await sleep(delayFor(n), signal);
      if (signal.aborted || !handler) return;
      try {
        await options.reset?.();
        const fresh = await attempt(handler);
        if (signal.aborted) {
          // stop() ran meanwhile and found no transport to stop: this one is ours to stop.
          if (inner === fresh) inner = undefined;
          await fresh.stop();
          return;
        }
        recoveries += 1;
        log?.info({ adapter: name, attempt: n }, 'BLE adapter recovered: advertising again');
        setState('up', `recovered after ${n} attempt(s)`);
        return;
      } catch (err) {
        lastError = err as Error;
        log?.warn(
          { adapter: name, attempt: n, of: recoveryAttempts, err: lastError.message },
          'BLE adapter recovery attempt failed',
        );
      }
    }
    const error = new Error(
      `BLE adapter ${name} did not come back after ${recoveryAttempts} attempts: ${lastError.message}`,
      { cause: lastError },
    );
    log?.error({ adapter: name }, error.message);
    setState('failed', error.message);
    options.onGiveUp?.(error);
  };

  const current = (): GattTransport => {
    if (!inner) throw new Error(`BLE adapter ${name} is ${state}: no link can be served now`);
    return inner;
  };

  return {
    get state() {
      return state;
    },
    get recoveries() {
      return recoveries;
    },

    async start(h: GattHandler): Promise<void> {
      if (state !== 'stopped') throw new Error('recovering transport already started');
      handler = h;
      abort = new AbortController();
      setState('starting', 'start');
      let lastError: Error | undefined;
      for (let n = 1; n <= startAttempts; n++) {
        if (n > 1) await sleep(delayFor(n - 1), abort.signal);
        if (abort.signal.aborted) break;
        try {
          await (n === 1 ? options.prepare?.() : (options.reset ?? options.prepare)?.());
          await attempt(h);
          setState('up', n === 1 ? 'started' : `started after ${n} attempts`);
          return;
        } catch (err) {
          lastError = err as Error;
          // A bluetoothd or a missing capability does not fix itself: no point waiting.
          const permanent = (err as { code?: string }).code;
          log?.warn(
            { adapter: name, attempt: n, of: startAttempts, err: lastError.message },
            'BLE adapter start attempt failed',
          );
          if (
            permanent === 'bluetoothd' ||
            permanent === 'permission' ||
            permanent === 'no-kernel-bluetooth'
          ) {
            break;
          }
        }
      }
      setState('failed', lastError?.message ?? 'stopped during start');
      handler = undefined;
      throw lastError ?? new Error('stopped during start');
    },

    async stop(): Promise<void> {
      abort.abort();
      const wasRecovering = recovering;
      await wasRecovering;
      const last = inner;
      inner = undefined;
      handler = undefined;
      generation += 1; // losses reported by the old transport are stale now
      setState('stopped', 'stop');
      await last?.stop();
    },

    maxNotifySize(link: LinkId): number {
      // No adapter: the smallest ATT payload (MTU 23 − 3), as for any unknown link.
      return inner ? inner.maxNotifySize(link) : 20;
    },

    async notify(link: LinkId, unit: Uint8Array): Promise<void> {
      await current().notify(link, unit);
    },

    disconnect(link: LinkId): void {
      inner?.disconnect(link);
    },
  };
}

function positive(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what} must be a positive integer, got ${n}`);
  return n;
}
