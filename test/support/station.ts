/**
 * A real station over the emulated BLE controller, for integration tests: btvirt (started and
 * locked machine-wide by test/support/btvirt.ts) with one controller for the gateway and one per
 * simulated phone, the sim pile as its own process, a data dir provisioned like
 * test/gateway/support/harness.ts (the seeded world's gateway key, its root pinned with
 * `pilepass-gateway install-root`, its bundle installed with `install-bundle`), then the real
 * `pilepass-gateway start` process on pty 0. Phones are `pilepass-phone-sim --json` child
 * processes on the other ptys.
 *
 * Concurrent links need an HCI hub. btvirt 5.66 (Debian 12) keeps per-controller connection
 * handles (the first free one from 42 up), but tells a peripheral the *central's* handle in LE
 * Connection Complete and forwards ACL data with the *sender's* handle. Every phone has one
 * link, so every phone's handle is 42: with two phones connected at once the gateway could not
 * tell their packets apart (nor address its answers). So each controller is reached as
 * socat pty ⇄ hub (in this process) ⇄ btvirt: commands and events pass through — with the
 * peripheral's real handle put into LE Connection Complete — while ACL data of a connection
 * between two hub controllers goes straight to the other host with that host's handle (the
 * sender gets its Number Of Completed Packets). Everything else (advertising, scanning,
 * connecting, disconnecting) is btvirt's. btvirt never times a link out, so when a phone
 * process is killed the hub ends its links as a supervision timeout would. PILEPASS_HCI_TRACE=1
 * prints every HCI packet the hub sees on stderr.
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

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newDevicePrivateKey, writeVoucherFile } from '../../gateway/phone-sim/voucher-file.ts';
import { createSimPileControl, type SimPileControl } from '../../gateway/src/pile/sim-driver.ts';
import { type SimPileProcess, startSimPileProcess } from '../../gateway/src/pile/sim-pile-process.ts';
import type { SimPileState } from '../../gateway/src/pile/sim-protocol.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  type Bundle,
  type SigningKey,
  signBundle,
  toHex,
  type Voucher,
  type VoucherClaims,
} from '../../shared/src/index.ts';
import { BTVIRT_LE_SOCKET, startVirtualBle, type VirtualBle } from './btvirt.ts';
import { buildWorld, derivedScalar, issueTestVoucher, type World } from './world.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const GATEWAY_BIN = join(REPO_ROOT, 'gateway/bin/pilepass-gateway');
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

interface Exited {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

function exitOf(child: ChildProcess): Promise<Exited> {
  return new Promise((resolveExit) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolveExit({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolveExit({ code, signal }));
  });
}

async function settles<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
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

export async function startStation(options: StationOptions = {}): Promise<Station> {
  const phones = options.phones ?? 2;
  const connectors = options.connectors ?? [1, 2];
  const timings: Record<string, number> = {};
  const world = await buildWorld(nodeCrypto, options.seed ?? 'station-hci');
  const dir = mkdtempSync(join(tmpdir(), 'pp-station-'));
  liveDirs.add(dir);
  const dataDir = join(dir, 'data');
  const gatewayId = world.gateway.id;

  let vble: VirtualBle | undefined;
  let hub: HciHub | undefined;
  let bundle: Bundle | undefined;
  let pile: SimPileProcess | undefined;
  let control: SimPileControl | undefined;
  let gateway: ChildProcess | undefined;
  let gatewayExit: Promise<Exited> | undefined;
  let gatewayStderr = '';
  const phoneRuns = new Set<RunningPhoneSim>();
  const phonePids: number[] = [];
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all([...phoneRuns].map((p) => p.kill('SIGKILL').catch(() => undefined)));
      if (gateway && gatewayExit) await stopChild(gateway, gatewayExit, 5_000);
      await control?.close().catch(() => {});
      if (pile) {
        await pile.stop().catch(() => {});
        untrackPid(pile.pid);
      }
      await hub?.stop().catch(() => {});
      await vble?.stop().catch(() => {});
      for (const pid of vble?.pids ?? []) untrackPid(pid);
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
    // btvirt itself (and the machine-wide lock) from the shared fixture; its own pty stays idle.
    vble = await startVirtualBle({ devices: 1, lockTimeoutMs: 150_000 });
    for (const pid of vble.pids) trackPid(pid);
    hub = await startHciHub(dir, phones + 1);
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
    const child = spawn(
      GATEWAY_BIN,
      [
        'start',
        '--ble',
        `uart:${hub.ptys[0]}`,
        '--pile',
        `sim:${pile.socketPath}`,
        '--gateway-id',
        gatewayId,
        '--data-dir',
        dataDir,
        '--connectors',
        connectors.join(','),
        '--log-level',
        options.logLevel ?? 'info',
        ...(options.gatewayArgs ?? []),
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    gateway = child;
    gatewayExit = exitOf(child);
    if (child.pid === undefined) throw new Error('could not start pilepass-gateway');
    trackPid(child.pid);
    const exitedPid = child.pid;
    void gatewayExit.then(() => untrackPid(exitedPid));
    child.stdout?.resume();
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      gatewayStderr = (gatewayStderr + chunk).slice(-OUTPUT_LIMIT * 4);
    });
    const started = await settles(
      Promise.race([
        (async () => {
          while (!/"msg":"gateway started"/.test(gatewayStderr)) await sleep(20);
          return 'started' as const;
        })(),
        gatewayExit.then((e) => `exited (code ${e.code}, signal ${e.signal})` as const),
      ]),
      30_000,
    );
    if (started !== 'started') {
      throw new Error(
        `pilepass-gateway did not start: ${started ?? 'no "gateway started" within 30 s'}\n${gatewayStderr}`,
      );
    }
    timings.gateway = Math.round(performance.now() - t);
  } catch (err) {
    await stop();
    throw err;
  }

  const hciHub = hub;
  const installedBundle = bundle;
  const started = [...vble.pids, ...hub.pids, pile.pid, gateway.pid!];
  const ptys = hub.ptys;
  const startedPile = pile;
  const pileControl = control;
  const gatewayChild = gateway;
  const gatewayExited = gatewayExit;

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
      if (signal !== null) hciHub.dropLinks(phone + 1);
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
    gatewayPid: gatewayChild.pid!,
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
    hciStats: () => ({ ...hciHub.stats }),
    gatewayLog: () => gatewayStderr,
    gatewayCli: (args) => cli(args),
    async stopGateway() {
      await stopChild(gatewayChild, gatewayExited, 5_000);
      return gatewayExited;
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

async function stopChild(child: ChildProcess, exited: Promise<Exited>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if ((await settles(exited, graceMs)) !== undefined) return;
  child.kill('SIGKILL');
  await settles(exited, 5_000);
}

// ---- HCI hub: btvirt controllers with ACL routed between hosts (see the module comment) ------

/** The smallest connection handle btvirt hands out (its ACL_HANDLE). */
const FIRST_HANDLE = 42;
const H4_COMMAND = 0x01;
const H4_ACL = 0x02;
const H4_EVENT = 0x04;

