/**
 * PostgreSQL for tests: `withPostgres()` gives a test file its own database.
 *
 * - With `DATABASE_URL` set (a `postgres://` URL), it uses that server: it creates a fresh
 *   schema for the file and returns a URL whose `options=-c search_path=…` points there;
 *   `stop()` drops every schema it created.
 * - Otherwise it starts a throwaway cluster: Debian's PostgreSQL (installed through
 *   `bash scripts/system-deps.sh postgres` when missing — as root; otherwise it fails with
 *   that command), `initdb` in a temp dir (scripts/postgres-cluster.sh init), the server run
 *   as this process's child — as the `postgres` user when we are root, since PostgreSQL
 *   refuses to run as root — listening on 127.0.0.1 on a free port with its unix socket in
 *   the temp dir and trust authentication. Durability is off (fsync, synchronous_commit,
 *   full_page_writes) to start fast: fine for tests, never for a benchmark (use
 *   `scripts/postgres-cluster.sh start` without --fast there). `stop()` shuts it down
 *   and removes the dir; so do a process 'exit' handler and, if the test process is killed,
 *   a detached watchdog (`postgres-cluster.sh watch`).
 *
 * `freshUrl()` creates one more empty schema on the same server, for tests that need their
 * own tables (each `openDatabase` on it migrates from scratch).
 */

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileAsync = promisify(execFile);
const CLUSTER_SCRIPT = fileURLToPath(new URL('../../scripts/postgres-cluster.sh', import.meta.url));
const TEST_DATABASE = 'pilepass_test';

export interface PostgresFixture {
  /** URL of this file's database (a fresh database, or a fresh schema of DATABASE_URL's). */
  readonly url: string;
  /** True when the server came from DATABASE_URL rather than a throwaway cluster. */
  readonly external: boolean;
  /** How long getting a ready database took, ms (cluster start included). */
  readonly startupMs: number;
  /** A URL scoped to a new, empty schema on the same server. */
  freshUrl(): Promise<string>;
  /** Drops what the fixture created; stops and removes a throwaway cluster. */
  stop(): Promise<void>;
}

/** `url` with `-c search_path=schema` added to its startup options. */
export function withSearchPath(url: string, schema: string): string {
  const u = new URL(url);
  const existing = u.searchParams.get('options');
  u.searchParams.set('options', `${existing ? `${existing} ` : ''}-c search_path=${schema}`);
  return u.toString();
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function schemaName(): string {
  return `t_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** A database for this test file; see the module comment. */
export async function withPostgres(): Promise<PostgresFixture> {
  const started = performance.now();
  const external = process.env.DATABASE_URL?.trim();
  if (external) {
    if (!/^postgres(ql)?:\/\//i.test(external))
      throw new Error('DATABASE_URL must be a postgres:// URL to run the PostgreSQL tests against it');
    return schemaFixture(external, started);
  }
  const cluster = await startCluster();
  try {
    await adminQuery(cluster.adminUrl, `CREATE DATABASE ${TEST_DATABASE}`);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  const base = cluster.adminUrl.replace(/\/postgres$/, `/${TEST_DATABASE}`);
  return {
    url: base,
    external: false,
    startupMs: performance.now() - started,
    freshUrl: async () => {
      const schema = schemaName();
      await adminQuery(base, `CREATE SCHEMA ${schema}`);
      return withSearchPath(base, schema);
    },
    stop: () => cluster.stop(),
  };
}

/** Isolation by schemas on a server we do not own (DATABASE_URL). */
async function schemaFixture(serverUrl: string, started: number): Promise<PostgresFixture> {
  const schemas: string[] = [];
  const fresh = async (): Promise<string> => {
    const schema = schemaName();
    await adminQuery(serverUrl, `CREATE SCHEMA ${schema}`);
    schemas.push(schema);
    return withSearchPath(serverUrl, schema);
  };
  const url = await fresh();
  return {
    url,
    external: true,
    startupMs: performance.now() - started,
    freshUrl: fresh,
    stop: async () => {
      for (const schema of schemas.splice(0))
        await adminQuery(serverUrl, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

// ---- throwaway cluster ---------------------------------------------------------------------------

interface Cluster {
  readonly adminUrl: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function script(...args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('bash', [CLUSTER_SCRIPT, ...args], { maxBuffer: 1 << 20 });
    return stdout.trim();
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`scripts/postgres-cluster.sh ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** The server command line, dropping root privileges for PostgreSQL. */
function serverCommand(bin: string, dataDir: string, port: number): [string, string[]] {
  const server = [join(bin, 'postgres'), '-D', dataDir, '-p', String(port)];
  if (!isRoot()) return [server[0]!, server.slice(1)];
  // setpriv execs the server directly, so our child *is* the postmaster and we reap it.
  if (existsSync('/usr/bin/setpriv'))
    return ['/usr/bin/setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', ...server]];
  return ['runuser', ['-u', 'postgres', '--', ...server]];
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function waitReady(url: string, child: ChildProcess, logFile: string): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      if (/could not bind|Address already in use/i.test(log)) return false;
      throw new Error(`PostgreSQL exited during startup:\n${log.slice(-2000)}`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await client.end().catch(() => {});
    }
  }
  throw new Error(`PostgreSQL did not accept connections within 60 s (log: ${logFile})`);
}

async function startCluster(): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-pg-'));
  let child: ChildProcess | undefined;
  let stopped = false;
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  // Last resort when the test file never calls stop(): immediate shutdown, synchronously.
  const onExit = () => {
    if (stopped) return;
    stopped = true;
    try {
      execFileSync('bash', [CLUSTER_SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 20_000 });
    } catch {
      // Nothing more to do while exiting; the watchdog tries again.
    }
  };
  process.once('exit', onExit);
  try {
    // A watchdog stops the cluster and removes the dir if this process dies without cleaning up.
    spawn('bash', [CLUSTER_SCRIPT, 'watch', String(process.pid), dir], {
      detached: true,
      stdio: 'ignore',
    }).unref();
    let port = await freePort();
    await script('init', dir, String(port), '--fast');
    const bin = await script('bindir');
    const logFile = join(dir, 'server.log');
    for (let attempt = 1; ; attempt++) {
      const log = openSync(logFile, 'a');
      const [command, args] = serverCommand(bin, join(dir, 'data'), port);
      child = spawn(command, args, { cwd: dir, stdio: ['ignore', log, log] });
      closeSync(log);
      child.unref();
      const adminUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
      if (await waitReady(adminUrl, child, logFile)) {
        const server = child;
        return {
          adminUrl,
          stop: async () => {
            if (stopped) return;
            stopped = true;
            process.removeListener('exit', onExit);
            // SIGQUIT: immediate shutdown; the data is thrown away anyway.
            server.kill('SIGQUIT');
            const killer = setTimeout(() => server.kill('SIGKILL'), 15_000);
            await exited(server);
            clearTimeout(killer);
            removeDir();
          },
        };
      }
      // Someone took the port between freePort() and bind: try another.
      await exited(child);
      if (attempt >= 5) throw new Error('PostgreSQL could not bind a free port after 5 attempts');
      port = await freePort();
    }
  } catch (error) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGQUIT');
      await exited(child);
    }
    stopped = true;
    process.removeListener('exit', onExit);
    removeDir();
    throw error;
  }
}
