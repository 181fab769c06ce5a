/**
 * A real station over the emulated BLE controller, for integration tests: the emulated radio
 * (scripts/virtual-ble/radio.ts: btvirt, locked machine-wide, behind the HCI hub that lets
 * several links be up at once) with one controller for the gateway and one per simulated phone, the sim pile as its own process, a data dir provisioned like
 * test/gateway/support/harness.ts (the seeded world's gateway key, its root pinned with
 * `pilepass-gateway install-root`, its bundle installed with `install-bundle`), then the real
 * `pilepass-gateway start` process on pty 0 (scripts/virtual-ble/gateway-process.ts). Phones are
 * `pilepass-phone-sim --json` child processes on the other ptys (or anything else that opens a
 * pty, e.g. the Web Bluetooth bridge's noble). When a phone process is killed, the hub ends its
 * links as a supervision timeout would.
 *
 * Clock: the gateway runs on the real system clock. The world's vouchers default to T0
 * (2026-11-17), so `issueVoucher` issues them around the real time instead (iat = nbf = now,
 * exp = now + 1 d); the world's issuer key is valid T0 − 1 d … T0 + 365 d, and when the real
 * time is outside that, the fixture installs a re-signed version-1 bundle whose issuer key is
 * valid around now. No test-only code path in the gateway.
 *
 * Every child is killed by PID in `stop()` (call it in afterAll: it also runs when a test
 * failed) and, as a last resort, synchronously when the test process exits.
 */

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newDevicePrivateKey, writeVoucherFile } from '../../gateway/phone-sim/voucher-file.ts';
import { createSimPileControl, type SimPileControl } from '../../gateway/src/pile/sim-driver.ts';
import { type SimPileProcess, startSimPileProcess } from '../../gateway/src/pile/sim-pile-process.ts';
import type { SimPileState } from '../../gateway/src/pile/sim-protocol.ts';
import { exitOf } from '../../scripts/virtual-ble/child-exit.ts';
import {
  GATEWAY_BIN,
  type GatewayProcess,
  startGatewayProcess,
} from '../../scripts/virtual-ble/gateway-process.ts';
import { startVirtualRadio, type VirtualRadio } from '../../scripts/virtual-ble/radio.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  type Bundle,
  type SigningKey,
  signBundle,
  toHex,
  type Voucher,
  type VoucherClaims,
} from '../../shared/src/index.ts';
import { buildWorld, derivedScalar, issueTestVoucher, type World } from './world.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export { GATEWAY_BIN };
export const PHONE_SIM_BIN = join(REPO_ROOT, 'gateway/bin/pilepass-phone-sim');
const OUTPUT_LIMIT = 64 * 1024;

/** pilepass-phone-sim's exit codes. */
export const PHONE_EXIT = { OK: 0, FAILED: 1, USAGE: 2, REFUSED: 3, WRONG_STATION: 4 } as const;

export interface StationOptions {
  /** Simulated phones that can run at once (one pty each; default 2). */
  readonly phones?: number;
  readonly connectors?: readonly number[];
  /** Sim pile time multiplier (default 30: 7 kW reads as 210 kW). */
  readonly speed?: number;
  /** World seed (default 'station-hci'). */
  readonly seed?: string;
  /** Extra `pilepass-gateway start` flags. */
  readonly gatewayArgs?: readonly string[];
  /** Gateway log level (default info). */
  readonly logLevel?: string;
}

/** One line of `pilepass-phone-sim --json`. */
export interface PhoneStep {
  readonly step: string;
  /** ms since the simulator started. */
  readonly t: number;
  /** When the fixture read the line (Date.now()), comparable across simulators. */
  readonly at: number;
  readonly [field: string]: unknown;
}

export interface PhoneSimResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly steps: readonly PhoneStep[];
  readonly stderr: string;
  /** The first step of that name (throws naming the run's output when absent). */
  step(name: string): PhoneStep;
  /** Every step of that name. */
  all(name: string): PhoneStep[];
  /** stdout and stderr, for assertion messages. */
  readonly transcript: string;
}

export interface RunningPhoneSim {
  readonly pid: number;
  /** Steps so far (live). */
  readonly steps: readonly PhoneStep[];
  /** Resolves with the first step (past or future) that matches; rejects on timeout or exit. */
  waitForStep(match: string | ((s: PhoneStep) => boolean), timeoutMs?: number): Promise<PhoneStep>;
  /** Sends the signal (default SIGKILL: the phone vanishes) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<PhoneSimResult>;
  readonly result: Promise<PhoneSimResult>;
}

export interface PhoneSimOptions {
  /** Which phone pty (0-based; default 0). Runs at once need different phones. */
  readonly phone?: number;
  /** Killed (SIGKILL) after this long (default 60 s). */
  readonly timeoutMs?: number;
}