interface HciHub {
  /** One HCI UART per device. */
  readonly ptys: readonly string[];
  /** socat PIDs (each leads its own process group). */
  readonly pids: readonly number[];
  /** ACL packets routed between hosts, and LE Connection Complete handles corrected. */
  readonly stats: { routed: number; corrected: number; unrouted: number };
  /**
   * Ends device `index`'s connections on behalf of a host that is gone (a killed phone): the
   * peers see them end (reason: connection timeout), as a supervision timeout would end them
   * over the air. btvirt does not do it by itself: the link layer never times out.
   */
  dropLinks(index: number): void;
  stop(): Promise<void>;
}

interface HubLink {
  readonly peer: HubDevice;
  readonly peerHandle: number;
}

interface HubDevice {
  readonly index: number;
  host: Socket | undefined;
  controller: Socket | undefined;
  /** Public and random addresses, as the 6 raw HCI bytes in hex. */
  readonly addresses: Set<string>;
  /** Handles btvirt has live on this controller. */
  readonly handles: Set<number>;
  /** Connected and paired with the peer's end. */
  readonly links: Map<number, HubLink>;
  /** Connection complete seen here, the peer's end not yet: handle → peer address. */
  readonly unpaired: Map<number, string>;
  /** ACL the host sent on an unpaired handle, delivered once paired. */
  readonly queued: Map<number, Buffer[]>;
  /** Answers to commands the hub sent itself, not for the host. */
  readonly swallow: ((p: Buffer) => boolean)[];
}

