/**
 * Holds cannot overdraw, on both backends: 200 parallel voucher requests on one wallet, sent
 * over loopback HTTP to two separate cloud processes sharing the database, with money for
 * exactly 150 of them: exactly 150 succeed, 50 get insufficient_funds, and the wallet ends
 * at exactly zero — never below.
 */

import type { ChildProcess } from 'node:child_process';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerDriver, signIn, topUp, walletOf } from '../../cloud/src/domain/drivers.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { freePort, startCloudProcess } from '../support/cloud-process.ts';
import { withPostgres } from '../support/postgres.ts';
import { type Backend, type CloudWorld, GATEWAY_ID, openCloudWorld } from './support/cloud-world.ts';

const AMOUNT = 1_000;
const AFFORDABLE = 150;
const REQUESTS = 200;

async function startCloudFor(world: CloudWorld, port: number) {
  const proc = await startCloudProcess({
    port,
    masterKeyHex: Buffer.from(world.masterKey).toString('hex'),
    operatorToken: 'operator-concurrency-test',
    env: { PILEPASS_PER_DEVICE_CAP: String(10_000_000) },
    ...(world.location.databaseUrl
      ? { databaseUrl: world.location.databaseUrl }
      : { dataDir: dirname(world.location.sqlitePath!) }),
  });
  return proc.child;
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
    for (const port of ports) children.push(await startCloudFor(world, port));

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
