/**
 * A charging station for crash-safety tests, made of real processes: the gateway CLI
 * (`pilepass-gateway start --ble socket:<path> --pile sim:<socket>`) and the sim pile, each its
 * own process, so a test can SIGKILL the gateway at any moment while the pile keeps going.
 * Phones are PhoneSessions in the test process over the socket transport.
 *
 * - `createCrashStation()`: temp dir; gateway key seeded like the in-process harness; root key
 *   pinned and a root-signed bundle installed with the CLI (`install-root`, `install-bundle`);
 *   a sim pile process (connectors 1 and 2, fast speed). The bundle's issuer key is the test
 *   world's, valid around the real current time, and `issueVoucher` stamps iat/nbf/exp around
 *   the real clock: the gateway process runs on the system clock.
 * - `startGateway({ crashAt })` spawns the gateway (optionally with PILEPASS_CRASH_AT) and waits
 *   until its socket accepts connections — i.e. after start-up recovery; `killGateway()` is
 *   kill -9.
 * - `CrashModel` remembers what phones saw and what earlier ledger snapshots held, and checks
 *   the invariants (see `checkLedger`, `checkPile`, `checkSpentRefused`); a broken invariant
 *   throws `InvariantViolation`.
 * - `randomKillRun()` is one run of the random kill -9 loop shared by
 *   test/gateway/crash-safety.test.ts and scripts/soak-crash.ts.
 * @module
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import type { CrashPoint } from '../../gateway/src/charging/crash.ts';
import { type VerifyResult, verifyLedger } from '../../gateway/src/ledger/audit.ts';
import { connectSocketPhoneLink, type SocketPhoneLink } from '../../gateway/src/link/socket-transport.ts';
import { createSimPileControl, type SimPileControl } from '../../gateway/src/pile/sim-driver.ts';
import {
  type SimPileProcess,
  startSimPileProcess,
  tsxNodeArgs,
} from '../../gateway/src/pile/sim-pile-process.ts';
import type { SimPileState } from '../../gateway/src/pile/sim-protocol.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  ErrorCode,
  type PhoneLink,
  PhoneSession,
  parseReceipt,
  type Receipt,
  SessionState,
  type SigningKey,
  signBundle,
  toHex,
  type Voucher,
  verifyReceipt,
} from '../../shared/src/index.ts';
import { buildWorld, derivedScalar, GATEWAY_ID, issueTestVoucher, TARIFF, type World } from './world.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI_ENTRY = join(REPO_ROOT, 'gateway/src/cli.ts');
const run = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const nowSeconds = () => Math.floor(Date.now() / 1000);

export const CRASH_SEED = 'crash-station';
/**
 * Holds the random runs use (minor units, at 1.60 CNY/kWh): at the default pile speed the
 * pile's energy cap ends them after ~0.5 s, ~1 s, ~2.7 s and ~11 s of real time.
 */
export const HOLDS = [100, 200, 500, 2_000] as const;

// ---- seeded PRNG ------------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence for the same seed on every platform. */
export interface Rng {
  readonly seed: number;
  next(): number;
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
}

export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    seed: seed >>> 0,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (items) => {
      const item = items[Math.floor(next() * items.length)];
      if (item === undefined) throw new RangeError('pick from an empty list');
      return item;
    },
  };
}

