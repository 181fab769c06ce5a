/**
 * The PWA's cloud side against the real cloud over loopback HTTP (SQLite): register, top up,
 * buy a voucher with a fresh WebCrypto key (stored with its non-extractable key pair), a
 * receipt made at the station uploaded by the phone (settled, then a duplicate), the wallet's
 * refund, cancel, bundles fetched for the phone to carry, and the offline path losing nothing.
 */
import 'fake-indexeddb/auto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildServer } from '../../cloud/src/http/server.ts';
import { createWebCrypto } from '../../shared/src/crypto/webcrypto.ts';
import { parseVoucher } from '../../shared/src/messages/voucher.ts';
import { chargedAmount } from '../../shared/src/tariff.ts';
import { CloudClient, CloudError } from '../../web/src/api/cloud-client.ts';
import { PhoneStore } from '../../web/src/storage/db.ts';
import { uploadPending } from '../../web/src/sync/uploader.ts';
import {
  VoucherMismatchError,
  VoucherService,
  voucherStatus,
} from '../../web/src/vouchers/voucher-service.ts';
import { type CloudWorld, GATEWAY_ID, openCloudWorld } from '../cloud/support/cloud-world.ts';

const webCrypto = createWebCrypto(globalThis.crypto);
let world: CloudWorld;
let app: FastifyInstance;
let cloud: CloudClient;
let store: PhoneStore;
let n = 0;

beforeEach(async () => {
  world = await openCloudWorld('sqlite', { now: Math.floor(Date.now() / 1000) });
  app = await buildServer(world.ctx, { operatorToken: 'op-token', logger: false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  cloud = new CloudClient({ base: `http://127.0.0.1:${port}/v1` });
  store = await PhoneStore.open(`voucher-sync-${n++}`);
  await cloud.register(`driver${n}@example.com`, 'correct horse battery');
  await cloud.signIn(`driver${n}@example.com`, 'correct horse battery');
  await cloud.topUp(10_000);
});
afterEach(async () => {
  store.db.close();
  await app.close();
  await world.close();
});

describe('buying a pre-deduction from the phone', () => {
  it('binds a fresh non-extractable key, holds the amount, and stores voucher and key together', async () => {
    const service = new VoucherService(webCrypto, cloud, store);
    const a = await service.buy({ gatewayId: GATEWAY_ID, connector: 1, amount: 3_000 });
    const b = await service.buy({ gatewayId: GATEWAY_ID, connector: 2, amount: 2_000 });
    expect(a.keyPair.privateKey.extractable).toBe(false);
    const claimsA = parseVoucher(a.voucher).claims;
    const claimsB = parseVoucher(b.voucher).claims;
    expect(claimsA.deviceKey).not.toEqual(claimsB.deviceKey); // one key per voucher
    const rebuilt = await webCrypto.signingKeyFromKeyPair((await store.getVoucher(a.cti))!.keyPair);
    expect(rebuilt.publicKey).toEqual(claimsA.deviceKey);
    expect(await cloud.wallet()).toMatchObject({ balance: 5_000, held: 5_000 });
    expect(voucherStatus(a, claimsA.issuedAt)).toBe('ready');
    expect(voucherStatus(a, claimsA.expiresAt + 1)).toBe('expired');
  });

  it('refuses a voucher the cloud bound to another key', async () => {
    const lying = new CloudClient({ base: 'http://unused/v1' });
    const real = cloud;
    lying.issueVoucher = async (request, key) => {
      const other = await webCrypto.generateSigningKey();
      return real.issueVoucher({ ...request, devicePublicKey: other.publicKey }, key);
    };
    const service = new VoucherService(webCrypto, lying, store);
    await expect(service.buy({ gatewayId: GATEWAY_ID, amount: 1_000 })).rejects.toBeInstanceOf(
      VoucherMismatchError,
    );
    expect(await store.vouchers()).toHaveLength(0);
  });

  it('a cloud error is typed (insufficient funds), and nothing is stored', async () => {
    const service = new VoucherService(webCrypto, cloud, store);
    const err = await service.buy({ gatewayId: GATEWAY_ID, amount: 99_999 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudError);
    expect((err as CloudError).status).toBeGreaterThanOrEqual(400);
    expect((err as CloudError).offline).toBe(false);
    expect(await store.vouchers()).toHaveLength(0);
  });
});

describe('the phone as courier', () => {
  it('uploads a receipt once (settled, refund in the wallet), keeps it while offline, fetches bundles', async () => {
    const service = new VoucherService(webCrypto, cloud, store);
    const voucher = await service.buy({ gatewayId: GATEWAY_ID, connector: 1, amount: 5_000 });
    const deviceKey = await webCrypto.signingKeyFromKeyPair(voucher.keyPair);
    const receiptBytes = await world.gateway.charge(
      voucher.voucher,
      deviceKey,
      12_000,
      3_600,
      world.clock.now,
    );
    const charged = chargedAmount(parseVoucher(voucher.voucher).claims.tariff, 12_000, 3_600, 5_000);
    await store.addReceipt({
      hash: 'r1',
      cti: voucher.cti,
      bytes: receiptBytes,
      gatewayId: GATEWAY_ID,
      energyWh: 12_000,
      chargedAmount: charged,
      currency: 'CNY',
      startedAt: 0,
      stoppedAt: 3_600,
      stopReason: 1,
      receivedAt: 0,
      uploaded: false,
    });

    // Offline: nothing is lost, the receipt stays pending.
    const offlineCloud = new CloudClient({ base: 'http://127.0.0.1:9/v1', timeoutMs: 2_000 });
    const offline = await uploadPending(offlineCloud, store);
    expect(offline).toMatchObject({ offline: true, pending: 1, uploadedReceipts: 0 });
    expect((await store.receipts())[0]?.uploaded).toBe(false);

    const online = await uploadPending(cloud, store);
    expect(online).toMatchObject({ offline: false, pending: 0, uploadedReceipts: 1, bundles: 1 });
    expect((await store.receipts())[0]).toMatchObject({ uploaded: true, cloudStatus: 'settled' });
    expect((await store.getBundle(GATEWAY_ID))?.version).toBeGreaterThan(0);
    expect(await cloud.wallet()).toEqual({ currency: 'CNY', balance: 10_000 - charged, held: 0 });
    // The cloud answers a second upload as a duplicate (e.g. Background Sync replayed it).
    expect((await cloud.uploadReceipt(receiptBytes)).status).toBe('duplicate');

    await service.mergeCloudStates(await cloud.vouchers());
    const merged = await store.getVoucher(voucher.cti);
    expect(merged).toMatchObject({ cloudState: 'settled', captured: charged, refunded: 5_000 - charged });
    expect(voucherStatus(merged!, 0)).toBe('used');
  });

  it('cancel (lost phone) revokes at the cloud and the voucher shows cancelled', async () => {
    const service = new VoucherService(webCrypto, cloud, store);
    const voucher = await service.buy({ gatewayId: GATEWAY_ID, amount: 2_000 });
    await service.cancel(voucher.cti);
    const stored = await store.getVoucher(voucher.cti);
    expect(stored?.cloudState).toBe('cancelled');
    expect(voucherStatus(stored!, 0)).toBe('cancelled');
    expect((await cloud.vouchers()).find((v) => v.cti === voucher.cti)?.state).toBe('cancelled');
  });
});
