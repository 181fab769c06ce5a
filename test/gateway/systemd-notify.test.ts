/**
 * systemd readiness and watchdog (gateway/src/systemd.ts, gateway/src/service.ts) against a
 * fake NOTIFY_SOCKET: a Unix datagram listener that behaves like PID 1 (test/support/
 * notify-listener.ts). Messages go out through the real `systemd-notify` binary.
 *
 * - the notifier: READY=1 with a status, WATCHDOG=1 at half of WATCHDOG_USEC while healthy,
 *   none while a health check fails (STATUS says why), pings again once healthy, STOPPING=1;
 *   the environment is removed so children cannot notify for us; WATCHDOG_PID of another
 *   process disables the watchdog; a malformed WATCHDOG_USEC is a clear error.
 * - the real gateway process (`pilepass-gateway start`, sim pile, socket transport): READY=1
 *   only once it serves, pings while it runs, no ping while the process is frozen (what makes
 *   systemd kill a stuck gateway), STOPPING=1 and exit 0 on SIGTERM.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startSimPileProcess, tsxNodeArgs } from '../../gateway/src/pile/sim-pile-process.ts';
import {
  createSystemdNotifier,
  readSystemdEnvironment,
  SystemdConfigError,
  type SystemdNotifier,
} from '../../gateway/src/systemd.ts';
import { type NotifyListener, startNotifyListener } from '../support/notify-listener.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI_ENTRY = join(REPO_ROOT, 'gateway/src/cli.ts');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const hasSystemdNotify = (() => {
  try {
    execFileSync('systemd-notify', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skipReason = 'systemd-notify not installed: run scripts/system-deps.sh deploy';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'pilepass-sd-'));
  dirs.push(d);
  return d;
};
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function listener(): Promise<NotifyListener> {
  const l = await startNotifyListener(tempDir());
  cleanups.push(() => l.close());
  return l;
}

const collectingLog = () => {
  const lines: string[] = [];
  return {
    lines,
    log: {
      info: (_o: object, m: string) => lines.push(`info ${m}`),
      warn: (_o: object, m: string) => lines.push(`warn ${m}`),
      error: (o: object, m: string) => lines.push(`error ${m} ${JSON.stringify(o)}`),
    },
  };
};

describe('systemd environment', () => {
  it('is absent without NOTIFY_SOCKET, and the notifier is then undefined', () => {
    expect(readSystemdEnvironment({}, 1)).toBeUndefined();
    expect(createSystemdNotifier({ env: { WATCHDOG_USEC: '1000000' } })).toBeUndefined();
  });

  it('reads the watchdog period, and ignores it when WATCHDOG_PID names another process', () => {
    expect(readSystemdEnvironment({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000' }, 7)).toEqual({
      socketPath: '/run/x',
      watchdogUsec: 30_000_000,
    });
    expect(
      readSystemdEnvironment({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '7' }, 7)
        ?.watchdogUsec,
    ).toBe(30_000_000);
    expect(
      readSystemdEnvironment({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '8' }, 7)
        ?.watchdogUsec,
    ).toBeUndefined();
  });

  it.each(['0', '-5', '1.5', '30s', ' 10'])('refuses WATCHDOG_USEC=%j with a clear error', (value) => {
    expect(() => readSystemdEnvironment({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: value }, 1)).toThrow(
      SystemdConfigError,
    );
    expect(() => readSystemdEnvironment({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: value }, 1)).toThrow(
      /WATCHDOG_USEC must be a positive integer/,
    );
  });

  it('removes the variables from the environment so children cannot notify for the gateway', () => {
    const env: NodeJS.ProcessEnv = {
      NOTIFY_SOCKET: '/run/x',
      WATCHDOG_USEC: '1000000',
      WATCHDOG_PID: '1',
      KEEP: 'y',
    };
    const n = createSystemdNotifier({ env, pid: 1 });
    expect(n?.watchdogIntervalMs).toBe(500);
    expect(env).toEqual({ KEEP: 'y' });
  });
});

describe.skipIf(!hasSystemdNotify)(
  `notifier over systemd-notify${hasSystemdNotify ? '' : ` (${skipReason})`}`,
  () => {
    const notifierFor = (
      l: NotifyListener,
      watchdogUsec: number,
      log = collectingLog().log,
    ): SystemdNotifier => {
      const n = createSystemdNotifier({
        env: { NOTIFY_SOCKET: l.socketPath, WATCHDOG_USEC: String(watchdogUsec) },
        log,
      });
      if (!n) throw new Error('notifier expected');
      cleanups.push(() => n.stop());
      return n;
    };

    it('sends READY=1 with a status line, and STOPPING=1', async () => {
      const l = await listener();
      const n = notifierFor(l, 2_000_000);
      await n.ready('serving gw-1:\nBLE up');
      const ready = await l.waitFor(/READY=1/);
      expect(ready.text).toBe('READY=1\nSTATUS=serving gw-1: BLE up');
      // systemd-notify waits for the manager (BARRIER=1 with a descriptor to close).
      expect(l.messages.some((m) => m.text === 'BARRIER=1' && m.fds === 1)).toBe(true);
      await n.stopping();
      await l.waitFor(/^STOPPING=1/m);
    });

    it('pings at half the watchdog period only while healthy', async () => {
      const l = await listener();
      const { lines, log } = collectingLog();
      const n = notifierFor(l, 400_000, log); // ping every 200 ms
      expect(n.watchdogIntervalMs).toBe(200);
      let ledgerError: string | undefined;
      n.startWatchdog({
        eventLoop: () => undefined,
        ledger: () => {
          if (ledgerError) throw new Error(ledgerError);
          return undefined;
        },
      });
      await sleep(1_100);
      const pings = () => l.messages.filter((m) => m.text === 'WATCHDOG=1');
      const healthy = pings();
      expect(healthy.length).toBeGreaterThanOrEqual(4);
      expect(healthy.length).toBeLessThanOrEqual(7);
      const gaps = healthy.slice(1).map((m, i) => m.atMs - healthy[i]!.atMs);
      for (const gap of gaps) expect(gap).toBeGreaterThan(120);

      ledgerError = 'SQLITE_IOERR: disk I/O error';
      const unhealthyFrom = l.messages.length;
      const status = await l.waitFor(/^STATUS=unhealthy/, 2_000, unhealthyFrom);
      expect(status.text).toBe('STATUS=unhealthy: ledger: SQLITE_IOERR: disk I/O error');
      const countAtFailure = pings().length;
      await sleep(900);
      // At most one ping that was already in flight when the check started failing.
      expect(pings().length - countAtFailure).toBeLessThanOrEqual(1);
      expect(lines.filter((x) => x.startsWith('error unhealthy'))).toHaveLength(1); // logged once, not per tick

      ledgerError = undefined;
      const resumedFrom = l.messages.length;
      await l.waitFor(/^WATCHDOG=1$/, 2_000, resumedFrom);
      expect(lines).toContain('info healthy again: watchdog pings resume');
      n.stop();
    });

    it('a blocked event loop sends no ping for as long as it is blocked', async () => {
      const l = await listener();
      const { lines, log } = collectingLog();
      const n = notifierFor(l, 400_000, log);
      n.startWatchdog({});
      await l.waitFor(/^WATCHDOG=1$/);
      const blockedAt = l.messages.length;
      const until = performance.now() + 1_000;
      while (performance.now() < until) {
        // a stuck gateway: synchronous work that never yields
      }
      const before = l.messages
        .slice(0, blockedAt)
        .filter((m) => m.text === 'WATCHDOG=1')
        .at(-1)!;
      const after = await l.waitFor(/^WATCHDOG=1$/, 2_000, blockedAt);
      expect(after.atMs - before.atMs).toBeGreaterThanOrEqual(950);
      expect(lines.some((x) => x === 'warn event loop was stalled')).toBe(true);
    });
  },
);

describe.skipIf(!hasSystemdNotify)(
  `the gateway process under a fake systemd${hasSystemdNotify ? '' : ` (${skipReason})`}`,
  () => {
    it('READY=1 once serving, pings while running, none while frozen, STOPPING=1 and exit 0 on SIGTERM', async () => {
      const dir = tempDir();
      const l = await listener();
      const pile = await startSimPileProcess({ dir, connectors: [1], watchPid: process.pid });
      cleanups.push(() => pile.stop());
      const gatewaySocket = join(dir, 'gw.sock');
      const child: ChildProcess = spawn(
        process.execPath,
        [
          ...tsxNodeArgs(),
          CLI_ENTRY,
          'start',
          '--gateway-id',
          'gw-sd-01',
          '--data-dir',
          join(dir, 'data'),
          '--ble',
          `socket:${gatewaySocket}`,
          '--pile',
          `sim:${pile.socketPath}`,
          '--connectors',
          '1',
          '--log-level',
          'info',
        ],
        {
          cwd: REPO_ROOT,
          env: { ...process.env, NOTIFY_SOCKET: l.socketPath, WATCHDOG_USEC: '600000' },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      cleanups.push(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });

      const ready = await l.waitFor(/^READY=1/, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\ngateway stderr:\n${stderr}`);
      });
      expect(ready.text).toMatch(/^READY=1\nSTATUS=serving gw-sd-01: /);
      expect(ready.text).toMatch(/0 open session\(s\)/);
      // Ready means serving: the phone socket is there before READY=1 was sent.
      expect(existsSync(gatewaySocket)).toBe(true);

      await l.waitFor(/^WATCHDOG=1$/, 5_000);
      await sleep(800);
      const running = l.messages.filter((m) => m.text === 'WATCHDOG=1').length;
      expect(running).toBeGreaterThanOrEqual(2);
      expect(stderr).toMatch(/systemd watchdog armed/);

      // Frozen (SIGSTOP): no pings, as with a hung event loop. systemd would kill it here.
      child.kill('SIGSTOP');
      await sleep(400); // a ping already in flight may still land
      const frozenFrom = l.messages.length;
      await sleep(1_500);
      expect(l.messages.slice(frozenFrom).filter((m) => m.text === 'WATCHDOG=1')).toHaveLength(0);
      child.kill('SIGCONT');
      await l.waitFor(/^WATCHDOG=1$/, 5_000, frozenFrom);

      child.kill('SIGTERM');
      await l.waitFor(/^STOPPING=1/, 10_000);
      expect(await exited).toBe(0);
    }, 60_000);
  },
);