/** Splits an H4 byte stream (UART HCI) into whole packets. */
class H4Splitter {
  #buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const packets: Buffer[] = [];
    for (;;) {
      const size = h4Size(this.#buffer);
      if (size === undefined || this.#buffer.length < size) break;
      if (size === -1) {
        // Unknown packet type: out of sync, pass the rest on as it is.
        packets.push(this.#buffer);
        this.#buffer = Buffer.alloc(0);
        break;
      }
      packets.push(this.#buffer.subarray(0, size));
      this.#buffer = this.#buffer.subarray(size);
    }
    return packets;
  }
}

/** Whole size of the H4 packet at the start of `b`; undefined = need more bytes; -1 = unknown. */
function h4Size(b: Buffer): number | undefined {
  if (b.length < 1) return undefined;
  switch (b[0]) {
    case 0x01: // command: type, opcode(2), length(1)
      return b.length < 4 ? undefined : 4 + b[3]!;
    case 0x02: // ACL: type, handle(2), length(2)
      return b.length < 5 ? undefined : 5 + b.readUInt16LE(3);
    case 0x03: // SCO: type, handle(2), length(1)
      return b.length < 4 ? undefined : 4 + b[3]!;
    case 0x04: // event: type, code, length(1)
      return b.length < 3 ? undefined : 3 + b[2]!;
    case 0x05: // ISO: type, handle(2), length(2, 14 bits)
      return b.length < 5 ? undefined : 5 + (b.readUInt16LE(3) & 0x3fff);
    default:
      return -1;
  }
}

/** Number Of Completed Packets: one packet on `handle`. */
function completedPacket(handle: number): Buffer {
  const event = Buffer.from([H4_EVENT, 0x13, 0x05, 0x01, 0, 0, 0x01, 0x00]);
  event.writeUInt16LE(handle, 4);
  return event;
}

/**
 * `count` emulated controllers, each reached as socat pty ⇄ hub ⇄ btvirt. Commands and events
 * pass through (LE Connection Complete gets the peripheral's real handle); ACL data on a
 * connection both of whose ends are hub devices goes straight to the other host with that
 * host's handle, and the sender gets its Number Of Completed Packets.
 */
async function startHciHub(dir: string, count: number): Promise<HciHub> {
  const stats = { routed: 0, corrected: 0, unrouted: 0 };
  const devices: HubDevice[] = [];
  const servers: Server[] = [];
  const socats: { proc: ChildProcess; exited: Promise<Exited>; output: () => string }[] = [];
  const trace = process.env.PILEPASS_HCI_TRACE
    ? (line: string) => process.stderr.write(`${line}\n`)
    : undefined;

  const pair = (device: HubDevice, handle: number, peerAddress: string) => {
    for (const other of devices) {
      if (other === device || !other.addresses.has(peerAddress)) continue;
      for (const [otherHandle, otherPeerAddress] of other.unpaired) {
        if (!device.addresses.has(otherPeerAddress)) continue;
        other.unpaired.delete(otherHandle);
        device.links.set(handle, { peer: other, peerHandle: otherHandle });
        other.links.set(otherHandle, { peer: device, peerHandle: handle });
        trace?.(`hub: paired dev${device.index}/${handle} ⇄ dev${other.index}/${otherHandle}`);
        for (const p of device.queued.get(handle) ?? []) routeAcl(device, p);
        for (const p of other.queued.get(otherHandle) ?? []) routeAcl(other, p);
        device.queued.delete(handle);
        other.queued.delete(otherHandle);
        return;
      }
    }
    device.unpaired.set(handle, peerAddress);
  };

  const forget = (device: HubDevice, handle: number) => {
    device.handles.delete(handle);
    device.links.delete(handle);
    device.unpaired.delete(handle);
    device.queued.delete(handle);
  };

  const routeAcl = (device: HubDevice, p: Buffer): boolean => {
    const field = p.readUInt16LE(1);
    const handle = field & 0x0fff;
    const link = device.links.get(handle);
    if (!link) {
      const queue = device.queued.get(handle);
      if (device.unpaired.has(handle) && queue) {
        queue.push(p);
        return true;
      }
      if (device.unpaired.has(handle)) {
        device.queued.set(handle, [p]);
        return true;
      }
      return false;
    }
    // As a controller does: "start, non-flushable" from a host arrives as "start".
    let flags = field >> 12;
    if ((flags & 0x3) === 0x0) flags = (flags & ~0x3) | 0x2;
    const out = Buffer.from(p);
    out.writeUInt16LE((flags << 12) | link.peerHandle, 1);
    link.peer.host?.write(out);
    device.host?.write(completedPacket(handle));
    stats.routed++;
    return true;
  };

  /** Controller → host. */
  const fromController = (device: HubDevice, p: Buffer): void => {
    let out = p;
    let paired: (() => void) | undefined;
    if (p[0] === H4_EVENT) {
      const code = p[1];
      if (code === 0x3e && p.length >= 15 && (p[3] === 0x01 || p[3] === 0x0a) && p[4] === 0x00) {
        // LE (Enhanced) Connection Complete: handle at 5, role at 7, peer address at 9.
        let handle = p.readUInt16LE(5) & 0x0fff;
        if (p[7] === 0x01) {
          // Peripheral: btvirt 5.66 reports the central's handle; its own is the first free one.
          let own = FIRST_HANDLE;
          while (device.handles.has(own)) own++;
          if (own !== handle) {
            stats.corrected++;
            out = Buffer.from(p);
            out.writeUInt16LE(own, 5);
            handle = own;
          }
        }
        device.handles.add(handle);
        const peerAddress = p.subarray(9, 15).toString('hex');
        const h = handle;
        paired = () => pair(device, h, peerAddress);
      } else if (code === 0x05 && p.length >= 6 && p[3] === 0x00) {
        forget(device, p.readUInt16LE(4) & 0x0fff); // Disconnection Complete (each side's own handle)
      } else if (code === 0x0e && p.length >= 13 && p[4] === 0x09 && p[5] === 0x10 && p[6] === 0x00) {
        device.addresses.add(p.subarray(7, 13).toString('hex')); // Read BD_ADDR
      }
      const swallowed = device.swallow.findIndex((match) => match(out));
      if (swallowed >= 0) {
        device.swallow.splice(swallowed, 1);
        trace?.(`dev${device.index} C>hub ${out.toString('hex')}`);
        return;
      }
    } else if (p[0] === H4_ACL) {
      stats.unrouted++;
    }
    if (out !== p) trace?.(`dev${device.index} C>H (from btvirt: ${p.subarray(0, 20).toString('hex')})`);
    trace?.(`dev${device.index} C>H ${out.subarray(0, 20).toString('hex')}`);
    device.host?.write(out);
    paired?.(); // after the host has its Connection Complete
  };

  /** Host → controller. */
  const fromHost = (device: HubDevice, p: Buffer): void => {
    trace?.(`dev${device.index} H>C ${p.subarray(0, 20).toString('hex')}`);
    if (p[0] === H4_ACL && p.length >= 5 && routeAcl(device, p)) return;
    if (p[0] === H4_COMMAND && p.length >= 4) {
      const opcode = p.readUInt16LE(1);
      if (opcode === 0x0c03) {
        // HCI_Reset: the host starts over (btvirt 5.66 keeps the links; the host forgot them).
        for (const handle of [...device.handles, ...device.links.keys()]) forget(device, handle);
      } else if (opcode === 0x2005 && p.length >= 10) {
        device.addresses.add(p.subarray(4, 10).toString('hex')); // LE Set Random Address
      }
    }
    device.controller?.write(p);
  };

  const stop = async () => {
    await Promise.all(
      socats.map(async ({ proc, exited }) => {
        if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
        try {
          process.kill(-proc.pid, 'SIGTERM');
        } catch {
          proc.kill('SIGTERM');
        }
        if ((await settles(exited, 3_000)) === undefined) proc.kill('SIGKILL');
        await settles(exited, 2_000);
        untrackPid(proc.pid);
      }),
    );
    for (const d of devices) {
      d.host?.destroy();
      d.controller?.destroy();
    }
    await Promise.all(servers.map((server) => new Promise<void>((r) => server.close(() => r()))));
  };

  try {
    for (let index = 0; index < count; index++) {
      const device: HubDevice = {
        index,
        host: undefined,
        controller: undefined,
        addresses: new Set(),
        handles: new Set(),
        links: new Map(),
        unpaired: new Map(),
        queued: new Map(),
        swallow: [],
      };
      devices.push(device);
      const socketPath = join(dir, `hci${index}.sock`);
      const pty = join(dir, `hci${index}`);
      const server = createServer((host) => {
        const controller = createConnection(BTVIRT_LE_SOCKET);
        device.host = host;
        device.controller = controller;
        const up = new H4Splitter();
        const down = new H4Splitter();
        controller.on('data', (chunk: Buffer) => {
          for (const p of up.push(chunk)) fromController(device, p);
        });
        host.on('data', (chunk: Buffer) => {
          for (const p of down.push(chunk)) fromHost(device, p);
        });
        const close = () => {
          host.destroy();
          controller.destroy();
        };
        host.on('close', close);
        controller.on('close', close);
        host.on('error', close);
        controller.on('error', close);
      });
      servers.push(server);
      await new Promise<void>((resolveListen, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => resolveListen());
      });
      const proc = spawn('socat', ['-d', '-d', `PTY,link=${pty},raw,echo=0`, `UNIX-CONNECT:${socketPath}`], {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      proc.stdout?.on('data', (c: Buffer) => {
        output += c.toString('utf8');
      });
      proc.stderr?.on('data', (c: Buffer) => {
        output += c.toString('utf8');
      });
      const entry = { proc, exited: exitOf(proc), output: () => output };
      socats.push(entry);
      if (proc.pid === undefined) throw new Error(`could not start socat for ${pty}`);
      trackPid(proc.pid);
      const deadline = Date.now() + 10_000;
      while (!(output.includes('starting data transfer loop') && existsSync(pty) && device.controller)) {
        if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
          throw new Error(`HCI hub: socat ${pty} ⇄ ${socketPath} ⇄ btvirt did not come up:\n${output}`);
        }
        await sleep(20);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ptys: devices.map((d) => join(dir, `hci${d.index}`)),
    pids: socats.map((s) => s.proc.pid!),
    stats,
    dropLinks(index) {
      const device = devices[index];
      if (!device?.controller) return;
      for (const handle of [...device.links.keys()]) {
        const command = Buffer.from([H4_COMMAND, 0x06, 0x04, 0x03, 0, 0, 0x08]); // reason: timeout
        command.writeUInt16LE(handle, 4);
        device.swallow.push(
          (e) => e[0] === H4_EVENT && e[1] === 0x0f && e[5] === 0x06 && e[6] === 0x04, // Command Status
          (e) => e[0] === H4_EVENT && e[1] === 0x05 && (e.readUInt16LE(4) & 0x0fff) === handle,
        );
        fromHost(device, command);
      }
    },
    stop,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
