/**
 * Gateway ⇄ cloud, end to end on loopback: a real cloud process; a gateway (real link,
 * ledger, charging and sync code, in-process radio and a fake pile) provisioned with a
 * one-time code. A driver buys a voucher, charges while the station is cut off, the cloud goes
 * down and comes back, and the sync agent delivers the receipt — the driver sees the refund of
 * the unused hold. Then 30 days offline with 1,000 receipts drain in bounded reports, once each.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../gateway/src/config.ts';
import { type RunningGateway, startGateway } from '../../gateway/src/gateway.ts';
import { InProcessTransport } from '../../gateway/src/link/in-process.ts';
import { provisionWithCloud } from '../../gateway/src/provision.ts';
import { SyncAgent } from '../../gateway/src/sync-agent.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { PhoneSession, SessionState, type SigningKey } from '../../shared/src/index.ts';
import { FakePile } from '../gateway/support/fake-pile.ts';
import { type CloudProcess, startCloudProcess } from '../support/cloud-process.ts';

const OPERATOR = 'operator-sync-test-token';
const GATEWAY_ID = 'gw-sync-01';
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-sync-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function waitFor(
  condition: () => boolean,
  timeoutMs: number,
  what: string,
  detail?: () => unknown,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what} ${JSON.stringify(detail?.() ?? '')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Station {
  cloud: CloudProcess;
  gateway: RunningGateway;
  transport: InProcessTransport;
  pile: FakePile;
  api(
    path: string,
    body?: object,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: Record<string, unknown> }>;
  restartCloud(): Promise<void>;
}

async function station(connectors: number[]): Promise<Station> {
  const cloudDir = tempDir();
  const masterKeyHex = Buffer.from(nodeCrypto.randomBytes(32)).toString('hex');
  let cloud = await startCloudProcess({ dataDir: cloudDir, masterKeyHex, operatorToken: OPERATOR });
  cleanups.push(() => cloud.stop());
  const api: Station['api'] = async (path, body, headers = {}) => {
    const res = await fetch(new URL(path, cloud.url), {
      method: body ? 'POST' : 'GET',
      headers: { 'content-type': 'application/json', ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const registered = await api(
    '/v1/operator/gateways',
    {
      id: GATEWAY_ID,
      operatorId: 'op-1',
      name: 'Sync test',
      connectors: connectors.map((id) => ({ id, powerW: 60_000 })),
      tariff: { energyPrice: 1_200_000, serviceFee: 400_000, timeFee: 0 },
      currency: 'CNY',
    },
    { authorization: `Bearer ${OPERATOR}` },
  );
  expect(registered.status).toBe(201);
  const gatewayDir = tempDir();
  const provisioned = await provisionWithCloud(
    gatewayDir,
    cloud.url,
    registered.json.provisioningCode as string,
  );
  const pile = new FakePile(connectors);
  const transport = new InProcessTransport();
  const gateway = await startGateway(
    parseConfig({
      gatewayId: GATEWAY_ID,
      dataDir: gatewayDir,
      ble: 'in-process',
      connectors,
      logLevel: 'silent',
    }),
    { transport, pile },
  );
  cleanups.push(() => gateway.stop());
  await gateway.sync.installBundle(provisioned.bundle);
  return {
    get cloud() {
      return cloud;
    },
    gateway,
    transport,
    pile,
    api,
    async restartCloud() {
      cloud = await startCloudProcess({
        port: cloud.port,
        dataDir: cloudDir,
        masterKeyHex,
        operatorToken: OPERATOR,
      });
    },
  };
}

async function driverWithVouchers(s: Station, count: number, amount: number) {
  const tag = Math.random().toString(36).slice(2, 12);
  const email = `driver-${tag}@example.com`;
  const registered = await s.api('/v1/drivers', { email, password: 'correct horse battery' });
  expect(registered.status, JSON.stringify(registered.json)).toBe(201);
  const token = (await s.api('/v1/sessions', { email, password: 'correct horse battery' })).json
    .token as string;
  const auth = { authorization: `Bearer ${token}` };
  await s.api(
    '/v1/wallet/top-ups',
    { amount: count * amount },
    { ...auth, 'idempotency-key': `top-up-${tag}` },
  );
  const vouchers: { bytes: Uint8Array; deviceKey: SigningKey }[] = [];
  for (let i = 0; i < count; i++) {
    const deviceKey = await nodeCrypto.generateSigningKey();
    const res = await s.api(
      '/v1/vouchers',
      {
        gatewayId: GATEWAY_ID,
        amount,
        devicePublicKey: Buffer.from(deviceKey.publicKey).toString('base64url'),
        deviceId: `device-${tag}-${i}`,
      },
      { ...auth, 'idempotency-key': `voucher-${i}-${tag}` },
    );
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    vouchers.push({ bytes: new Uint8Array(Buffer.from(res.json.voucher as string, 'base64url')), deviceKey });
  }
  return { auth, vouchers };
}

async function tap(
  s: Station,
  voucher: Uint8Array,
  deviceKey: SigningKey,
  connector: number,
  energyWh: number,
  elapsedSeconds = 3_600,
) {
  const link = s.transport.connect({ mtu: 185 });
  const phone = new PhoneSession({ crypto: nodeCrypto, link, voucherBytes: voucher, deviceKey });
  const charging = phone.next((e) => e.kind === 'status' && e.status.state === SessionState.CHARGING, 5_000);
  await phone.present(connector);
  await charging;
  // Time passes on the gateway's working clock, so the energy is plausible for 60 kW.
  s.gateway.clock.observeIssuedAt(s.gateway.clock.now() + elapsedSeconds);
  s.pile.deliver(connector, energyWh);
  const receipt = phone.next((e) => e.kind === 'receipt', 5_000);
  await phone.stop();
  await receipt;
  link.disconnect();
}

describe('gateway ⇄ cloud sync over loopback', () => {
  it('delivers an offline receipt after a cloud outage; the driver sees the refund of the unused hold', async () => {
    const s = await station([1, 2]);
    const { auth, vouchers } = await driverWithVouchers(s, 1, 5_000);
    await tap(s, vouchers[0]!.bytes, vouchers[0]!.deviceKey, 1, 4_000); // 4 kWh × 1.60 = 6.40
    expect(s.gateway.ledger.pendingReceiptCount()).toBe(1);

    await s.cloud.stop();
    const agent = new SyncAgent({
      cloudUrl: s.cloud.url,
      gatewayId: GATEWAY_ID,
      crypto: nodeCrypto,
      gatewayKey: s.gateway.identity.key,
      sync: s.gateway.sync,
      ledger: s.gateway.ledger,
      backoffMs: { initial: 100, max: 400 },
      requestTimeoutMs: 2_000,
    });
    cleanups.push(() => agent.stop());
    agent.start();
    await waitFor(
      () => agent.status.consecutiveFailures >= 2,
      10_000,
      'failed rounds while the cloud is down',
    );
    expect(s.gateway.ledger.pendingReceiptCount()).toBe(1); // nothing lost while retrying

    const bundleBefore = s.gateway.sync.bundleVersion!;
    await s.restartCloud();
    await waitFor(
      () => s.gateway.ledger.pendingReceiptCount() === 0,
      20_000,
      'the receipt to be acknowledged',
      () => agent.status,
    );
    expect(s.gateway.sync.bundleVersion).toBeGreaterThan(bundleBefore);
    expect((await s.api('/v1/wallet', undefined, auth)).json).toMatchObject({
      balance: 5_000 - 640,
      held: 0,
    });
    const list = (await s.api('/v1/vouchers', undefined, auth)).json.vouchers as {
      state: string;
      captured: number;
    }[];
    expect(list[0]).toMatchObject({ state: 'settled', captured: 640 });
  }, 120_000);

  it('30 days offline with 1,000 receipts: every one reaches the cloud once, in bounded reports', async () => {
    const s = await station([1, 2, 3, 4]);
    const { auth, vouchers } = await driverWithVouchers(s, 1_000, 500);
    for (const [i, v] of vouchers.entries()) await tap(s, v.bytes, v.deviceKey, 1 + (i % 4), 1_000, 60); // 1.60 each
    expect(s.gateway.ledger.pendingReceiptCount()).toBe(1_000);
    // Thirty days pass with the station offline (its working clock runs on).
    s.gateway.clock.observeIssuedAt(s.gateway.clock.now() + 30 * 86_400);
    const agent = new SyncAgent({
      cloudUrl: s.cloud.url,
      gatewayId: GATEWAY_ID,
      crypto: nodeCrypto,
      gatewayKey: s.gateway.identity.key,
      sync: s.gateway.sync,
      ledger: s.gateway.ledger,
      backoffMs: { initial: 100, max: 400 },
    });
    cleanups.push(() => agent.stop());
    agent.start();
    await waitFor(
      () => s.gateway.ledger.pendingReceiptCount() === 0,
      120_000,
      'all receipts to be acknowledged',
    );
    expect(agent.status.rounds).toBeGreaterThanOrEqual(Math.ceil(1_000 / 24));
    // Cloud time bound to the gateway's own nonce brought its clock back to the real time.
    expect(Math.abs(s.gateway.clock.now() - Date.now() / 1000)).toBeLessThan(120);
    const wallet = (await s.api('/v1/wallet', undefined, auth)).json;
    expect(wallet).toMatchObject({ balance: 1_000 * (500 - 160), held: 0 });
    const alerts = (await s.api('/v1/operator/alerts', undefined, { authorization: `Bearer ${OPERATOR}` }))
      .json.alerts as {
      kind: string;
    }[];
    expect(alerts.filter((a) => a.kind !== 'gap')).toEqual([]);
  }, 300_000);
});

describe('pilepass-gateway provision (CLI) against a real cloud', () => {
  it('exchanges the one-time code, pins the root, installs the first bundle; the code cannot be used twice', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const run = promisify(execFile);
    const CLI = new URL('../../gateway/bin/pilepass-gateway', import.meta.url).pathname;
    const cloudDir = tempDir();
    const cloud = await startCloudProcess({
      dataDir: cloudDir,
      masterKeyHex: Buffer.from(nodeCrypto.randomBytes(32)).toString('hex'),
      operatorToken: OPERATOR,
    });
    cleanups.push(() => cloud.stop());
    const res = await fetch(new URL('/v1/operator/gateways', cloud.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${OPERATOR}` },
      body: JSON.stringify({
        id: 'gw-cli-01',
        operatorId: 'op-1',
        name: 'CLI',
        connectors: [{ id: 1, powerW: 7_000 }],
        tariff: { energyPrice: 1_000_000, serviceFee: 0, timeFee: 0 },
        currency: 'CNY',
      }),
    });
    const { provisioningCode } = (await res.json()) as { provisioningCode: string };
    const dataDir = tempDir();
    const out = await run(CLI, [
      'provision',
      '--cloud',
      cloud.url,
      '--code',
      provisioningCode,
      '--data-dir',
      dataDir,
    ]);
    expect(out.stdout).toContain('provisioned as gw-cli-01');
    const status = JSON.parse(
      (await run(CLI, ['status', '--data-dir', dataDir, '--gateway-id', 'gw-cli-01'])).stdout,
    ) as { root: unknown; bundleVersion: number };
    expect(status.root).not.toBeNull();
    expect(status.bundleVersion).toBeGreaterThanOrEqual(1);
    const again = await run(CLI, [
      'provision',
      '--cloud',
      cloud.url,
      '--code',
      provisioningCode,
      '--data-dir',
      tempDir(),
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((again as { code: number }).code).toBe(1);
    expect((again as { stderr: string }).stderr).toContain('invalid_code');
  }, 60_000);
});
