/**
 * Virtual BLE on machines without kernel Bluetooth (integration tests, and `npm start`'s
 * virtual phone): BlueZ's emulated LE controller (`btvirt -s`, made to work without kernel
 * AF_ALG by the LD_PRELOAD library scripts/ble/af-alg-shim.c, built on demand into
 * .cache/ble/) and one socat pty per BLE device — each pty is an HCI UART that
 * @stoprocent/bleno or noble opens. btvirt's socket
 * paths are fixed, so one btvirt runs per machine: `startVirtualBle` takes an exclusive lock
 * file (holder PID, stale-lock recovery) and waits for it. Node only.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { ReadStream } from 'node:tty';
import { fileURLToPath } from 'node:url';

/** btvirt -s listens here (fixed in BlueZ); every connection becomes one LE controller. */
export const BTVIRT_LE_SOCKET = '/tmp/bt-server-le';
/** All sockets `btvirt -s` creates (removed before start and after stop). */
const BTVIRT_SOCKETS = ['le', 'bredrle', 'bredr', 'amp', 'mon'].map((s) => `/tmp/bt-server-${s}`);
/** Machine-wide lock: one btvirt per machine. */
export const BTVIRT_LOCK_PATH = '/tmp/pilepass-btvirt.lock';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SHIM_SOURCE = join(REPO_ROOT, 'scripts/ble/af-alg-shim.c');
const SHIM_OUTPUT = join(REPO_ROOT, '.cache/ble/af-alg-shim.so');
const INSTALL_HINT = 'install them with `bash scripts/system-deps.sh ble` (as root)';
const OUTPUT_LIMIT = 8_192;

export interface VirtualBleOptions {
  /** Number of BLE devices (ptys), 1–8. */
  readonly devices: number;
  /** How long to wait for another holder of the machine-wide lock (default 120 s). */
  readonly lockTimeoutMs?: number;
  /** How long each child may take to become ready (default 10 s). */
  readonly startTimeoutMs?: number;
}

export interface VirtualBle {
  /** One HCI UART path per device (symlinks to /dev/pts/N), for BLUETOOTH_HCI_SOCKET_UART_PORT. */
  readonly ptys: readonly string[];
  /** btvirt's and socat's PIDs (each leads its own process group). */
  readonly pids: readonly number[];
  /** Kills every child (by process group), removes sockets, ptys and the lock. Idempotent. */
  stop(): Promise<void>;
}

interface LockContent {
  readonly pid: number;
  /** /proc/<pid>/stat start time, to tell a reused PID from the holder. */
  readonly startTicks: number | null;
  /** Children started under this lock (process group leaders), killed on stale recovery. */
  readonly children: readonly number[];
  /** The holder's pty directory, removed on stale recovery. */
  readonly dir?: string | undefined;
}

/** A spawned child with its recent output kept for diagnostics. */
interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  output: string;
  exited: boolean;
  exitInfo: string;
  readonly exitPromise: Promise<void>;
}

/**
 * Starts btvirt and `devices` socat ptys. Throws (never skips) when btvirt, socat or gcc is
 * missing, naming `bash scripts/system-deps.sh ble`.
 */
