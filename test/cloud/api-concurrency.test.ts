/**
 * Holds cannot overdraw, on both backends: 200 parallel voucher requests on one wallet, sent
 * over loopback HTTP to two separate cloud processes sharing the database, with money for
 * exactly 150 of them: exactly 150 succeed, 50 get insufficient_funds, and the wallet ends
 * at exactly zero — never below.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerDriver, signIn, topUp, walletOf } from '../../cloud/src/domain/drivers.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { withPostgres } from '../support/postgres.ts';
import { type Backend, type CloudWorld, GATEWAY_ID, openCloudWorld } from './support/cloud-world.ts';

const CLI = new URL('../../cloud/bin/pilepass-cloud', import.meta.url).pathname;
const AMOUNT = 1_000;
const AFFORDABLE = 150;
const REQUESTS = 200;

function freePort(): Promise<number> {
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

async function startCloudProcess(world: CloudWorld, port: number): Promise<ChildProcess> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    PILEPASS_MASTER_KEY: Buffer.from(world.masterKey).toString('hex'),
    PILEPASS_OPERATOR_TOKEN: 'operator-concurrency-test',
    PILEPASS_PER_DEVICE_CAP: String(10_000_000),
    LOG_LEVEL: 'warn',
  };
  if (world.location.databaseUrl) env.DATABASE_URL = world.location.databaseUrl;
  else env.PILEPASS_DATA_DIR = dirname(world.location.sqlitePath!);
  const child = spawn(CLI, ['start'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  for (let i = 0; i < 150; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/stations`);
      if (res.ok) return child;
    } catch {}
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`cloud process did not start: ${stderr}`);
}

describe.each<Backend>(['sqlite', 'postgres'])('no overdraw across processes on %s', (backend) => {
  let world: CloudWorld;
  let stopPostgres: (() => Promise<void>) | undefined;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    let postgresUrl: string | undefined;
    if (backend === 'postgres') {
      const pg = await withPostgres();
      postgresUrl = pg.url;
      stopPostgres = pg.stop;
    }
    world = await openCloudWorld(backend, { postgresUrl });
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(
      children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)),
    );
    await world?.close();
    await stopPostgres?.();
  });

  it(`${REQUESTS} parallel voucher requests on one wallet, 2 processes, money for ${AFFORDABLE}`, async () => {
    const { driverId } = await registerDriver(world.ctx, 'race@example.com', 'correct horse battery');
    await topUp(world.ctx, driverId, AMOUNT * AFFORDABLE);
    const { token } = await signIn(world.ctx, 'race@example.com', 'correct horse battery');
    const ports = [await freePort(), await freePort()];
    for (const port of ports) children.push(await startCloudProcess(world, port));

    const keys = await Promise.all(Array.from({ length: REQUESTS }, () => nodeCrypto.generateSigningKey()));
    const responses = await Promise.all(
      keys.map(async (key, i) => {
        const res = await fetch(`http://127.0.0.1:${ports[i % 2]}/v1/vouchers`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${token}`,
            'idempotency-key': `race-${i}-${backend}`,
          },
          body: JSON.stringify({
            gatewayId: GATEWAY_ID,
            connector: 1,
            amount: AMOUNT,
            devicePublicKey: Buffer.from(key.publicKey).toString('base64url'),
            deviceId: `race-device-${i % 7}`,
          }),
        });
        return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
      }),
    );
    const byStatus = new Map<number, number>();
    for (const r of responses) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
    expect(Object.fromEntries(byStatus)).toEqual({ 201: AFFORDABLE, 402: REQUESTS - AFFORDABLE });
    expect(
      responses.filter((r) => r.status === 402).every((r) => r.body.error?.code === 'insufficient_funds'),
    ).toBe(true);
    const wallet = await walletOf(world.ctx, driverId);
    expect(wallet).toMatchObject({ balance: 0, held: AMOUNT * AFFORDABLE });
  }, 180_000);
});
