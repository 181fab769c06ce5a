/**
 * The real `pilepass-gateway start` process on an emulated radio's pty (`--ble uart:<pty>`):
 * spawned, watched until it logs "gateway started" (or exits), its stderr (pino JSON lines)
 * kept for diagnostics, stopped with SIGTERM then SIGKILL. Provisioning (key, root, bundle)
 * is the caller's. Used by the station test fixture and by `npm start`. Node only.
 * @module
 */

import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { exitOf, type ProcessExit, settlesWithin } from './child-exit.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const GATEWAY_BIN = join(REPO_ROOT, 'gateway/bin/pilepass-gateway');
/** How much of the gateway's stderr is kept. */
const LOG_LIMIT = 256 * 1024;

export interface GatewayProcessOptions {
  /** The HCI UART the gateway's bleno opens. */
  readonly blePty: string;
  /** The `--pile` value, e.g. `sim:<socket>`. */
  readonly pile: string;
  readonly gatewayId: string;
  /** A provisioned data directory (gateway key, root, bundle). */
  readonly dataDir: string;
  readonly connectors: readonly number[];
  /** Gateway log level (default info). */
  readonly logLevel?: string;
  /** Extra `pilepass-gateway start` flags. */
  readonly extraArgs?: readonly string[];
  /** How long to wait for "gateway started" (default 30 s). */
  readonly startTimeoutMs?: number;
  /** Called with the PID right after the spawn (e.g. to kill it if this process dies). */
  readonly onSpawn?: (pid: number) => void;
  /** Every stderr chunk as it arrives (e.g. to print it). */
  readonly onLog?: (chunk: string) => void;
}

export type GatewayExit = ProcessExit;

export interface GatewayProcess {
  readonly pid: number;
  /** Settles when the process has exited. */
  readonly exited: Promise<GatewayExit>;
  /** Its stderr so far (the last 256 KiB). */
  log(): string;
  /** SIGTERM, SIGKILL after `graceMs` (default 5 s); resolves once it has exited. */
  stop(graceMs?: number): Promise<GatewayExit>;
}

/** Starts the gateway and resolves once it has logged "gateway started"; throws with its log otherwise. */
export async function startGatewayProcess(options: GatewayProcessOptions): Promise<GatewayProcess> {
  const child = spawn(
    GATEWAY_BIN,
    [
      'start',
      '--ble',
      `uart:${options.blePty}`,
      '--pile',
      options.pile,
      '--gateway-id',
      options.gatewayId,
      '--data-dir',
      options.dataDir,
      '--connectors',
      options.connectors.join(','),
      '--log-level',
      options.logLevel ?? 'info',
      ...(options.extraArgs ?? []),
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (child.pid === undefined) throw new Error(`could not start ${GATEWAY_BIN}`);
  const pid = child.pid;
  options.onSpawn?.(pid);
  const exited = exitOf(child);
  let log = '';
  let onChunk: (() => void) | undefined;
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    log = (log + chunk).slice(-LOG_LIMIT);
    options.onLog?.(chunk);
    onChunk?.();
  });

  const stop = async (graceMs = 5_000): Promise<GatewayExit> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      if ((await settlesWithin(exited, graceMs)) === undefined) {
        child.kill('SIGKILL');
      }
    }
    return exited;
  };

  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const started = await new Promise<string>((resolveStart) => {
    const timer = setTimeout(() => resolveStart(`no "gateway started" within ${timeoutMs} ms`), timeoutMs);
    onChunk = () => {
      if (/"msg":"gateway started"/.test(log)) {
        clearTimeout(timer);
        resolveStart('started');
      }
    };
    void exited.then((e) => {
      clearTimeout(timer);
      resolveStart(`exited (code ${e.code}, signal ${e.signal})`);
    });
  });
  onChunk = undefined;
  if (started !== 'started') {
    await stop(1_000);
    throw new Error(`pilepass-gateway did not start: ${started}\n${log}`);
  }
  return { pid, exited, log: () => log, stop };
}
