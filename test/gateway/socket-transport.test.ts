/**
 * The local socket transport (gateway/src/link/socket-transport.ts): one full tap against a
 * gateway started in-process with `ble: "socket:<path>"` (real link code, ledger, FakePile),
 * at the smallest MTU so that the hello takes several blob reads and every notification is
 * at most 20 B; plus the transport's own edges (stale socket file, a second gateway on the
 * same path, oversized writes).
 */

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../gateway/src/config.ts';
import { type RunningGateway, startGateway } from '../../gateway/src/gateway.ts';
import { pinRootKey } from '../../gateway/src/keys.ts';
import { connectSocketPhoneLink, SocketTransport } from '../../gateway/src/link/socket-transport.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  type PhoneEvent,
  PhoneSession,
  SessionState,
  StopReason,
  toHex,
  verifyReceipt,
} from '../../shared/src/index.ts';
import { buildWorld, derivedScalar, issueTestVoucher, T0 } from '../support/world.ts';
import { FakePile } from './support/fake-pile.ts';

const SEED = 'socket-transport-tests';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-sock-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('socket transport', () => {
  it('carries a full tap: hello in MTU−1 blobs, token, status, stop, receipt in ≤ MTU−3 notifications', async () => {
    const world = await buildWorld(nodeCrypto, SEED);
    const dir = tempDir();
    const dataDir = join(dir, 'gw');
    const socketPath = join(dir, 'gw.sock');
    mkdirSync(dataDir, { mode: 0o700 });
    writeFileSync(join(dataDir, 'gateway-key.json'), gatewayKeyFile(), { mode: 0o600 });
    pinRootKey(dataDir, { kid: world.root.kid, publicKey: world.root.key.publicKey });
    writeFileSync(socketPath, ''); // a stale file, as a killed gateway leaves it
    const pile = new FakePile();
    const config = parseConfig({
      gatewayId: world.gateway.id,
      dataDir,
      ble: `socket:${socketPath}`,
      logLevel: 'silent',
    });
    const gateway: RunningGateway = await startGateway(config, { pile, systemNow: () => T0 + 60 });
    cleanups.push(() => gateway.stop());
    await gateway.sync.installBundle(world.bundle.bytes);
    expect(gateway.transport).toBeInstanceOf(SocketTransport);

    // A second gateway on the same path is refused: the first one is live.
    await expect(new SocketTransport(socketPath).start(gateway.links)).rejects.toThrow(/already listening/);

    const { voucher, deviceKey } = await issueTestVoucher(world);
    const link = await connectSocketPhoneLink(socketPath, { mtu: 23 });
    expect(link.mtu).toBe(23);
    const units: Uint8Array[] = [];
    link.onNotify((unit) => units.push(unit));
    await expect(link.write(new Uint8Array(513))).rejects.toThrow(/512/);

    const session = new PhoneSession({ crypto: nodeCrypto, link, voucherBytes: voucher.bytes, deviceKey });
    const next = (match: (e: PhoneEvent) => boolean) => session.next(match, 5_000);
    const charging = next((e) => e.kind === 'status' && e.status.state === SessionState.CHARGING);
    await session.present(1);
    await charging;
    expect(link.counters.reads).toBeGreaterThan(1); // the hello does not fit one 22-byte blob
    expect(pile.connector(1).contactorOn).toBe(true);

    const progressed = next((e) => e.kind === 'status' && e.status.energyWh === 2_500);
    pile.deliver(1, 2_500);
    await progressed;
    const receiptEvent = next((e) => e.kind === 'receipt');
    await session.stop();
    const event = await receiptEvent;
    if (event.kind !== 'receipt') throw new Error('no receipt');
    await verifyReceipt(nodeCrypto, event.receipt, world.gateway.key.publicKey);
    expect(event.receipt.body.energyWh).toBe(2_500);
    expect(event.receipt.body.stopReason).toBe(StopReason.DRIVER_REQUEST);
    expect(toHex(gateway.ledger.sessionByCti(voucher.claims.cti)!.receipt!)).toBe(toHex(event.receipt.bytes));
    expect(units.length).toBeGreaterThan(10);
    expect(Math.max(...units.map((u) => u.length))).toBeLessThanOrEqual(20);

    const gone = next((e) => e.kind === 'disconnected');
    link.disconnect();
    await gone;
    await expect.poll(() => gateway.links.linkCount).toBe(0);
    await gateway.stop();
    expect(existsSync(socketPath)).toBe(false);
  });
});

function gatewayKeyFile(): string {
  return JSON.stringify({ privateKey: toHex(derivedScalar(SEED, 'gateway')) });
}