export async function startVirtualBle(options: VirtualBleOptions): Promise<VirtualBle> {
  const { devices } = options;
  if (!Number.isInteger(devices) || devices < 1 || devices > 8) {
    throw new RangeError(`devices must be an integer 1–8, got ${devices}`);
  }
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const tools = requireTools(['btvirt', 'socat', 'gcc']);
  const shim = buildShim(tools.gcc!);

  await acquireLock(options.lockTimeoutMs ?? 120_000);
  const children: Child[] = [];
  let dir: string | undefined;
  const exitHandler = () => {
    // Last resort when the process exits without stop(): synchronous, best effort.
    for (const child of children) killGroup(child.pid, 'SIGKILL');
    removeSockets();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    releaseLock();
  };
  process.on('exit', exitHandler);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(children.map((c) => terminate(c)));
      removeSockets();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      releaseLock();
      process.removeListener('exit', exitHandler);
    })();
    return stopping;
  };

  try {
    const foreign = findProcesses('btvirt');
    if (foreign.length > 0) {
      throw new Error(
        `btvirt is already running outside this fixture (pid ${foreign.join(', ')}); its sockets ` +
          `${BTVIRT_LE_SOCKET}… are fixed, so stop it first`,
      );
    }
    removeSockets();
    const ptyDir = mkdtempSync(join(tmpdir(), 'pilepass-ble-'));
    dir = ptyDir;

    const preload = [shim, process.env.LD_PRELOAD].filter(Boolean).join(':');
    const btvirt = spawnChild('btvirt', tools.btvirt!, ['-s'], {
      ...process.env,
      LD_PRELOAD: preload,
      AF_ALG_SHIM_PARENT_PID: String(process.pid),
    });
    children.push(btvirt);
    recordChildren(children, ptyDir);
    await waitFor(
      () => isSocket(BTVIRT_LE_SOCKET),
      btvirt,
      startTimeoutMs,
      `btvirt did not create ${BTVIRT_LE_SOCKET}`,
    );

    const ptys: string[] = [];
    for (let i = 0; i < devices; i++) {
      const link = join(ptyDir, `hci${i}`);
      const socat = spawnChild(
        `socat hci${i}`,
        tools.socat!,
        ['-d', '-d', `PTY,link=${link},raw,echo=0`, `UNIX-CONNECT:${BTVIRT_LE_SOCKET}`],
        process.env,
      );
      children.push(socat);
      recordChildren(children, ptyDir);
      // `-d -d` logs this once both the pty and the controller connection are open.
      await waitFor(
        () => socat.output.includes('starting data transfer loop') && existsSync(link),
        socat,
        startTimeoutMs,
        `socat did not connect pty ${link} to ${BTVIRT_LE_SOCKET}`,
      );
      // The controller must answer: without a working shim btvirt drops it right away.
      await probeController(link, startTimeoutMs, socat).catch((err: Error) => {
        throw new Error(
          `${err.message} (btvirt drops LE controllers when socket(AF_ALG) fails: is ${shim} preloaded?)\n` +
            `${describeChild(btvirt)}\n${describeChild(socat)}`,
        );
      });
      ptys.push(link);
    }
    return { ptys, pids: children.map((c) => c.pid), stop };
  } catch (err) {
    const diagnostics = children.map((c) => describeChild(c)).join('\n');
    await stop().catch(() => {});
    if (err instanceof Error && diagnostics && !err.message.includes('--- ')) {
      err.message += `\n${diagnostics}`;
    }
    throw err;
  }
}

// ---- tools and shim ---------------------------------------------------------------------------

function requireTools(names: readonly string[]): Record<string, string> {
  const found: Record<string, string> = {};
  const missing: string[] = [];
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const name of names) {
    const path = dirs
      .filter((d) => d !== '')
      .map((d) => join(d, name))
      .find((p) => {
        try {
          accessSync(p, constants.X_OK);
          return statSync(p).isFile();
        } catch {
          return false;
        }
      });
    if (path === undefined) missing.push(name);
    else found[name] = path;
  }
  if (missing.length > 0) {
    throw new Error(
      `virtual BLE needs btvirt (bluez-test-tools), socat and gcc; missing: ${missing.join(', ')}; ` +
        INSTALL_HINT,
    );
  }
  return found;
}

/** Builds the AF_ALG shim when missing or older than its source; returns the .so path. */
export function buildShim(gcc = 'gcc'): string {
  const sourceTime = statSync(SHIM_SOURCE).mtimeMs;
  if (existsSync(SHIM_OUTPUT) && statSync(SHIM_OUTPUT).mtimeMs >= sourceTime) return SHIM_OUTPUT;
  mkdirSync(dirname(SHIM_OUTPUT), { recursive: true });
  // Build beside the target and rename: concurrent builds never expose a half-written .so.
  const temp = `${SHIM_OUTPUT}.${process.pid}.tmp`;
  const result = spawnSync(gcc, ['-shared', '-fPIC', '-O2', '-Wall', '-o', temp, SHIM_SOURCE, '-ldl'], {
    encoding: 'utf8',
  });
  if (result.status !== 0) {
    rmSync(temp, { force: true });
    throw new Error(
      `building ${SHIM_OUTPUT} failed (gcc ${result.error?.message ?? `exit ${result.status}`}):\n` +
        `${result.stderr}\nIf headers are missing, ${INSTALL_HINT}`,
    );
  }
  renameSync(temp, SHIM_OUTPUT);
  return SHIM_OUTPUT;
}

