/**
 * Settlement and fraud, on both backends: a genuine receipt captures once; receipts without a
 * valid presentation proof, with an inflated amount, implausible energy, a forged gateway
 * signature or for an unknown voucher are refused and flag the station; equivocating receipts
 * and forked chains raise alerts; replayed sync requests are refused; cancellation refunds at
 * expiry or early on a revocation attestation; gateway key revocation refunds; caps hold.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../cloud/src/domain/context.ts';
import { registerDriver, topUp, walletOf } from '../../cloud/src/domain/drivers.ts';
import { processReceipt, processReport } from '../../cloud/src/domain/settlement.ts';
import { listAlerts } from '../../cloud/src/domain/stations.ts';
import { handleSync, issueSyncNonce } from '../../cloud/src/domain/sync.ts';
import {
  cancelVoucher,
  issueVoucher,
  refundExpiredHolds,
  revokeGatewayKey,
  voucherByCti,
} from '../../cloud/src/domain/vouchers.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  fromHex,
  keyringFromBundle,
  parseBundle,
  parseReceipt,
  revocationHash,
  signReceipt,
  signReport,
  syncSignedBytes,
  verifyBundle,
} from '../../shared/src/index.ts';
import { withPostgres } from '../support/postgres.ts';
import { type Backend, type CloudWorld, GATEWAY_ID, openCloudWorld } from './support/cloud-world.ts';

describe.each<Backend>(['sqlite', 'postgres'])('settlement on %s', (backend) => {
  let world: CloudWorld;
  let stopPostgres: (() => Promise<void>) | undefined;
  let driverId: string;

  beforeAll(async () => {
    let postgresUrl: string | undefined;
    if (backend === 'postgres') {
      const pg = await withPostgres();
      postgresUrl = pg.url;
      stopPostgres = pg.stop;
    }
    world = await openCloudWorld(backend, { postgresUrl, rules: { perDeviceCap: 1_000_000 } });
    driverId = (await registerDriver(world.ctx, 'fraud@example.com', 'correct horse battery')).driverId;
    await topUp(world.ctx, driverId, 1_000_000);
  }, 120_000);

  afterAll(async () => {
    await world?.close();
    await stopPostgres?.();
  });

  async function voucher(amount = 5_000, deviceId = 'phone-a') {
    const deviceKey = await nodeCrypto.generateSigningKey();
    const issued = await issueVoucher(world.ctx, {
      driverId,
      deviceId,
      devicePublicKey: deviceKey.publicKey,
      gatewayId: GATEWAY_ID,
      connector: 1,
      amount,
    });
    return { ...issued, deviceKey };
  }

  it('a genuine receipt captures the fee and refunds the rest, once', async () => {
    const before = await walletOf(world.ctx, driverId);
    const v = await voucher();
    const bytes = await world.gateway.charge(v.voucher, v.deviceKey, 12_345, 1_800, world.clock.now);
    const outcome = await processReceipt(world.ctx, bytes, 'gateway');
    expect(outcome).toMatchObject({ status: 'settled', charged: 1_975 });
    expect((await processReceipt(world.ctx, bytes, 'phone')).status).toBe('duplicate');
    const after = await walletOf(world.ctx, driverId);
    expect(after.balance).toBe(before.balance - 1_975);
    const row = await voucherByCti(world.db, fromHex(v.cti));
    expect(row).toMatchObject({ state: 'settled', captured: 1_975, refunded: 3_025, clawed_back: 0 });
  });

  it('refuses a receipt whose presentation proof is not the voucher device’s, and flags the station', async () => {
    const v = await voucher();
    const thief = await nodeCrypto.generateSigningKey();
    // The gateway presents with another key: its proof cannot verify against the voucher's cnf.
    const genuine = parseReceipt(
      await world.gateway.charge(v.voucher, v.deviceKey, 1_000, 600, world.clock.now),
    );
    const other = await voucher();
    const stolenProof = parseReceipt(
      await world.gateway.charge(other.voucher, other.deviceKey, 1_000, 600, world.clock.now),
    );
    const forged = await signReceipt(world.gateway.key, world.gateway.kid, {
      ...genuine.body,
      proof: stolenProof.body.proof,
    });
    expect(await processReceipt(world.ctx, forged.bytes, 'gateway')).toMatchObject({
      status: 'rejected',
      reason: 'presentation proof invalid',
    });
    expect(thief).toBeDefined();
    expect((await listAlerts(world.ctx, GATEWAY_ID)).some((a) => a.kind === 'bad-proof')).toBe(true);
  });

  it('refuses an inflated amount and implausible energy', async () => {
    const v = await voucher();
    const inflated = await world.gateway.charge(v.voucher, v.deviceKey, 1_000, 600, world.clock.now, {
      chargedAmount: 4_000,
      computedAmount: 4_000,
    });
    expect(await processReceipt(world.ctx, inflated, 'gateway')).toMatchObject({ status: 'rejected' });
    const w = await voucher();
    // 60 kW connector: 100 kWh in 10 minutes is impossible.
    const implausible = await world.gateway.charge(w.voucher, w.deviceKey, 100_000, 600, world.clock.now);
    expect(await processReceipt(world.ctx, implausible, 'gateway')).toMatchObject({
      status: 'rejected',
      reason: 'energy implausible for the connector power and duration',
    });
    const kinds = (await listAlerts(world.ctx, GATEWAY_ID)).map((a) => a.kind);
    expect(kinds).toContain('inflated-amount');
    expect(kinds).toContain('implausible-energy');
  });

  it('refuses a receipt signed by another key, and one for a voucher never issued', async () => {
    const v = await voucher();
    const impostorKey = await nodeCrypto.generateSigningKey();
    const real = parseReceipt(await world.gateway.charge(v.voucher, v.deviceKey, 500, 600, world.clock.now));
    const forged = await signReceipt(impostorKey, world.gateway.kid, real.body);
    expect(await processReceipt(world.ctx, forged.bytes, 'phone')).toMatchObject({ status: 'rejected' });
    const genuine = parseReceipt(
      await world.gateway.charge(v.voucher, v.deviceKey, 500, 600, world.clock.now),
    );
    const unknown = await signReceipt(world.gateway.key, world.gateway.kid, {
      ...genuine.body,
      cti: new Uint8Array(16).fill(9),
    });
    expect(await processReceipt(world.ctx, unknown.bytes, 'phone')).toMatchObject({
      status: 'rejected',
      reason: 'unknown voucher',
    });
  });

  it('equivocating receipts for one voucher: the first settles, the second is a conflict', async () => {
    const v = await voucher();
    const first = await world.gateway.charge(v.voucher, v.deviceKey, 2_000, 900, world.clock.now);
    const second = await world.gateway.charge(v.voucher, v.deviceKey, 3_000, 900, world.clock.now);
    expect((await processReceipt(world.ctx, first, 'gateway')).status).toBe('settled');
    expect((await processReceipt(world.ctx, second, 'phone')).status).toBe('conflict');
    const row = await voucherByCti(world.db, fromHex(v.cti));
    expect(row?.captured).toBe(320);
    expect((await listAlerts(world.ctx, GATEWAY_ID)).some((a) => a.kind === 'conflict')).toBe(true);
  });

  it('the same receipt 8 times at once (gateway and phones): settles once, the rest are duplicates', async () => {
    const before = await walletOf(world.ctx, driverId);
    const v = await voucher();
    const bytes = await world.gateway.charge(v.voucher, v.deviceKey, 12_345, 1_800, world.clock.now);
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) => processReceipt(world.ctx, bytes, i === 0 ? 'gateway' : 'phone')),
    );
    expect(outcomes.map((o) => o.status).sort()).toEqual([...Array(7).fill('duplicate'), 'settled']);
    expect((await walletOf(world.ctx, driverId)).balance).toBe(before.balance - 1_975);
    const stored = await world.db.query<{ status: string }>('SELECT status FROM receipts WHERE cti = $1', [
      fromHex(v.cti),
    ]);
    expect(stored).toEqual([{ status: 'settled' }]);
  });

  it('two different receipts for one voucher at once: one settles, the other is a conflict', async () => {
    const v = await voucher();
    const first = await world.gateway.charge(v.voucher, v.deviceKey, 2_000, 900, world.clock.now);
    const second = await world.gateway.charge(v.voucher, v.deviceKey, 3_000, 900, world.clock.now);
    const outcomes = await Promise.all([
      processReceipt(world.ctx, first, 'gateway'),
      processReceipt(world.ctx, second, 'phone'),
    ]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['conflict', 'settled']);
    const row = await voucherByCti(world.db, fromHex(v.cti));
    expect(row?.captured).toBe(outcomes[0]!.status === 'settled' ? 320 : 480);
    const stored = await world.db.query<{ status: string }>(
      'SELECT status FROM receipts WHERE cti = $1 ORDER BY status',
      [fromHex(v.cti)],
    );
    expect(stored).toEqual([{ status: 'conflict' }, { status: 'settled' }]);
  });

  it('a forked chain (a cloned SD card) raises an alert', async () => {
    const a = await voucher();
    const b = await voucher();
    const ra = parseReceipt(await world.gateway.charge(a.voucher, a.deviceKey, 100, 600, world.clock.now));
    // The clone signs its own receipt on the same predecessor.
    const rb = parseReceipt(await world.gateway.charge(b.voucher, b.deviceKey, 100, 600, world.clock.now));
    const clone = await signReceipt(world.gateway.key, world.gateway.kid, {
      ...rb.body,
      previousReceiptHash: ra.body.previousReceiptHash,
      sequence: ra.body.sequence,
    });
    expect((await processReceipt(world.ctx, ra.bytes, 'gateway')).status).toBe('settled');
    expect((await processReceipt(world.ctx, clone.bytes, 'phone')).status).toBe('settled');
    expect((await listAlerts(world.ctx, GATEWAY_ID)).some((a) => a.kind === 'fork')).toBe(true);
  });

  it('a receipt after the refund still captures, by claw-back bounded by the hold', async () => {
    const v = await voucher(2_000);
    const bytes = await world.gateway.charge(v.voucher, v.deviceKey, 60_000, 7_200, world.clock.now); // fee 9,600 > hold
    world.clock.now = v.graceUntil + 1;
    expect(await refundExpiredHolds(world.ctx)).toBeGreaterThanOrEqual(1);
    expect(await refundExpiredHolds(world.ctx)).toBe(0); // safe to run twice
    const before = await walletOf(world.ctx, driverId);
    expect(await processReceipt(world.ctx, bytes, 'phone')).toMatchObject({
      status: 'settled',
      charged: 2_000,
      clawedBack: true,
    });
    expect((await walletOf(world.ctx, driverId)).balance).toBe(before.balance - 2_000);
    expect(await voucherByCti(world.db, fromHex(v.cti))).toMatchObject({
      refunded: 2_000,
      captured: 2_000,
      clawed_back: 2_000,
    });
  });

  it('cancellation: the revocation reaches the bundle; an attestation refunds early; the receipt before it still counts', async () => {
    const lost = await voucher(3_000);
    await cancelVoucher(world.ctx, driverId, fromHex(lost.cti));
    const { nonce } = await issueSyncNonce(world.ctx, GATEWAY_ID);
    const gatewayNonce = nodeCrypto.randomBytes(16);
    const sig = await world.gateway.key.sign(
      syncSignedBytes(GATEWAY_ID, nonce, gatewayNonce, await nodeCrypto.sha256(new Uint8Array(0))),
    );
    const sync = await handleSync(world.ctx, {
      gatewayId: GATEWAY_ID,
      cloudNonce: nonce,
      gatewayNonce,
      signature: sig,
    });
    const bundle = parseBundle(sync.bundle);
    const { pin } = await world.ctx.keys.root();
    await verifyBundle(nodeCrypto, bundle, pin, {
      installedVersion: undefined,
      gatewayId: GATEWAY_ID,
      pendingNonce: gatewayNonce,
    });
    const h = await revocationHash(nodeCrypto, fromHex(lost.cti));
    expect(bundle.body.revokedVouchers.some((x) => Buffer.from(x).equals(Buffer.from(h)))).toBe(true);
    expect(keyringFromBundle(bundle).size).toBeGreaterThan(0);

    // Replay of the same signed request: refused.
    await expect(
      handleSync(world.ctx, { gatewayId: GATEWAY_ID, cloudNonce: nonce, gatewayNonce, signature: sig }),
    ).rejects.toBeInstanceOf(DomainError);

    const before = await walletOf(world.ctx, driverId);
    const report = await signReport(world.gateway.key, world.gateway.kid, {
      gatewayId: GATEWAY_ID,
      createdAt: world.clock.now,
      receipts: [],
      checkpoint: { sequence: 0, head: new Uint8Array(32) },
      revocations: [{ bundleVersion: bundle.body.version, ledgerSequence: 7, spentBeforeInstall: [] }],
    });
    const outcome = await processReport(world.ctx, report.bytes, 'phone');
    expect(outcome.earlyRefunds).toBe(1);
    expect((await walletOf(world.ctx, driverId)).balance).toBe(before.balance + 3_000);
    expect(await voucherByCti(world.db, fromHex(lost.cti))).toMatchObject({
      state: 'refunded',
      refunded: 3_000,
    });
  });

  it('the per-device cap and the wallet balance are never exceeded', async () => {
    const poor = (await registerDriver(world.ctx, 'poor@example.com', 'correct horse battery')).driverId;
    await topUp(world.ctx, poor, 1_000);
    const key = await nodeCrypto.generateSigningKey();
    const ask = (amount: number, deviceId: string) =>
      issueVoucher(world.ctx, {
        driverId: poor,
        deviceId,
        devicePublicKey: key.publicKey,
        gatewayId: GATEWAY_ID,
        amount,
      });
    await expect(ask(1_001, 'p1')).rejects.toMatchObject({ code: 'insufficient_funds' });
    await ask(1_000, 'p1');
    expect((await walletOf(world.ctx, poor)).balance).toBe(0);
    await expect(ask(100, 'p2')).rejects.toMatchObject({ code: 'insufficient_funds' });
    await topUp(world.ctx, poor, 10_000_000);
    await expect(ask(60_000, 'p3')).rejects.toMatchObject({ code: 'invalid_amount' });
  });

  it('revoking a gateway key refunds the vouchers pinned to it', async () => {
    const v = await voucher(1_500, 'phone-z');
    const refunded = await revokeGatewayKey(world.ctx, GATEWAY_ID);
    expect(refunded).toBeGreaterThanOrEqual(1);
    expect(await voucherByCti(world.db, fromHex(v.cti))).toMatchObject({ state: 'refunded' });
    await expect(voucher()).rejects.toMatchObject({ code: 'unknown_station' });
  });
});