export interface StationVoucher {
  readonly voucher: Voucher;
  readonly deviceKey: SigningKey;
  readonly devicePrivateKey: Uint8Array;
  /** The voucher file for `--voucher`. */
  readonly file: string;
}

export interface Station {
  readonly world: World;
  readonly dir: string;
  readonly dataDir: string;
  readonly gatewayId: string;
  /** pty 0 is the gateway's; phone i uses ptys[i + 1]. */
  readonly ptys: readonly string[];
  readonly gatewayPid: number;
  readonly pile: SimPileProcess;
  /** The sync bundle installed at provisioning (its body is the base for newer ones). */
  readonly bundle: Bundle;
  /** Every PID the station started (btvirt, socat, pile, gateway, phone simulators so far). */
  pids(): number[];
  /** Start-up timings (ms) of btvirt, pile, provisioning and the gateway. */
  readonly timings: Readonly<Record<string, number>>;
  /** Issues a voucher valid around the real time (claims may be overridden) and writes its file. */
  issueVoucher(
    overrides?: Partial<VoucherClaims>,
    options?: { readonly devicePrivateKey?: Uint8Array; readonly name?: string },
  ): Promise<StationVoucher>;
  /** Writes a voucher file (e.g. the same voucher with another device key). */
  writeVoucherFile(voucherBytes: Uint8Array, devicePrivateKey: Uint8Array, name?: string): string;
  /** Writes bytes to a file in the station's directory; returns its path. */
  writeFile(name: string, bytes: Uint8Array): string;
  /** Starts `pilepass-phone-sim --json --ble uart:<phone pty> …args`. */
  startPhoneSim(args: readonly string[], options?: PhoneSimOptions): RunningPhoneSim;
  /** Runs the phone simulator to its exit. */
  phoneSim(args: readonly string[], options?: PhoneSimOptions): Promise<PhoneSimResult>;
  /** The sim pile's state, read from the pile process. */
  pileState(): Promise<SimPileState>;
  /** What the HCI hub did so far (ACL packets routed, handles corrected, ACL left to btvirt). */
  hciStats(): { readonly routed: number; readonly corrected: number; readonly unrouted: number };
  /** The gateway's stderr so far (pino JSON lines). */
  gatewayLog(): string;
  /** Runs `pilepass-gateway <args>` on the station's data dir (e.g. status after stopGateway). */
  gatewayCli(args: readonly string[]): { code: number | null; stdout: string; stderr: string };
  /** SIGTERM to the gateway, SIGKILL after 5 s; resolves once it has exited. */
  stopGateway(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills everything this station started (by PID) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Children of every live station. Killed synchronously if the test process exits without
 * stop(); and a detached watchdog (one per test process) kills them if the test process dies
 * without running its exit handlers (SIGKILL, SIGTERM), reading their PIDs from a file.
 */
const livePids = new Set<number>();
/** Station directories to remove if the test process dies. */
const liveDirs = new Set<string>();
let watchFile: string | undefined;

function trackPid(pid: number): void {
  livePids.add(pid);
  if (watchFile === undefined) startWatchdog();
  syncWatchFile();
}

function untrackPid(pid: number): void {
  if (livePids.delete(pid)) syncWatchFile();
}

function syncWatchFile(): void {
  if (watchFile === undefined) return;
  writeFileSync(watchFile, `${[...livePids].join(' ')}\n`);
  writeFileSync(`${watchFile}.dirs`, `${[...liveDirs].join(' ')}\n`);
}

function startWatchdog(): void {
  const file = join(tmpdir(), `pp-station-watch-${process.pid}.pids`);
  watchFile = file;
  writeFileSync(file, '');
  const script =
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ` +
    `kill -9 $(cat ${file}) 2>/dev/null; rm -rf $(cat ${file}.dirs) ${file} ${file}.dirs`;
  spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' }).unref();
  process.on('exit', () => {
    for (const p of livePids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(file, { force: true });
    rmSync(`${file}.dirs`, { force: true });
  });
}

export async function startStation(options: StationOptions = {}): Promise<Station> {
  const phones = options.phones ?? 2;
  const connectors = options.connectors ?? [1, 2];
  const timings: Record<string, number> = {};
  const world = await buildWorld(nodeCrypto, options.seed ?? 'station-hci');
  const dir = mkdtempSync(join(tmpdir(), 'pp-station-'));
  liveDirs.add(dir);
  const dataDir = join(dir, 'data');
  const gatewayId = world.gateway.id;

  let radio: VirtualRadio | undefined;
  let bundle: Bundle | undefined;
  let pile: SimPileProcess | undefined;
  let control: SimPileControl | undefined;
  let gateway: GatewayProcess | undefined;
  const phoneRuns = new Set<RunningPhoneSim>();
  const phonePids: number[] = [];
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all([...phoneRuns].map((p) => p.kill('SIGKILL').catch(() => undefined)));
      await gateway?.stop(5_000);
      await control?.close().catch(() => {});
      if (pile) {
        await pile.stop().catch(() => {});
        untrackPid(pile.pid);
      }
      await radio?.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
      syncWatchFile();
    })();
    return stopping;
  };

  const cli = (args: readonly string[]) => {
    const result = spawnSync(GATEWAY_BIN, [...args, '--gateway-id', gatewayId, '--data-dir', dataDir], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
  };
  const mustCli = (args: readonly string[]) => {
    const r = cli(args);
    if (r.code !== 0) throw new Error(`pilepass-gateway ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
    return r;
  };
  const writeFile = (name: string, bytes: Uint8Array) => {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return path;
  };

  try {
    let t = performance.now();
    radio = await startVirtualRadio({ devices: phones + 1, onSpawn: trackPid, onExit: untrackPid });
    timings.btvirt = Math.round(performance.now() - t);

    t = performance.now();
    pile = await startSimPileProcess({
      dir,
      connectors,
      speed: options.speed ?? 30,
      watchPid: process.pid,
    });
    trackPid(pile.pid);
    control = await createSimPileControl(pile.socketPath);
    timings.pile = Math.round(performance.now() - t);

    // Provisioning, as a technician would: gateway key (the world's), root, first bundle.
    t = performance.now();
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      join(dataDir, 'gateway-key.json'),
      `${JSON.stringify({ privateKey: toHex(derivedScalar(world.seed!, 'gateway')) })}\n`,
      { mode: 0o600 },
    );
    mustCli([
      'install-root',
      '--kid',
      toHex(world.root.kid),
      '--public-key',
      toHex(world.root.key.publicKey),
    ]);
    bundle = await firstBundle(world);
    mustCli(['install-bundle', writeFile(`bundle-v${bundle.body.version}.cose`, bundle.bytes)]);
    timings.provisioning = Math.round(performance.now() - t);

    t = performance.now();
    gateway = await startGatewayProcess({
      blePty: radio.ptys[0]!,
      pile: `sim:${pile.socketPath}`,
      gatewayId,
      dataDir,
      connectors,
      logLevel: options.logLevel ?? 'info',
      extraArgs: options.gatewayArgs ?? [],
      onSpawn: trackPid,
    });
    const gatewayPid = gateway.pid;
    void gateway.exited.then(() => untrackPid(gatewayPid));
    timings.gateway = Math.round(performance.now() - t);
  } catch (err) {
    await stop();
    throw err;
  }

