/**
 * systemd readiness and watchdog (sd_notify) for the gateway service, without native modules.
 *
 * - Active only when systemd started us with `NOTIFY_SOCKET` (Type=notify); otherwise every
 *   call is a no-op. The variable is removed from `process.env` once read, so child processes
 *   (a sim pile, tools) cannot speak for the gateway.
 * - Node has no Unix datagram sockets, so each message is sent by running `systemd-notify`
 *   (part of the systemd package on every Raspberry Pi OS image). The sender is then that short
 *   child, not the main PID, which is why the unit needs `NotifyAccess=all`. systemd ≥ 246's
 *   systemd-notify waits (BARRIER=1) until the manager has read the message, so it cannot exit
 *   before systemd attributes the message to our unit.
 * - `READY=1` after start-up (ledger reconciled, transport advertising); `STOPPING=1` on stop;
 *   `STATUS=` lines for `systemctl status`.
 * - Watchdog: with `WATCHDOG_USEC` set (and `WATCHDOG_PID` unset or ours), `WATCHDOG=1` every
 *   half period — but only after every health check passed on that tick. A blocked event loop
 *   sends nothing because the tick never runs; a failing check (e.g. the ledger's database
 *   throwing) withholds the ping, and systemd kills and restarts the gateway after `WatchdogSec`.
 * @module
 */

import { execFile } from 'node:child_process';

/** One health check: returns nothing when healthy, throws (or returns a reason) when not. */
export type HealthCheck = () => string | undefined;

export interface SystemdLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

/** Sends one notification (newline-separated assignments) to the socket. */
export type NotifySender = (socketPath: string, assignments: readonly string[]) => Promise<void>;

export interface SystemdNotifierOptions {
  /** Environment to read NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Delete NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from `env` once read (default true). */
  readonly unsetEnvironment?: boolean;
  /** This process's pid, compared with WATCHDOG_PID (default process.pid). */
  readonly pid?: number;
  /** How messages leave (default: run `systemd-notify`). */
  readonly send?: NotifySender;
  readonly log?: SystemdLog;
}

export class SystemdConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SystemdConfigError';
  }
}

/** How long one systemd-notify run may take (its own barrier timeout is 5 s). */
const NOTIFY_TIMEOUT_MS = 7_000;

/** Default sender: one `systemd-notify` run per message (it waits until the manager has read it). */
export const systemdNotifySender: NotifySender = (socketPath, assignments) =>
  new Promise((resolve, reject) => {
    execFile(
      'systemd-notify',
      [...assignments],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NOTIFY_SOCKET: socketPath },
        timeout: NOTIFY_TIMEOUT_MS,
      },
      (err, _stdout, stderr) => {
        if (err) {
          const detail = stderr.trim() || err.message;
          reject(new Error(`systemd-notify ${assignments.join(' ')} failed: ${detail}`, { cause: err }));
        } else {
          resolve();
        }
      },
    );
  });

/**
 * Reads the systemd environment. Returns undefined when not started by systemd with
 * Type=notify; throws SystemdConfigError for a malformed WATCHDOG_USEC.
 */
export function readSystemdEnvironment(
  env: NodeJS.ProcessEnv,
  pid: number,
): { readonly socketPath: string; readonly watchdogUsec: number | undefined } | undefined {
  const socketPath = env.NOTIFY_SOCKET;
  if (!socketPath) return undefined;
  let watchdogUsec: number | undefined;
  const rawUsec = env.WATCHDOG_USEC;
  if (rawUsec !== undefined && rawUsec !== '') {
    if (!/^[1-9][0-9]{0,15}$/.test(rawUsec)) {
      throw new SystemdConfigError(
        `WATCHDOG_USEC must be a positive integer (µs), got ${JSON.stringify(rawUsec)}`,
      );
    }
    watchdogUsec = Number(rawUsec);
    const watchdogPid = env.WATCHDOG_PID;
    // systemd sets WATCHDOG_PID to the main PID; a child that inherited it must not ping.
    if (watchdogPid !== undefined && watchdogPid !== '' && Number(watchdogPid) !== pid)
      watchdogUsec = undefined;
  }
  return { socketPath, watchdogUsec };
}

