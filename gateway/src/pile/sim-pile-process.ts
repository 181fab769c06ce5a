/**
 * Starts the sim pile (sim-pile.ts) as a child process for tests and the gateway CLI, so that
 * the pile is a different process from whatever drives it. The child is `node --import <tsx
 * loader>` directly (not the tsx CLI, which would put a second process in between): the pid
 * returned is the pile's own, and SIGKILL to it really kills the pile.
 * @module
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SIM_PILE_ENTRY = fileURLToPath(new URL('./sim-pile.ts', import.meta.url));
/** sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 103;

/** Node arguments that make a plain `node` run TypeScript the way tsx does (repo's own tsx). */
export function tsxNodeArgs(): string[] {
  const loader = createRequire(join(REPO_ROOT, 'package.json')).resolve('tsx');
  return ['--import', pathToFileURL(loader).href];
}

export interface SimPileProcessOptions {
  /** Directory for the socket (and nothing else unless statePath points there). */
  readonly dir: string;
  readonly connectors?: readonly number[];
  /** Power each connector delivers while on, integer W (default 7000). */
  readonly powerW?: number;
  /** Simulated-time multiplier (default 1). */
  readonly speed?: number;
  /** Connectors with a vehicle plugged in at start (default all). */
  readonly plugged?: readonly number[] | 'all' | 'none';
  /** Refuse `start` on an unplugged connector (default true). */
  readonly requirePlug?: boolean;
  /** State file to persist to and resume from. */
  readonly statePath?: string;
  /** Socket file name inside dir (default sim-pile.sock). */
  readonly socketName?: string;
  /** The pile exits when this process is gone (tests pass process.pid; the CLI leaves it out). */
  readonly watchPid?: number;
  /** How long to wait for "sim-pile ready", monotonic ms (default 15000). */
  readonly readyTimeoutMs?: number;
}

export interface SimPileProcess {
  readonly socketPath: string;
  readonly pid: number;
  /** Settles when the process has exited. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
  /** SIGTERM (the pile removes its socket), SIGKILL if still alive after timeoutMs (default 3000). */
  stop(timeoutMs?: number): Promise<void>;
  /** SIGKILL now, like a crash or power loss of the pile's controller. */
  kill(): Promise<void>;
}

export async function startSimPileProcess(options: SimPileProcessOptions): Promise<SimPileProcess> {
  const socketPath = join(options.dir, options.socketName ?? 'sim-pile.sock');
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new RangeError(`socket path too long for a Unix socket: ${socketPath}`);
  }
  const plugged = options.plugged ?? 'all';
  const args = [
    ...tsxNodeArgs(),
    SIM_PILE_ENTRY,
    '--socket',
    socketPath,
    '--connectors',
    (options.connectors ?? [1]).join(','),
    '--power-w',
    String(options.powerW ?? 7000),
    '--speed',
    String(options.speed ?? 1),
    '--plugged',
    typeof plugged === 'string' ? plugged : plugged.length === 0 ? 'none' : plugged.join(','),
  ];
  if (options.requirePlug === false) args.push('--allow-unplugged-start');
  if (options.statePath !== undefined) args.push('--state', options.statePath);
  if (options.watchPid !== undefined) args.push('--watch-pid', String(options.watchPid));

  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let stderrTail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-4000);
  });

  const readyLine = `sim-pile ready ${socketPath}`;
  const timeoutMs = options.readyTimeoutMs ?? 15_000;
  try {
    await new Promise<void>((resolve, reject) => {
      let stdout = '';
      const timer = setTimeout(
        () => reject(new Error(`sim pile not ready within ${timeoutMs} ms`)),
        timeoutMs,
      );
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.split('\n').includes(readyLine)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`sim pile exited before ready (code ${code}, signal ${signal})`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${(error as Error).message}\n${stderrTail}`.trim());
  }
  // Keep draining stdout so the pile never blocks on a full pipe; a failed kill is not fatal.
  child.stdout?.resume();
  child.on('error', () => {});

  const pid = child.pid;
  if (pid === undefined) throw new Error('sim pile has no pid');
  let done = false;
  void exited.then(() => {
    done = true;
  });

  return {
    socketPath,
    pid,
    exited,
    async stop(stopTimeoutMs = 3000) {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    },
    async kill() {
      if (done) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}