/** A seed from the environment variable `name` (decimal), else a fresh random one. */
export function seedFrom(value: string | undefined): number {
  if (value !== undefined && value !== '') {
    const seed = Number(value);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer`);
    return seed >>> 0;
  }
  return randomBytes(4).readUInt32LE(0);
}

// ---- the station ------------------------------------------------------------------------------

export interface StationVoucher {
  readonly voucher: Voucher;
  readonly deviceKey: SigningKey;
  readonly ctiHex: string;
  readonly hold: number;
}

export interface GatewayProcess {
  readonly pid: number;
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
  readonly crashAt: CrashPoint | undefined;
  /** The last few KiB the gateway wrote to stderr (its warn-level log). */
  stderr(): string;
}

export interface CrashStationOptions {
  /** Sim pile speed (simulated-time multiplier); default 600: 7 kW → ~1.2 kWh per second. */
  readonly speed?: number;
  readonly connectors?: readonly number[];
  /** Gateway log level (default warn). */
  readonly logLevel?: string;
}

export interface CrashStation {
  readonly world: World;
  readonly dir: string;
  readonly dataDir: string;
  readonly ledgerPath: string;
  readonly gatewaySocket: string;
  readonly connectors: readonly number[];
  readonly pile: SimPileProcess;
  readonly pileControl: SimPileControl;
  /** The running gateway, if any. */
  readonly gateway: GatewayProcess | undefined;
  /** Spawns the gateway and resolves once it accepts links (start-up recovery done). */
  startGateway(options?: { crashAt?: CrashPoint; readyTimeoutMs?: number }): Promise<GatewayProcess>;
  /**
   * Spawns the gateway and kill -9s it `afterMs` later, ready or not: a crash during start-up
   * (ledger open, boot record, start-up recovery). Says whether it was ready by then.
   */
  killDuringStart(afterMs: number): Promise<{ ready: boolean }>;
  /** kill -9 the gateway and wait until it is gone. */
  killGateway(): Promise<void>;
  /** SIGTERM (graceful stop) and wait. */
  stopGateway(): Promise<void>;
  /** Waits for the gateway to exit by itself (e.g. at a crash point). */
  waitGatewayExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** A voucher for this gateway, any connector, valid around the real current time. */
  issueVoucher(hold?: number): Promise<StationVoucher>;
  /** `pilepass-gateway ledger verify` (gateway stopped or running). */
  cliLedgerVerify(): Promise<{ code: number; stdout: string }>;
  /** Kills the gateway, stops the pile and deletes the temp dir (unless `keepDir`, for a post-mortem). */
  dispose(options?: { keepDir?: boolean }): Promise<void>;
}

async function cli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [...tsxNodeArgs(), CLI_ENTRY, ...args], {
      cwd: REPO_ROOT,
      env: withoutCrashPoint(process.env),
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function withoutCrashPoint(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.PILEPASS_CRASH_AT;
  return copy;
}

/** Gateways still running when this process exits are killed, so none outlives a test run. */
const liveGateways = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveGateways) child.kill('SIGKILL');
});

function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export async function createCrashStation(options: CrashStationOptions = {}): Promise<CrashStation> {
  const world = await buildWorld(nodeCrypto, CRASH_SEED);
  const dir = mkdtempSync(join(tmpdir(), 'pp-crash-'));
  const dataDir = join(dir, 'gw');
  mkdirSync(dataDir, { mode: 0o700 });
  const connectors = options.connectors ?? [1, 2];
  const gatewaySocket = join(dir, 'gw.sock');
  const stationTag = randomBytes(4).toString('hex');
  let voucherCounter = 0;

  // Provisioning, as an installer would do it with the CLI.
  writeFileSync(
    join(dataDir, 'gateway-key.json'),
    `${JSON.stringify({ privateKey: toHex(derivedScalar(CRASH_SEED, 'gateway')) })}\n`,
    { mode: 0o600 },
  );
  const t = nowSeconds();
  const bundle = await signBundle(world.root.key, world.root.kid, {
    version: 1,
    issuedAt: t - 3_600,
    issuers: [
      {
        kid: world.issuer.kid,
        alg: -7,
        publicKey: world.issuer.key.publicKey,
        notBefore: t - 86_400,
        notAfter: t + 365 * 86_400,
      },
    ],
    revokedKids: [],
    revokedVouchers: [],
    tariffs: [{ gatewayId: GATEWAY_ID, tariff: TARIFF }],
    audience: [],
    receiptAcks: [],
  });
  const bundlePath = join(dir, 'bundle.cose');
  writeFileSync(bundlePath, bundle.bytes);
  const common = ['--data-dir', dataDir, '--gateway-id', GATEWAY_ID];
  const pinned = await cli([
    'install-root',
    '--kid',
    toHex(world.root.kid),
    '--public-key',
    toHex(world.root.key.publicKey),
    ...common,
  ]);
  if (pinned.code !== 0) throw new Error(`install-root failed: ${pinned.stderr}`);
  const installed = await cli(['install-bundle', bundlePath, ...common]);
  if (installed.code !== 0) throw new Error(`install-bundle failed: ${installed.stderr}`);

  const pile = await startSimPileProcess({
    dir,
    connectors,
    speed: options.speed ?? 600,
    watchPid: process.pid,
  });
  const pileControl = await createSimPileControl(pile.socketPath);

  let current: (GatewayProcess & { child: ChildProcess }) | undefined;

  function spawnGateway(crashAt: CrashPoint | undefined) {
    if (current) throw new Error('gateway already running');
    const env = withoutCrashPoint(process.env);
    if (crashAt) env.PILEPASS_CRASH_AT = crashAt;
    const child = spawn(
      process.execPath,
      [
        ...tsxNodeArgs(),
        CLI_ENTRY,
        'start',
        '--ble',
        `socket:${gatewaySocket}`,
        '--pile',
        `sim:${pile.socketPath}`,
        '--connectors',
        connectors.join(','),
        '--log-level',
        options.logLevel ?? 'warn',
        ...common,
      ],
      { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let tail = '';
    child.stdout?.resume();
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-8_000);
    });
    child.on('error', () => {});
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    if (child.pid === undefined) throw new Error('gateway did not spawn');
    liveGateways.add(child);
    void exited.then(() => liveGateways.delete(child));
    const proc = { pid: child.pid, exited, crashAt, stderr: () => tail, child, gone: false };
    current = proc;
    void exited.then(() => {
      proc.gone = true;
      if (current === proc) current = undefined;
    });
    return proc;
  }

  /** Polls the socket until the gateway accepts links; false if it exited or `deadline` passed. */
  async function waitReady(proc: { gone: boolean }, deadline: number): Promise<boolean> {
    for (;;) {
      if (await isListening(gatewaySocket)) return true;
      if (proc.gone || performance.now() > deadline) return false;
      await sleep(10);
    }
  }

  async function startGateway(
    opts: { crashAt?: CrashPoint; readyTimeoutMs?: number } = {},
  ): Promise<GatewayProcess> {
    const proc = spawnGateway(opts.crashAt);
    if (await waitReady(proc, performance.now() + (opts.readyTimeoutMs ?? 20_000))) return proc;
    if (!proc.gone) proc.child.kill('SIGKILL');
    const { code, signal } = await proc.exited;
    throw new Error(`gateway not ready: exited with code ${code}, signal ${signal}\n${proc.stderr()}`);
  }

  async function killDuringStart(afterMs: number): Promise<{ ready: boolean }> {
    const proc = spawnGateway(undefined);
    await sleep(afterMs);
    const ready = !proc.gone && (await isListening(gatewaySocket));
    proc.child.kill('SIGKILL');
    await proc.exited;
    return { ready };
  }

  async function signalGateway(signal: NodeJS.Signals): Promise<void> {
    const proc = current;
    if (!proc) return;
    proc.child.kill(signal);
    await proc.exited;
  }

  return {
    world,
    dir,
    dataDir,
    ledgerPath: join(dataDir, 'ledger.sqlite'),
    gatewaySocket,
    connectors,
    pile,
    pileControl,
    get gateway() {
      return current;
    },
    startGateway,
    killDuringStart,
    killGateway: () => signalGateway('SIGKILL'),
    stopGateway: () => signalGateway('SIGTERM'),
    async waitGatewayExit(timeoutMs) {
      const proc = current;
      if (!proc) throw new Error('no gateway running');
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`gateway still running after ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        return await Promise.race([proc.exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async issueVoucher(hold = 5_000) {
      const t = nowSeconds();
      const { voucher, deviceKey } = await issueTestVoucher(
        world,
        {
          issuedAt: t - 60,
          notBefore: t - 60,
          expiresAt: t + 7 * 86_400,
          connector: undefined,
          hold: { amount: hold, currency: 'CNY' },
        },
        { label: `${stationTag}-${voucherCounter++}` },
      );
      return { voucher, deviceKey, ctiHex: toHex(voucher.claims.cti), hold };
    },
    async cliLedgerVerify() {
      const result = await cli(['ledger', 'verify', ...common]);
      return { code: result.code, stdout: result.stdout };
    },
    async dispose(opts = {}) {
      await signalGateway('SIGKILL');
      await pileControl.close().catch(() => {});
      await pile.stop();
      if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- phones -----------------------------------------------------------------------------------

export interface PhonePlan {
  readonly voucher: StationVoucher;
  /** Connector for a token tap; undefined = attach to the voucher's session. */
  readonly connector: number | undefined;
  /** Stop this long after the first status; undefined = let the session run. */
  readonly stopAfterMs?: number | undefined;
  readonly mtu?: number;
  /** Give up (disconnect) after this long in any case (default 10 s). */
  readonly maxMs?: number;
  /** Called as each write starts: while presenting, or carrying the stop request. */
  readonly onWrite?: (phase: 'present' | 'stop') => void;
}

export interface PhoneResult {
  readonly plan: PhonePlan;
  /** The link came up. */
  readonly linked: boolean;
  /** A status arrived: for a token tap, the gateway accepted the voucher. */
  readonly sawStatus: boolean;
  readonly sawCharging: boolean;
  readonly rejected: number | undefined;
  readonly receipt: Receipt | undefined;
  readonly disconnected: boolean;
  readonly stopSent: boolean;
}

/** One phone: connect, present (token or attach), optionally stop, collect what arrives. */
export async function phoneVisit(station: CrashStation, plan: PhonePlan): Promise<PhoneResult> {
  const result = {
    plan,
    linked: false,
    sawStatus: false,
    sawCharging: false,
    rejected: undefined as number | undefined,
    receipt: undefined as Receipt | undefined,
    disconnected: false,
    stopSent: false,
  };
  let link: SocketPhoneLink;
  try {
    link = await connectSocketPhoneLink(station.gatewaySocket, { mtu: plan.mtu ?? 185, timeoutMs: 3_000 });
  } catch {
    return result;
  }
  result.linked = true;
  let phase: 'present' | 'stop' = 'present';
  const observed: PhoneLink = {
    readHello: () => link.readHello(),
    write: (unit) => {
      plan.onWrite?.(phase);
      return link.write(unit);
    },
    onNotify: (listener) => link.onNotify(listener),
    onDisconnect: (listener) => link.onDisconnect(listener),
  };
  const session = new PhoneSession({
    crypto: nodeCrypto,
    link: observed,
    voucherBytes: plan.voucher.voucher.bytes,
    deviceKey: plan.voucher.deviceKey,
  });
  let settle: () => void = () => {};
  const settled = new Promise<void>((resolve) => {
    settle = resolve;
  });
  let firstStatus: () => void = () => {};
  const statusSeen = new Promise<void>((resolve) => {
    firstStatus = resolve;
  });
  session.onEvent((event) => {
    if (event.kind === 'status') {
      result.sawStatus = true;
      if (event.status.state === SessionState.CHARGING) result.sawCharging = true;
      firstStatus();
    } else if (event.kind === 'receipt') {
      result.receipt = event.receipt;
      settle();
    } else if (event.kind === 'rejected') {
      result.rejected = event.code;
      settle();
    } else if (event.kind === 'disconnected') {
      result.disconnected = true;
      settle();
      firstStatus();
    }
  });
  const maxMs = plan.maxMs ?? 10_000;
  const giveUp = sleep(maxMs);
  try {
    await session.present(plan.connector);
    if (plan.stopAfterMs !== undefined) {
      await Promise.race([statusSeen, settled, giveUp]);
      if (result.sawStatus && !result.receipt && !result.disconnected) {
        await Promise.race([sleep(plan.stopAfterMs), settled]);
        if (!result.receipt && !result.disconnected) {
          result.stopSent = true;
          phase = 'stop';
          await session.stop();
        }
      }
    }
  } catch {
    // the link dropped under us (the gateway was killed): what arrived so far is the result
  }
  await Promise.race([settled, giveUp]);
  session.close();
  link.disconnect();
  return result;
}

// ---- ledger and pile snapshots ----------------------------------------------------------------

export interface SessionSnapshot {
  readonly ctiHex: string;
  readonly sessionIdHex: string;
  readonly connector: number;
  readonly state: 'open' | 'closed';
  readonly holdAmount: number;
  readonly receipt: Uint8Array | undefined;
  readonly receiptHashHex: string | undefined;
}

export interface LedgerSnapshot {
  readonly verify: VerifyResult;
  readonly spent: ReadonlySet<string>;
  readonly sessions: ReadonlyMap<string, SessionSnapshot>;
  /** Closed sessions whose receipt row is missing (must be 0). */
  readonly closedWithoutReceipt: number;
  readonly receiptCount: number;
}

/** Opens the ledger read-only, verifies the chain and reads spent marks, sessions and receipts. */
export function snapshotLedger(path: string): LedgerSnapshot {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5_000 });
  try {
    return db.transaction(() => {
      const verify = verifyLedger(db);
      const spent = new Set(
        db
          .prepare<[], { cti: Buffer }>('SELECT cti FROM spent_vouchers')
          .all()
          .map((r) => toHex(r.cti)),
      );
      const rows = db
        .prepare<
          [],
          {
            cti: Buffer;
            session_id: Buffer;
            connector: number;
            state: 'open' | 'closed';
            hold_amount: number;
            bytes: Buffer | null;
            hash: Buffer | null;
          }
        >(
          `SELECT s.cti, s.session_id, s.connector, s.state, s.hold_amount, r.bytes, r.hash
           FROM sessions s LEFT JOIN receipts r ON r.sequence = s.receipt_seq`,
        )
        .all();
      const sessions = new Map<string, SessionSnapshot>();
      let closedWithoutReceipt = 0;
      for (const r of rows) {
        if (r.state === 'closed' && !r.bytes) closedWithoutReceipt++;
        sessions.set(toHex(r.cti), {
          ctiHex: toHex(r.cti),
          sessionIdHex: toHex(r.session_id),
          connector: r.connector,
          state: r.state,
          holdAmount: r.hold_amount,
          receipt: r.bytes ? new Uint8Array(r.bytes) : undefined,
          receiptHashHex: r.hash ? toHex(r.hash) : undefined,
        });
      }
      const receiptCount = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM receipts').get()?.n ?? 0;
      return { verify, spent, sessions, closedWithoutReceipt, receiptCount };
    })();
  } finally {
    db.close();
  }
}

export function openSessionsByConnector(snapshot: LedgerSnapshot): Map<number, SessionSnapshot> {
  const open = new Map<number, SessionSnapshot>();
  for (const s of snapshot.sessions.values()) if (s.state === 'open') open.set(s.connector, s);
  return open;
}

// ---- invariants -------------------------------------------------------------------------------

export class InvariantViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantViolation';
  }
}

function violated(where: string, message: string): never {
  throw new InvariantViolation(`${where}: ${message}`);
}

export interface ModelStats {
  vouchersIssued: number;
  tokenTaps: number;
  accepted: number;
  rejected: Record<number, number>;
  receiptsToPhones: number;
  receiptsInLedger: number;
  respentRefused: number;
  /** Sessions open at the crash whose pile was still on, still open after recovery. */
  resumedByRecovery: number;
  /** Sessions open at the crash, closed (with a receipt) by or right after recovery. */
  closedByRecovery: number;
}

/**
 * What the world has seen so far: every voucher issued, which ones phones saw accepted, the
 * receipts phones received, and every receipt and spent mark earlier snapshots held. Each check
 * compares a new snapshot against all of it.
 */
export class CrashModel {
  readonly station: CrashStation;
  readonly vouchers = new Map<string, StationVoucher>();
  /** cti → how many token taps saw it accepted (must never exceed 1). */
  readonly acceptedByPhone = new Map<string, number>();
  /** cti → receipt bytes (hex) a phone received. */
  readonly receiptsAtPhones = new Map<string, string>();
  /** cti → receipt hash of a session once seen closed in the ledger. */
  readonly closedInLedger = new Map<string, string>();
  readonly spentInLedger = new Set<string>();
  readonly #verifiedReceipts = new Set<string>();
  /** cti → the code a lone presentation was refused with, to check at the next snapshot. */
  readonly #refused = new Map<string, number>();
  readonly stats: ModelStats = {
    vouchersIssued: 0,
    tokenTaps: 0,
    accepted: 0,
    rejected: {},
    receiptsToPhones: 0,
    receiptsInLedger: 0,
    respentRefused: 0,
    resumedByRecovery: 0,
    closedByRecovery: 0,
  };
  #gatewayPublicKey: Uint8Array;

  constructor(station: CrashStation) {
    this.station = station;
    this.#gatewayPublicKey = station.world.gateway.key.publicKey;
  }

  async issue(hold: number): Promise<StationVoucher> {
    const v = await this.station.issueVoucher(hold);
    this.vouchers.set(v.ctiHex, v);
    this.stats.vouchersIssued++;
    return v;
  }

  /** Records what phones saw; a voucher accepted by two phones (ever) is a violation. */
  recordPhones(results: readonly PhoneResult[], where: string): void {
    const presenters = new Map<string, number>();
    for (const r of results) {
      if (r.plan.connector === undefined) continue;
      presenters.set(r.plan.voucher.ctiHex, (presenters.get(r.plan.voucher.ctiHex) ?? 0) + 1);
    }
    for (const r of results) {
      const cti = r.plan.voucher.ctiHex;
      if (r.plan.connector !== undefined && r.linked) {
        this.stats.tokenTaps++;
        if (r.sawStatus) {
          this.stats.accepted++;
          const times = (this.acceptedByPhone.get(cti) ?? 0) + 1;
          this.acceptedByPhone.set(cti, times);
          if (times > 1) violated(where, `voucher ${cti} was accepted ${times} times`);
        }
      }
      if (r.rejected !== undefined) {
        this.stats.rejected[r.rejected] = (this.stats.rejected[r.rejected] ?? 0) + 1;
        const lone = presenters.get(cti) === 1;
        if (r.plan.connector !== undefined && (lone || r.rejected === ErrorCode.VOUCHER_SPENT))
          this.#refused.set(cti, r.rejected);
      }
      if (r.receipt) {
        this.stats.receiptsToPhones++;
        const bytes = toHex(r.receipt.bytes);
        const earlier = this.receiptsAtPhones.get(cti);
        if (earlier !== undefined && earlier !== bytes)
          violated(where, `voucher ${cti}: phones received two different receipts`);
        this.receiptsAtPhones.set(cti, bytes);
        if (toHex(r.receipt.body.cti) !== cti) violated(where, `receipt for ${cti} names another voucher`);
      }
    }
  }

  /**
   * Ledger invariants: the chain verifies; spent marks and sessions match one to one; every
   * closed session has its receipt; every voucher a phone saw accepted is spent; every receipt
   * a phone received is in the ledger, byte for byte; nothing an earlier snapshot held (spent
   * mark, closed session and its receipt) is gone or changed; new receipts verify under the
   * gateway key and charge no more than the hold.
   */
  async checkLedger(where: string): Promise<LedgerSnapshot> {
    const snap = snapshotLedger(this.station.ledgerPath);
    if (!snap.verify.ok)
      violated(where, `ledger verify failed at record ${snap.verify.sequence}: ${snap.verify.reason}`);
    if (snap.closedWithoutReceipt > 0)
      violated(where, `${snap.closedWithoutReceipt} closed session(s) without a receipt`);
    for (const cti of snap.spent)
      if (!snap.sessions.has(cti)) violated(where, `voucher ${cti} is spent but has no session`);
    for (const cti of snap.sessions.keys())
      if (!snap.spent.has(cti)) violated(where, `session for ${cti} without a spent mark`);
    for (const cti of this.acceptedByPhone.keys())
      if (!snap.spent.has(cti)) violated(where, `voucher ${cti} was accepted by a phone but is not spent`);
    for (const cti of this.spentInLedger)
      if (!snap.spent.has(cti)) violated(where, `voucher ${cti} was spent before and is not any more`);
    // A refusal means what it says: VOUCHER_SPENT only for a spent voucher; any refusal before
    // the spend (busy, faulted, …) leaves the voucher unspent, so the driver can use it again.
    for (const [cti, code] of this.#refused) {
      if (code === ErrorCode.VOUCHER_SPENT) {
        if (!snap.spent.has(cti)) violated(where, `voucher ${cti} refused as spent but it is not spent`);
      } else if (
        code !== ErrorCode.PILE_START_FAILED &&
        code !== ErrorCode.INTERNAL &&
        !this.spentInLedger.has(cti) &&
        snap.spent.has(cti)
      ) {
        violated(where, `voucher ${cti} was refused (${code}) and still spent`);
      }
    }
    this.#refused.clear();
    for (const [cti, bytes] of this.receiptsAtPhones) {
      const s = snap.sessions.get(cti);
      if (s?.state !== 'closed' || !s.receipt)
        violated(where, `a phone holds a receipt for ${cti} but the ledger has no closed session`);
      if (toHex(s.receipt) !== bytes)
        violated(where, `the ledger's receipt for ${cti} differs from the phone's`);
    }
    for (const [cti, hash] of this.closedInLedger) {
      const s = snap.sessions.get(cti);
      if (s?.state !== 'closed') violated(where, `session for ${cti} was closed before and is not now`);
      if (s.receiptHashHex !== hash) violated(where, `receipt of ${cti} changed (lost or replaced)`);
    }
    for (const s of snap.sessions.values()) {
      this.spentInLedger.add(s.ctiHex);
      if (s.state !== 'closed' || !s.receipt || !s.receiptHashHex) continue;
      this.closedInLedger.set(s.ctiHex, s.receiptHashHex);
      if (this.#verifiedReceipts.has(s.receiptHashHex)) continue;
      const receipt = parseReceipt(s.receipt);
      try {
        await verifyReceipt(nodeCrypto, receipt, this.#gatewayPublicKey);
      } catch {
        violated(where, `receipt of ${s.ctiHex} does not verify under the gateway key`);
      }
      const b = receipt.body;
      if (toHex(b.cti) !== s.ctiHex || toHex(b.sessionId) !== s.sessionIdHex)
        violated(where, `receipt of ${s.ctiHex} names another session`);
      if (b.chargedAmount > s.holdAmount || b.energyWh < 0 || b.meterStopWh < b.meterStartWh)
        violated(where, `receipt of ${s.ctiHex} charges ${b.chargedAmount} > hold ${s.holdAmount}`);
      this.#verifiedReceipts.add(s.receiptHashHex);
    }
    this.stats.receiptsInLedger = snap.receiptCount;
    return snap;
  }

  /**
   * No pile on without an open session: for each connector, contactorOn implies an open ledger
   * session on it. The ledger is read first, then the pile: no phone acts meanwhile, and the
   * gateway only ever switches a pile on after opening a session and closes one after
   * switching it off, so this order cannot report a false violation.
   */
  async checkPile(where: string, snapshot: LedgerSnapshot): Promise<SimPileState> {
    const open = openSessionsByConnector(snapshot);
    const state = await this.station.pileControl.state();
    for (const c of state.connectors) {
      if (c.contactorOn && !open.has(c.connector))
        violated(where, `connector ${c.connector} is on without an open session`);
    }
    return state;
  }

  /** Re-presents vouchers that were spent: each must be refused with VOUCHER_SPENT. */
  async checkSpentRefused(where: string, ctis: readonly string[], rng?: Rng): Promise<void> {
    for (const cti of ctis) {
      const voucher = this.vouchers.get(cti);
      if (!voucher) continue;
      const connector = rng ? rng.pick(this.station.connectors) : (this.station.connectors[0] ?? 1);
      const r = await phoneVisit(this.station, { voucher, connector, maxMs: 5_000 });
      if (!r.linked) violated(where, `re-presenting ${cti}: no link to the gateway`);
      if (r.sawStatus) violated(where, `voucher ${cti} was accepted a second time`);
      if (r.rejected !== ErrorCode.VOUCHER_SPENT)
        violated(where, `re-presenting ${cti}: expected VOUCHER_SPENT, got ${String(r.rejected)}`);
      this.stats.respentRefused++;
    }
  }

  /**
   * Recovery closes every session that was open at the crash with its pile off (nothing can
   * switch that pile on again but the gateway), so no hold stays blocked; counts the sessions
   * it resumed and closed.
   */
  checkRecovery(
    where: string,
    crashed: LedgerSnapshot,
    pileAtCrash: SimPileState,
    after: LedgerSnapshot,
  ): void {
    for (const [connector, s] of openSessionsByConnector(crashed)) {
      const now = after.sessions.get(s.ctiHex);
      if (!now) violated(where, `session for ${s.ctiHex} vanished`);
      const pileOn = pileAtCrash.connectors.find((c) => c.connector === connector)?.contactorOn ?? false;
      if (now.state === 'open') {
        if (!pileOn) violated(where, `session for ${s.ctiHex} is still open although its pile was off`);
        this.stats.resumedByRecovery++;
      } else {
        this.stats.closedByRecovery++;
      }
    }
  }

  /** Every voucher spent so far (for the final full re-presentation). */
  spentVouchers(): string[] {
    return [...this.spentInLedger];
  }
}

// ---- one random kill -9 run -------------------------------------------------------------------

export interface RunReport {
  readonly run: number;
  /** When the kill came, ms after the run's phones set off. */
  readonly killDelayMs: number;
  /** For a targeted kill: which phone write it followed, and by how long (ms). */
  readonly killTarget: { readonly phase: 'present' | 'stop'; readonly delayMs: number } | undefined;
  /** When the restart was also killed, this long after spawning (ms). */
  readonly startCrashMs: number | undefined;
  readonly phones: readonly PhoneResult[];
  readonly openAfterRecovery: number;
  readonly ms: number;
}

/** Checks after a (re)start: ledger, pile, and spent vouchers refused. */
export async function checkAfterRestart(
  model: CrashModel,
  rng: Rng,
  where: string,
  newlySpent: readonly string[],
): Promise<LedgerSnapshot> {
  const snap = await model.checkLedger(`${where} (after recovery)`);
  await model.checkPile(`${where} (after recovery)`, snap);
  const older = model.spentVouchers().filter((c) => !newlySpent.includes(c));
  const sample = [...newlySpent];
  if (older.length > 0) sample.push(rng.pick(older));
  await model.checkSpentRefused(`${where} (re-presenting spent vouchers)`, sample, rng);
  return snap;
}

/**
 * One run, with the gateway running and checked: maybe attach to a running session and stop
 * it; one or two token taps (new vouchers, vouchers that were never spent, or the same voucher
 * on both connectors at once), some stopped after a random delay; kill -9 after a random
 * delay; check ledger and pile as the crash left them; restart; check again after recovery
 * and re-present the spent vouchers.
 */
export async function randomKillRun(
  model: CrashModel,
  rng: Rng,
  runIndex: number,
  snapshot: LedgerSnapshot,
): Promise<{ report: RunReport; snapshot: LedgerSnapshot }> {
  const started = performance.now();
  const where = `run ${runIndex} (seed ${rng.seed})`;
  const station = model.station;
  const plans: (PhonePlan & { readonly delayMs: number })[] = [];

  const open = [...openSessionsByConnector(snapshot).values()];
  let attachedConnector: number | undefined;
  if (open.length > 0 && rng.chance(open.length >= station.connectors.length ? 0.8 : 0.35)) {
    const session = rng.pick(open);
    const voucher = model.vouchers.get(session.ctiHex);
    if (voucher) {
      attachedConnector = session.connector;
      plans.push({ voucher, connector: undefined, stopAfterMs: rng.int(0, 200), delayMs: rng.int(0, 100) });
    }
  }
  const neverSpent = [...model.vouchers.values()].filter(
    (v) => !model.spentInLedger.has(v.ctiHex) && !model.acceptedByPhone.has(v.ctiHex),
  );
  const taps = rng.int(1, 2);
  // Connectors without a session (or whose session the attaching phone is about to stop) and
  // no tap yet: mostly taps go there; sometimes to a busy one (CONNECTOR_BUSY must not spend).
  const busy = new Set(open.map((s) => s.connector));
  if (attachedConnector !== undefined) busy.delete(attachedConnector);
  for (let i = 0; i < taps; i++) {
    let voucher: StationVoucher;
    const previous = plans.at(-1);
    if (i === 1 && previous && previous.connector !== undefined && rng.chance(0.15)) {
      voucher = previous.voucher; // the same voucher on two connectors at once
    } else if (neverSpent.length > 0 && rng.chance(0.25)) {
      voucher = neverSpent.splice(rng.int(0, neverSpent.length - 1), 1)[0]!;
    } else {
      voucher = await model.issue(rng.pick(HOLDS));
    }
    const candidates = station.connectors.filter(
      (c) => !busy.has(c) && !plans.some((p) => p.connector === c),
    );
    const connector =
      candidates.length > 0 && rng.chance(0.85) ? rng.pick(candidates) : rng.pick(station.connectors);
    plans.push({
      voucher,
      connector,
      stopAfterMs: rng.chance(0.5) ? rng.int(0, 400) : undefined,
      mtu: rng.pick([23, 64, 185, 247, 517]),
      delayMs: rng.int(0, 150),
    });
  }
  // Either at a random time, or aimed at the few ms after a phone's presentation or stop
  // request (spend commit, pile start, pile stop, receipt signing and commit happen there).
  const killAfterMs = rng.int(0, 700);
  const firstTap = plans.findIndex((p) => p.connector !== undefined);
  const killTarget = rng.chance(0.4)
    ? { phase: rng.chance(0.5) ? ('present' as const) : ('stop' as const), delayMs: rng.int(0, 30) }
    : undefined;
  let fire: () => void = () => {};
  const killNow = new Promise<void>((resolve) => {
    fire = resolve;
  });
  if (killTarget) {
    const plan = plans[firstTap]!;
    let armed = false;
    plans[firstTap] = {
      ...plan,
      stopAfterMs: killTarget.phase === 'stop' ? (plan.stopAfterMs ?? rng.int(0, 200)) : plan.stopAfterMs,
      onWrite: (phase) => {
        if (armed || phase !== killTarget.phase) return;
        armed = true;
        setTimeout(fire, killTarget.delayMs);
      },
    };
  } else {
    setTimeout(fire, killAfterMs);
  }
  const setOff = performance.now();
  const visits = plans.map(async (plan) => {
    await sleep(plan.delayMs);
    return phoneVisit(station, plan);
  });
  // A targeted phone that ends without that write (e.g. refused) lets the kill come at once.
  if (killTarget) void visits[firstTap]!.then(fire);
  await killNow;
  const killDelayMs = Math.round(performance.now() - setOff);
  await station.killGateway();
  const phones = await Promise.all(visits);
  model.recordPhones(phones, where);

  const crashed = await model.checkLedger(`${where} (after kill -9)`);
  const pileAtCrash = await model.checkPile(`${where} (after kill -9, before recovery)`, crashed);

  const newlySpent = plans
    .map((p) => p.voucher.ctiHex)
    .filter((cti, i, all) => crashed.spent.has(cti) && all.indexOf(cti) === i);
  let startCrashMs: number | undefined;
  if (rng.chance(0.1)) {
    // A second crash, during start-up recovery: the next start must still recover everything.
    startCrashMs = rng.int(100, 600);
    await station.killDuringStart(startCrashMs);
    await model.checkLedger(`${where} (after a kill -9 during start-up)`);
  }
  await station.startGateway();
  const after = await checkAfterRestart(model, rng, where, newlySpent);
  model.checkRecovery(`${where} (recovery)`, crashed, pileAtCrash, after);
  const openAfterRecovery = openSessionsByConnector(after).size;
  return {
    report: {
      run: runIndex,
      killDelayMs,
      killTarget,
      startCrashMs,
      phones,
      openAfterRecovery,
      ms: performance.now() - started,
    },
    snapshot: after,
  };
}

/** A one-line summary of a run for progress output. */
export function describeRun(report: RunReport): string {
  const phones = report.phones
    .map((p) => {
      const kind = p.plan.connector === undefined ? 'attach' : `tap@${p.plan.connector}`;
      const outcome = !p.linked
        ? 'no-link'
        : p.receipt
          ? 'receipt'
          : p.rejected !== undefined
            ? `rejected:${p.rejected}`
            : p.sawStatus
              ? 'charging'
              : 'cut';
      return `${kind}=${outcome}`;
    })
    .join(' ');
  const target = report.killTarget ? ` (${report.killTarget.phase}+${report.killTarget.delayMs})` : '';
  const restart = report.startCrashMs === undefined ? '' : ` restart-killed@${report.startCrashMs}ms`;
  return `run ${report.run}: kill@${report.killDelayMs}ms${target} ${phones} open=${report.openAfterRecovery}${restart} (${Math.round(report.ms)} ms)`;
}