export interface SystemdNotifier {
  /** The ping period (half of WATCHDOG_USEC) in ms, or undefined without a watchdog. */
  readonly watchdogIntervalMs: number | undefined;
  /** READY=1 with a status line. */
  ready(status: string): Promise<void>;
  status(status: string): Promise<void>;
  /** STOPPING=1; stops the watchdog. */
  stopping(): Promise<void>;
  /** Starts pinging every half period while every check passes (no-op without WATCHDOG_USEC). */
  startWatchdog(checks: Readonly<Record<string, HealthCheck>>): void;
  /** Stops the watchdog timer (no message). */
  stop(): void;
  /** Pings sent so far (tests, status). */
  readonly pings: number;
}

/** Creates the notifier, or undefined when the process was not started by systemd. */
export function createSystemdNotifier(options: SystemdNotifierOptions = {}): SystemdNotifier | undefined {
  const env = options.env ?? process.env;
  const found = readSystemdEnvironment(env, options.pid ?? process.pid);
  if (options.unsetEnvironment ?? true) {
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
  }
  if (!found) return undefined;
  const { socketPath, watchdogUsec } = found;
  const send = options.send ?? systemdNotifySender;
  const log = options.log;
  const intervalMs = watchdogUsec === undefined ? undefined : Math.max(1, Math.floor(watchdogUsec / 2_000));

  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let pings = 0;
  let inFlight = false;
  /** The reason the last tick withheld its ping (undefined when healthy), to log transitions only. */
  let lastProblem: string | undefined;

  const deliver = async (assignments: string[]): Promise<void> => {
    try {
      await send(socketPath, assignments);
    } catch (err) {
      log?.error(
        { err: (err as Error).message, message: assignments.join(' ') },
        'systemd notification failed',
      );
    }
  };

  const runChecks = (checks: Readonly<Record<string, HealthCheck>>): string | undefined => {
    for (const [name, check] of Object.entries(checks)) {
      try {
        const reason = check();
        if (typeof reason === 'string' && reason !== '') return `${name}: ${reason}`;
      } catch (err) {
        return `${name}: ${(err as Error).message}`;
      }
    }
    return undefined;
  };

  return {
    watchdogIntervalMs: intervalMs,
    get pings() {
      return pings;
    },
    ready: (status) => deliver(['READY=1', `STATUS=${oneLine(status)}`]),
    status: (status) => deliver([`STATUS=${oneLine(status)}`]),
    async stopping() {
      stop();
      await deliver(['STOPPING=1', 'STATUS=stopping']);
    },
    startWatchdog(checks) {
      if (intervalMs === undefined || timer || stopped) return;
      let expectedAt = performance.now() + intervalMs;
      const tick = () => {
        if (stopped) return;
        const now = performance.now();
        const lateMs = now - expectedAt;
        expectedAt = now + intervalMs;
        timer = setTimeout(tick, intervalMs);
        timer.unref(); // the gateway's own handles keep the process alive, not the watchdog
        // The loop was blocked this long; the ping still goes out (it runs again), but say so.
        if (lateMs > intervalMs / 2) log?.warn({ stalledMs: Math.round(lateMs) }, 'event loop was stalled');
        const problem = runChecks(checks);
        if (problem !== undefined) {
          if (problem !== lastProblem) {
            log?.error({ problem }, 'unhealthy: withholding the systemd watchdog ping (systemd restarts us)');
            void deliver([`STATUS=unhealthy: ${oneLine(problem)}`]);
          }
          lastProblem = problem;
          return;
        }
        if (lastProblem !== undefined) {
          log?.info({ was: lastProblem }, 'healthy again: watchdog pings resume');
          lastProblem = undefined;
        }
        // One systemd-notify at a time: a hung one must not pile up processes.
        if (inFlight) {
          log?.warn({}, 'previous watchdog ping still in flight: skipping this one');
          return;
        }
        inFlight = true;
        void send(socketPath, ['WATCHDOG=1'])
          .then(
            () => {
              pings += 1;
            },
            (err: unknown) => log?.error({ err: (err as Error).message }, 'watchdog ping failed'),
          )
          .finally(() => {
            inFlight = false;
          });
      };
      tick(); // first ping right away: READY=1 has just gone out
    },
    stop,
  };

  function stop(): void {
    stopped = true;
    clearTimeout(timer);
    timer = undefined;
  }
}

/** STATUS= is one line. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 200);
}