// ---- children ---------------------------------------------------------------------------------

function spawnChild(name: string, file: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  // detached: each child leads its own process group, so stop() can kill the whole group.
  const proc = spawn(file, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  if (proc.pid === undefined) throw new Error(`could not start ${name} (${file})`);
  const child: Child = {
    name,
    proc,
    pid: proc.pid,
    output: '',
    exited: false,
    exitInfo: '',
    exitPromise: new Promise<void>((resolveExit) => {
      proc.once('exit', (code, signal) => {
        child.exited = true;
        child.exitInfo = signal !== null ? `signal ${signal}` : `exit code ${code}`;
        resolveExit();
      });
    }),
  };
  const keep = (chunk: Buffer) => {
    child.output = (child.output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.once('error', (err) => {
    child.output += `\n[spawn error] ${err.message}`;
  });
  return child;
}

async function waitFor(ready: () => boolean, child: Child, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (child.exited) throw new Error(describeFailure(`${what}: ${child.name} exited`, child));
    if (Date.now() > deadline) throw new Error(describeFailure(`${what} within ${timeoutMs} ms`, child));
    await sleep(20);
  }
}

/** Sends HCI_Reset through the pty and waits for its Command Complete (status 0). */
async function probeController(path: string, timeoutMs: number, socat: Child): Promise<void> {
  const fd = openSync(path, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  const stream = new ReadStream(fd);
  try {
    await new Promise<void>((resolveProbe, reject) => {
      let seen = '';
      const timer = setTimeout(
        () => reject(new Error(`no HCI answer on ${path} within ${timeoutMs} ms (got ${seen || 'nothing'})`)),
        timeoutMs,
      );
      stream.on('data', (chunk: Buffer) => {
        seen += chunk.toString('hex');
        // Event 0x0e Command Complete, length 4, n packets, opcode 0x0c03, status 0.
        if (/040e04[0-9a-f]{2}030c00/.test(seen)) {
          clearTimeout(timer);
          resolveProbe();
        }
      });
      stream.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      void socat.exitPromise.then(() => {
        clearTimeout(timer);
        reject(new Error(`${socat.name} exited before the controller answered on ${path}`));
      });
      writeSync(fd, Buffer.from([0x01, 0x03, 0x0c, 0x00]));
    });
  } finally {
    stream.destroy(); // closes fd
  }
}

function describeChild(child: Child): string {
  const state = child.exited ? child.exitInfo : 'running';
  return `--- ${child.name} (pid ${child.pid}, ${state}) output:\n${child.output.trim() || '(none)'}`;
}

function describeFailure(message: string, child: Child): string {
  return `${message}\n${describeChild(child)}`;
}

async function terminate(child: Child): Promise<void> {
  if (child.exited) return;
  killGroup(child.pid, 'SIGTERM');
  if (await settlesWithin(child.exitPromise, 3_000)) return;
  killGroup(child.pid, 'SIGKILL');
  await settlesWithin(child.exitPromise, 2_000);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

function removeSockets(): void {
  for (const path of BTVIRT_SOCKETS) rmSync(path, { force: true });
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

// ---- machine-wide lock ------------------------------------------------------------------------

async function acquireLock(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const mine: LockContent = { pid: process.pid, startTicks: processStartTicks(process.pid), children: [] };
  for (;;) {
    try {
      const fd = openSync(BTVIRT_LOCK_PATH, 'wx', 0o644);
      try {
        writeSync(fd, JSON.stringify(mine));
      } finally {
        closeSync(fd);
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const raw = readText(BTVIRT_LOCK_PATH);
    if (raw === undefined) continue; // released meanwhile
    const holder = parseLock(raw);
    if (holder === undefined) {
      // Being written right now, or garbage: garbage once it is older than 5 s.
      if (ageMs(BTVIRT_LOCK_PATH) > 5_000) recoverStaleLock(raw, undefined);
    } else if (holder.pid === process.pid) {
      throw new Error(
        `${BTVIRT_LOCK_PATH} is already held by this process: stop() the other virtual BLE first`,
      );
    } else if (!isAlive(holder.pid, holder.startTicks)) {
      recoverStaleLock(raw, holder);
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `virtual BLE is busy: ${BTVIRT_LOCK_PATH} held by pid ${holder?.pid ?? '?'} ` +
          `(${holder ? commandLine(holder.pid) : 'unreadable lock'}) for more than ${timeoutMs} ms`,
      );
    }
    await sleep(200);
  }
}

/** Takes a dead holder's lock out of the way, killing btvirt/socat it left behind. */
function recoverStaleLock(raw: string, holder: LockContent | undefined): void {
  const aside = `${BTVIRT_LOCK_PATH}.${process.pid}.stale`;
  try {
    renameSync(BTVIRT_LOCK_PATH, aside);
  } catch {
    return; // someone else recovered or released it
  }
  if (readText(aside) !== raw) {
    // A live process re-created the lock between our read and the rename: put it back.
    try {
      linkSync(aside, BTVIRT_LOCK_PATH);
    } catch {
      // a third process holds it now; theirs wins
    }
    rmSync(aside, { force: true });
    return;
  }
  rmSync(aside, { force: true });
  for (const pid of holder?.children ?? []) {
    const comm = readText(`/proc/${pid}/comm`)?.trim();
    if (comm === 'btvirt' || comm === 'socat') killGroup(pid, 'SIGKILL');
  }
  const dir = holder?.dir;
  if (
    dir !== undefined &&
    dirname(dir) === tmpdir() &&
    /^pilepass-ble-[\w]+$/.test(dir.slice(tmpdir().length + 1))
  ) {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rewrites our lock with the current children and pty directory (atomic rename over it). */
function recordChildren(children: readonly Child[], dir: string): void {
  const content: LockContent = {
    pid: process.pid,
    startTicks: processStartTicks(process.pid),
    children: children.map((c) => c.pid),
    dir,
  };
  const temp = `${BTVIRT_LOCK_PATH}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(content));
  renameSync(temp, BTVIRT_LOCK_PATH);
}

function releaseLock(): void {
  const raw = readText(BTVIRT_LOCK_PATH);
  if (raw !== undefined && parseLock(raw)?.pid === process.pid) {
    try {
      unlinkSync(BTVIRT_LOCK_PATH);
    } catch {
      // gone already
    }
  }
}

function parseLock(raw: string): LockContent | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockContent>;
    if (!Number.isInteger(value.pid) || (value.pid as number) <= 0) return undefined;
    return {
      pid: value.pid as number,
      startTicks: typeof value.startTicks === 'number' ? value.startTicks : null,
      children: Array.isArray(value.children) ? value.children.filter((p) => Number.isInteger(p)) : [],
      dir: typeof value.dir === 'string' ? value.dir : undefined,
    };
  } catch {
    return undefined;
  }
}

// ---- processes --------------------------------------------------------------------------------

function isAlive(pid: number, startTicks: number | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = readStat(pid);
  if (stat === undefined) return true; // no /proc: trust kill(0)
  if (stat.state === 'Z') return false;
  return startTicks === null || stat.startTicks === startTicks;
}

function processStartTicks(pid: number): number | null {
  return readStat(pid)?.startTicks ?? null;
}

function readStat(pid: number): { state: string; startTicks: number } | undefined {
  const raw = readText(`/proc/${pid}/stat`);
  if (raw === undefined) return undefined;
  // "pid (comm) state ppid …": fields after the last ')' start at field 3; starttime is field 22.
  const fields = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  const startTicks = Number(fields[19]);
  return { state: fields[0] ?? '?', startTicks: Number.isFinite(startTicks) ? startTicks : -1 };
}

/** Live (non-zombie) processes whose command name is `name`. */
function findProcesses(name: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => readText(`/proc/${pid}/comm`)?.trim() === name && readStat(pid)?.state !== 'Z');
}

function commandLine(pid: number): string {
  return readText(`/proc/${pid}/cmdline`)?.split('\0').join(' ').trim() || 'command unknown';
}

// ---- small helpers ----------------------------------------------------------------------------

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