  const hciRadio = radio;
  const installedBundle = bundle;
  const started = [...radio.pids, pile.pid, gateway.pid];
  const ptys = radio.ptys;
  const startedPile = pile;
  const pileControl = control;
  const gatewayProcess = gateway;

  const startPhoneSim = (args: readonly string[], runOptions: PhoneSimOptions = {}): RunningPhoneSim => {
    const phone = runOptions.phone ?? 0;
    const pty = ptys[phone + 1];
    if (pty === undefined) throw new RangeError(`phone ${phone}: the station has ${phones} phone ptys`);
    const child = spawn(PHONE_SIM_BIN, ['--json', '--ble', `uart:${pty}`, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) throw new Error('could not start pilepass-phone-sim');
    const pid = child.pid;
    trackPid(pid);
    phonePids.push(pid);
    const exited = exitOf(child);
    const steps: PhoneStep[] = [];
    let stdout = '';
    let pending = '';
    let stderr = '';
    const wakers = new Set<() => void>();
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      stdout = (stdout + chunk).slice(-OUTPUT_LIMIT);
      pending += chunk;
      let nl = pending.indexOf('\n');
      while (nl >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line.startsWith('{')) {
          try {
            steps.push({ ...(JSON.parse(line) as PhoneStep), at: Date.now() });
          } catch {
            // not a step line; kept in the transcript
          }
        }
        nl = pending.indexOf('\n');
      }
      for (const wake of [...wakers]) wake();
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-OUTPUT_LIMIT);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), runOptions.timeoutMs ?? 60_000);
    const transcript = () =>
      `--- phone-sim ${args.join(' ')}\n${stdout}${stderr ? `--- stderr\n${stderr}` : ''}`;
    const result: Promise<PhoneSimResult> = exited.then(({ code, signal }) => {
      clearTimeout(timer);
      untrackPid(pid);
      phoneRuns.delete(run);
      // Killed: nobody closed its link. Over the air the gateway would see the supervision
      // timeout; here the hub resets the phone's controller, which ends the link the same way.
      if (signal !== null) hciRadio.dropLinks(phone + 1);
      for (const wake of [...wakers]) wake();
      const text = transcript();
      return {
        code,
        signal,
        steps,
        stderr,
        transcript: text,
        all: (name: string) => steps.filter((s) => s.step === name),
        step(name: string) {
          const found = steps.find((s) => s.step === name);
          if (!found)
            throw new Error(`phone-sim printed no "${name}" step (exit ${code}, ${signal})\n${text}`);
          return found;
        },
      };
    });
    let done = false;
    void result.then(() => {
      done = true;
    });
    const run: RunningPhoneSim = {
      pid,
      steps,
      result,
      waitForStep(match, timeoutMs = 30_000) {
        const test = typeof match === 'string' ? (s: PhoneStep) => s.step === match : match;
        return new Promise<PhoneStep>((resolveStep, reject) => {
          const check = () => {
            const found = steps.find(test);
            if (found) {
              finish();
              resolveStep(found);
            } else if (done) {
              finish();
              reject(new Error(`phone-sim exited without the awaited step\n${transcript()}`));
            }
          };
          const timeout = setTimeout(() => {
            finish();
            reject(new Error(`phone-sim: awaited step not seen within ${timeoutMs} ms\n${transcript()}`));
          }, timeoutMs);
          const finish = () => {
            clearTimeout(timeout);
            wakers.delete(check);
          };
          wakers.add(check);
          check();
        });
      },
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        if (!done) child.kill(signal);
        return result;
      },
    };
    phoneRuns.add(run);
    return run;
  };

  return {
    world,
    dir,
    dataDir,
    gatewayId,
    ptys,
    gatewayPid: gatewayProcess.pid,
    pile: startedPile,
    bundle: installedBundle,
    pids: () => [...started, ...phonePids],
    timings,
    async issueVoucher(overrides = {}, more = {}) {
      const devicePrivateKey = more.devicePrivateKey ?? newDevicePrivateKey();
      const deviceKey = await nodeCrypto.importSigningKey(devicePrivateKey);
      const now = Math.floor(Date.now() / 1000);
      const { voucher } = await issueTestVoucher(
        world,
        { issuedAt: now, notBefore: now, expiresAt: now + 86_400, ...overrides },
        { deviceKey },
      );
      const name = more.name ?? `voucher-${toHex(voucher.claims.cti).slice(0, 8)}.json`;
      const file = join(dir, name);
      writeVoucherFile(file, voucher.bytes, devicePrivateKey);
      return { voucher, deviceKey, devicePrivateKey, file };
    },
    writeVoucherFile(voucherBytes, devicePrivateKey, name) {
      const file = join(dir, name ?? `voucher-${Math.random().toString(36).slice(2, 10)}.json`);
      writeVoucherFile(file, voucherBytes, devicePrivateKey);
      return file;
    },
    writeFile,
    startPhoneSim,
    phoneSim: (args, runOptions) => startPhoneSim(args, runOptions).result,
    pileState: () => pileControl.state(),
    hciStats: () => hciRadio.stats(),
    gatewayLog: () => gatewayProcess.log(),
    gatewayCli: (args) => cli(args),
    async stopGateway() {
      return gatewayProcess.stop(5_000);
    },
    stop,
  };
}

/** The world's bundle, or (when the real time is outside its issuer key's validity) a re-signed one. */
async function firstBundle(world: World): Promise<Bundle> {
  const now = Math.floor(Date.now() / 1000);
  const valid = world.bundle.body.issuers.every(
    (i) => i.notBefore <= now - 3_600 && now + 86_400 <= i.notAfter,
  );
  if (valid) return world.bundle;
  return signBundle(world.root.key, world.root.kid, {
    ...world.bundle.body,
    issuedAt: now - 3_600,
    issuers: world.bundle.body.issuers.map((i) => ({
      ...i,
      notBefore: now - 86_400,
      notAfter: now + 30 * 86_400,
    })),
  });
}
