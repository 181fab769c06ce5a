/**
 * Two real processes on loopback: the cloud (`pilepass-cloud start`) and the gateway
 * (`pilepass-gateway start --cloud …`, socket radio, sim pile process), provisioned through the
 * CLI with a one-time code. The cloud goes down while a driver charges at the offline station,
 * comes back, and the gateway's sync agent delivers the receipt: the voucher settles and the
 * driver's wallet shows the refund of the unused hold.
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { connectSocketPhoneLink } from '../../gateway/src/link/socket-transport.ts';
import { startSimPileProcess } from '../../gateway/src/pile/sim-pile-process.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { PhoneSession, SessionState } from '../../shared/src/index.ts';
import { startCloudProcess } from '../support/cloud-process.ts';

const run = promisify(execFile);
const GATEWAY_CLI = new URL('../../gateway/bin/pilepass-gateway', import.meta.url).pathname;
const OPERATOR = 'operator-process-sync-token';
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('gateway process ⇄ cloud process', () => {
  it('delivers a receipt made while the cloud was down, once it is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilepass-procsync-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const masterKeyHex = Buffer.from(nodeCrypto.randomBytes(32)).toString('hex');
    let cloud = await startCloudProcess({
      dataDir: join(dir, 'cloud'),
      masterKeyHex,
      operatorToken: OPERATOR,
    });
    cleanups.push(() => cloud.stop());
    const api = async (path: string, body?: object, headers: Record<string, string> = {}) => {
      const res = await fetch(new URL(path, cloud.url), {
        method: body ? 'POST' : 'GET',
        headers: { 'content-type': 'application/json', ...headers },
        body: body ? JSON.stringify(body) : undefined,
      });
      return (await res.json()) as Record<string, unknown>;
    };
    const { provisioningCode } = await api(
      '/v1/operator/gateways',
      {
        id: 'gw-proc-01',
        operatorId: 'op-1',
        name: 'Process',
        connectors: [{ id: 1, powerW: 7_000 }],
        tariff: { energyPrice: 1_200_000, serviceFee: 400_000, timeFee: 0 },
        currency: 'CNY',
      },
      { authorization: `Bearer ${OPERATOR}` },
    );
    const dataDir = join(dir, 'gateway');
    await run(GATEWAY_CLI, [
      'provision',
      '--cloud',
      cloud.url,
      '--code',
      provisioningCode as string,
      '--data-dir',
      dataDir,
    ]);
    const pile = await startSimPileProcess({
      dir,
      connectors: [1],
      powerW: 7_000,
      speed: 1,
      watchPid: process.pid,
    });
    cleanups.push(() => pile.stop());
    const configFile = join(dir, 'gateway.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        gatewayId: 'gw-proc-01',
        dataDir,
        ble: `socket:${join(dir, 'gw.sock')}`,
        pile: `sim:${pile.socketPath}`,
        connectors: [1],
        cloudUrl: cloud.url,
        syncIntervalSeconds: 5,
        logLevel: 'warn',
      }),
    );
    const gateway: ChildProcess = spawn(GATEWAY_CLI, ['start', '--config', configFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          if (gateway.exitCode !== null) return resolve();
          gateway.once('exit', () => resolve());
          gateway.kill('SIGTERM');
        }),
    );

    // A driver buys a pre-deduction while online.
    const email = 'process-sync@example.com';
    await api('/v1/drivers', { email, password: 'correct horse battery' });
    const { token } = await api('/v1/sessions', { email, password: 'correct horse battery' });
    const auth = { authorization: `Bearer ${token as string}` };
    await api('/v1/wallet/top-ups', { amount: 5_000 }, { ...auth, 'idempotency-key': 'process-topup-1' });
    const deviceKey = await nodeCrypto.generateSigningKey();
    const issued = await api(
      '/v1/vouchers',
      {
        gatewayId: 'gw-proc-01',
        connector: 1,
        amount: 5_000,
        devicePublicKey: Buffer.from(deviceKey.publicKey).toString('base64url'),
        deviceId: 'process-device-1',
      },
      { ...auth, 'idempotency-key': 'process-voucher-1' },
    );
    const voucherBytes = new Uint8Array(Buffer.from(issued.voucher as string, 'base64url'));

    // The cloud goes away; the driver charges at the offline station.
    await cloud.stop();
    const link = await until(
      () => connectSocketPhoneLink(join(dir, 'gw.sock'), { mtu: 185 }),
      30_000,
      'the gateway socket',
    );
    const phone = new PhoneSession({ crypto: nodeCrypto, link, voucherBytes, deviceKey });
    const charging = phone.next(
      (e) => e.kind === 'status' && e.status.state === SessionState.CHARGING,
      10_000,
    );
    await phone.present(1);
    await charging;
    await new Promise((r) => setTimeout(r, 2_000)); // a little energy flows
    const receipt = phone.next((e) => e.kind === 'receipt', 10_000);
    await phone.stop();
    const got = await receipt;
    if (got.kind !== 'receipt') throw new Error('no receipt');
    phone.close();

    // The cloud is back; the sync agent delivers the receipt.
    cloud = await startCloudProcess({
      port: cloud.port,
      dataDir: join(dir, 'cloud'),
      masterKeyHex,
      operatorToken: OPERATOR,
    });
    const settled = await until(
      async () => {
        const list = (await api('/v1/vouchers', undefined, auth)).vouchers as {
          state: string;
          captured: number;
        }[];
        return list[0]?.state === 'settled' ? list[0] : undefined;
      },
      60_000,
      'the voucher to settle',
    );
    expect(settled.captured).toBe(got.receipt.body.chargedAmount);
    const wallet = await api('/v1/wallet', undefined, auth);
    expect(wallet).toMatchObject({ balance: 5_000 - got.receipt.body.chargedAmount, held: 0 });
  }, 180_000);
});
