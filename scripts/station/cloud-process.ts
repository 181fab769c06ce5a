/**
 * Starts the real cloud (`pilepass-cloud start`) as a separate process on loopback, on a
 * SQLite file in `dataDir` or on `DATABASE_URL`, and waits until it answers. Used by the
 * cross-process concurrency test, the gateway ⇄ cloud sync tests, npm start and the browser
 * scenario.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:net';

const CLI = new URL('../../cloud/bin/pilepass-cloud', import.meta.url).pathname;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface CloudProcess {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export async function startCloudProcess(options: {
  port?: number;
  dataDir?: string;
  databaseUrl?: string;
  masterKeyHex: string;
  operatorToken: string;
  env?: Record<string, string>;
}): Promise<CloudProcess> {
  const port = options.port ?? (await freePort());
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    PILEPASS_MASTER_KEY: options.masterKeyHex,
    PILEPASS_OPERATOR_TOKEN: options.operatorToken,
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl;
  if (options.dataDir) env.PILEPASS_DATA_DIR = options.dataDir;
  const child = spawn(CLI, ['start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const collect = (d: Buffer) => {
    stderr += d.toString();
    // Set PILEPASS_TEST_CLOUD_LOG=<file> to keep the cloud's log when debugging a test.
    if (process.env.PILEPASS_TEST_CLOUD_LOG) appendFileSync(process.env.PILEPASS_TEST_CLOUD_LOG, d);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/v1/stations`)).ok) {
        return {
          url,
          port,
          child,
          stop: () =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null) return resolve();
              child.once('exit', () => resolve());
              child.kill('SIGTERM');
            }),
        };
      }
    } catch {}
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`cloud process did not start: ${stderr}`);
}
