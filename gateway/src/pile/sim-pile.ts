/**
 * The simulated pile as its own process, so a pile outlives the gateway exactly as hardware
 * does: a test can kill the gateway and still see the contactor on. Serves the sim-protocol.ts
 * wire protocol on a Unix socket to any number of clients (gateway driver, test controller),
 * pushes readings every 250 ms and on change, and keeps its state when clients disconnect.
 *
 *   tsx gateway/src/pile/sim-pile.ts --socket <path> [--connectors 1,2] [--power-w 7000]
 *       [--speed 1] [--plugged all|none|1,2] [--allow-unplugged-start] [--state <file>]
 *       [--watch-pid <pid>]
 *
 * Prints "sim-pile ready <socket>" on stdout once listening. Exits on SIGTERM/SIGINT, removing
 * the socket. With --state it persists its state (atomically) on every change and every second
 * while a contactor is on, and resumes from it; simulated time does not run while it is down.
 * With --watch-pid it exits when that process is gone (keeps test runs from leaking piles).
 * @module
 */

import { chmodSync, existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createSimPileModel, type PersistedSimState, parsePersistedState } from './sim-model.ts';
import { createLineSplitter, parseRequest, type SimEvent, type SimResponse } from './sim-protocol.ts';

const TICK_MS = 250;
const PERSIST_EVERY_MS = 1000;
/** A client that stops reading is dropped before its backlog costs the pile memory. */
const MAX_CLIENT_BACKLOG_BYTES = 1024 * 1024;

function fatal(message: string): never {
  process.stderr.write(`sim-pile: ${message}\n`);
  process.exit(2);
}

function parseConnectorList(text: string, what: string): number[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (list.some((n) => !Number.isSafeInteger(n) || n < 1 || n > 255)) fatal(`${what}: integers 1..255`);
  return [...new Set(list)];
}

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    connectors: { type: 'string', default: '1' },
    'power-w': { type: 'string', default: '7000' },
    speed: { type: 'string', default: '1' },
    plugged: { type: 'string', default: 'all' },
    'allow-unplugged-start': { type: 'boolean', default: false },
    state: { type: 'string' },
    'watch-pid': { type: 'string' },
  },
  strict: true,
});

const socketPath = values.socket ?? fatal('--socket <path> is required');
const connectors = parseConnectorList(values.connectors, '--connectors');
if (connectors.length === 0) fatal('--connectors: at least one');
const ratedPowerW = Number(values['power-w']);
if (!Number.isSafeInteger(ratedPowerW) || ratedPowerW < 0) fatal('--power-w: integer W ≥ 0');
const speed = Number(values.speed);
if (!(speed > 0) || !Number.isFinite(speed)) fatal('--speed: positive number');
const plugged =
  values.plugged === 'all'
    ? connectors
    : values.plugged === 'none'
      ? []
      : parseConnectorList(values.plugged, '--plugged');
const statePath = values.state;
const watchPid = values['watch-pid'] === undefined ? undefined : Number(values['watch-pid']);
if (watchPid !== undefined && (!Number.isSafeInteger(watchPid) || watchPid <= 0)) fatal('--watch-pid: a pid');

// Writes to a parent that died must not kill the pile: the pile outliving its parent is the point.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

function loadState(): PersistedSimState | undefined {
  if (statePath === undefined || !existsSync(statePath)) return undefined;
  try {
    const state = parsePersistedState(JSON.parse(readFileSync(statePath, 'utf8')));
    if (state === undefined) fatal(`--state ${statePath}: not a sim pile state file`);
    return state;
  } catch (error) {
    return fatal(`--state ${statePath}: ${(error as Error).message}`);
  }
}

const model = createSimPileModel({
  connectors,
  ratedPowerW,
  speed,
  requirePlug: !values['allow-unplugged-start'],
  plugged,
  nowMs: () => performance.now(),
  restored: loadState(),
});

function persist(): void {
  if (statePath === undefined) return;
  const temporary = `${statePath}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(model.snapshot())}\n`);
  renameSync(temporary, statePath);
}

// ---- clients ----------------------------------------------------------------------------------

const clients = new Set<Socket>();

function send(socket: Socket, message: SimResponse | SimEvent): void {
  if (socket.destroyed || !socket.writable) return;
  if (socket.writableLength > MAX_CLIENT_BACKLOG_BYTES) {
    socket.destroy();
    return;
  }
  socket.write(`${JSON.stringify(message)}\n`);
}

function broadcast(events: readonly SimEvent[]): void {
  for (const event of events) for (const socket of clients) send(socket, event);
}

function serve(socket: Socket): void {
  clients.add(socket);
  socket.setEncoding('utf8');
  const feed = createLineSplitter(
    (line) => {
      const parsed = parseRequest(line);
      if (!parsed.ok) {
        send(socket, { id: parsed.id, ok: false, code: 'bad-request', error: parsed.error });
        return;
      }
      let outcome: ReturnType<typeof model.handle>;
      try {
        outcome = model.handle(parsed.request, clients.size);
      } catch (error) {
        send(socket, { id: parsed.request.id, ok: false, code: 'internal', error: String(error) });
        return;
      }
      send(socket, { ...outcome.response, id: parsed.request.id });
      broadcast(outcome.events);
      if (outcome.events.length > 0) persist();
    },
    () => send(socket, { id: null, ok: false, code: 'bad-request', error: 'line too long' }),
  );
  socket.on('data', (chunk: string) => feed(chunk));
  socket.on('error', () => socket.destroy());
  // The contactor stays exactly as it is: who decides about an orphaned session is the gateway.
  socket.on('close', () => clients.delete(socket));
}

// ---- lifecycle --------------------------------------------------------------------------------

const server = createServer(serve);
let lastPersistMs = performance.now();
const ticker = setInterval(() => {
  broadcast(model.tick());
  if (model.anyContactorOn() && performance.now() - lastPersistMs >= PERSIST_EVERY_MS) {
    lastPersistMs = performance.now();
    persist();
  }
}, TICK_MS);
const watcher =
  watchPid === undefined
    ? undefined
    : setInterval(() => {
        try {
          process.kill(watchPid, 0);
        } catch {
          shutdown(0);
        }
      }, 500);

let stopping = false;
function removeSocket(): void {
  try {
    unlinkSync(socketPath);
  } catch {
    // already gone
  }
}

function shutdown(code: number): void {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  if (watcher !== undefined) clearInterval(watcher);
  try {
    persist();
  } catch (error) {
    process.stderr.write(`sim-pile: could not persist state: ${(error as Error).message}\n`);
  }
  for (const socket of clients) socket.destroy();
  server.close();
  removeSocket();
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.on('exit', () => {
  if (!stopping) removeSocket();
});

/** A leftover socket file from a killed pile is removed; one that answers belongs to a live pile. */
function clearStaleSocket(): Promise<void> {
  if (!existsSync(socketPath)) return Promise.resolve();
  return new Promise((resolve) => {
    const probe = connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      fatal(`${socketPath} is served by a running pile`);
    });
    probe.once('error', () => {
      removeSocket();
      resolve();
    });
  });
}

await clearStaleSocket();
server.on('error', (error) => fatal(`cannot listen on ${socketPath}: ${error.message}`));
server.listen(socketPath, () => {
  // Anyone who can reach the socket can switch the contactor: owner only.
  chmodSync(socketPath, 0o600);
  persist();
  process.stdout.write(`sim-pile ready ${socketPath}\n`);
});
