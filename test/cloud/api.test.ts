/**
 * The HTTP API on both backends (Fastify's injection: the whole HTTP stack without a socket):
 * every route's good path and bad input, JSON errors without stack traces, idempotency keys,
 * rate limits on sign-in, OpenAPI. The cross-process concurrency test is in
 * api-concurrency.test.ts.
 */

import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../cloud/src/http/server.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { parseBundle, parseVoucher } from '../../shared/src/index.ts';
import { withPostgres } from '../support/postgres.ts';
import { type Backend, type CloudWorld, GATEWAY_ID, openCloudWorld } from './support/cloud-world.ts';

const OPERATOR = 'operator-test-token-0123456789';
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');

describe.each<Backend>(['sqlite', 'postgres'])('HTTP API on %s', (backend) => {
  let world: CloudWorld;
  let app: FastifyInstance;
  let stopPostgres: (() => Promise<void>) | undefined;
  let token = '';

  beforeAll(async () => {
    let postgresUrl: string | undefined;
    if (backend === 'postgres') {
      const pg = await withPostgres();
      postgresUrl = pg.url;
      stopPostgres = pg.stop;
    }
    world = await openCloudWorld(backend, { postgresUrl });
    app = await buildServer(world.ctx, { operatorToken: OPERATOR, authRateLimit: 5 });
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await world?.close();
    await stopPostgres?.();
  });

  const call = (method: 'GET' | 'POST', url: string, body?: object, headers: Record<string, string> = {}) =>
    app.inject({
      method,
      url,
      payload: body,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    });

  function expectError(
    res: { statusCode: number; json(): unknown; body: string },
    status: number,
    code: string,
  ) {
    expect(res.statusCode).toBe(status);
    expect(res.json()).toMatchObject({ error: { code } });
    expect(res.body).not.toMatch(/at .*\.ts:\d+/); // never a stack trace
  }

  it('serves OpenAPI describing every route', async () => {
    const res = await call('GET', '/openapi.json');
    expect(res.statusCode).toBe(200);
    const spec = res.json() as { openapi: string; paths: Record<string, unknown> };
    expect(spec.openapi).toMatch(/^3\./);
    for (const path of [
      '/v1/drivers',
      '/v1/sessions',
      '/v1/vouchers',
      '/v1/receipts',
      '/v1/gateway/sync',
      '/v1/operator/gateways',
    ]) {
      expect(Object.keys(spec.paths)).toContain(path);
    }
  });

  it('registers, refuses bad input and a second account, signs in, refuses a wrong password', async () => {
    expectError(await call('POST', '/v1/drivers', { email: 'x@example.com' }), 400, 'invalid_request');
    expectError(
      await call('POST', '/v1/drivers', { email: 'not-an-email', password: 'long enough' }),
      400,
      'invalid_email',
    );
    expect(
      (await call('POST', '/v1/drivers', { email: 'ana@example.com', password: 'long enough' })).statusCode,
    ).toBe(201);
    expectError(
      await call('POST', '/v1/drivers', { email: 'ana@example.com', password: 'long enough' }),
      409,
      'email_taken',
    );
    expectError(
      await call('POST', '/v1/sessions', { email: 'ana@example.com', password: 'wrong one!' }),
      401,
      'invalid_credentials',
    );
    const ok = await call('POST', '/v1/sessions', { email: 'ana@example.com', password: 'long enough' });
    expect(ok.statusCode).toBe(200);
    token = (ok.json() as { token: string }).token;
  });

  it('requires a session for the wallet and tops up idempotently', async () => {
    const saved = token;
    token = '';
    expectError(await call('GET', '/v1/wallet'), 401, 'unauthenticated');
    token = 'forged';
    expectError(await call('GET', '/v1/wallet'), 401, 'unauthenticated');
    token = saved;
    expectError(await call('POST', '/v1/wallet/top-ups', { amount: 10_000 }), 400, 'invalid_request');
    const key = { 'idempotency-key': 'topup-0001' };
    const first = await call('POST', '/v1/wallet/top-ups', { amount: 10_000 }, key);
    const again = await call('POST', '/v1/wallet/top-ups', { amount: 10_000 }, key);
    expect(first.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    expect((await call('GET', '/v1/wallet')).json()).toMatchObject({ balance: 10_000, held: 0 });
    expectError(await call('POST', '/v1/wallet/top-ups', { amount: 1 }, key), 422, 'idempotency_key_reused');
    expectError(
      await call('POST', '/v1/wallet/top-ups', { amount: -5 }, { 'idempotency-key': 'topup-0002' }),
      400,
      'invalid_request',
    );
  });

  it('lists stations with their online state and key digest', async () => {
    const res = await call('GET', '/v1/stations');
    const { stations } = res.json() as { stations: { id: string; online: boolean; keyDigest: string }[] };
    expect(stations.find((s) => s.id === GATEWAY_ID)).toMatchObject({ online: false });
  });

  it('issues a voucher (idempotently), lists it, cancels it; refuses bad requests', async () => {
    const device = await nodeCrypto.generateSigningKey();
    const body = {
      gatewayId: GATEWAY_ID,
      connector: 1,
      amount: 3_000,
      devicePublicKey: b64(device.publicKey),
      deviceId: 'device-0001',
    };
    const key = { 'idempotency-key': 'voucher-0001' };
    const first = await call('POST', '/v1/vouchers', body, key);
    expect(first.statusCode).toBe(201);
    const again = await call('POST', '/v1/vouchers', body, key);
    expect(again.json()).toEqual(first.json());
    const issued = first.json() as { cti: string; voucher: string };
    const voucher = parseVoucher(new Uint8Array(Buffer.from(issued.voucher, 'base64url')));
    expect(Buffer.from(voucher.claims.deviceKey).equals(Buffer.from(device.publicKey))).toBe(true);
    expect((await call('GET', '/v1/wallet')).json()).toMatchObject({ balance: 7_000, held: 3_000 });

    expectError(
      await call('POST', '/v1/vouchers', { ...body, amount: 999_999 }, { 'idempotency-key': 'voucher-0002' }),
      400,
      'invalid_amount',
    );
    expectError(
      await call('POST', '/v1/vouchers', { ...body, amount: 8_000 }, { 'idempotency-key': 'voucher-0003' }),
      402,
      'insufficient_funds',
    );
    expectError(
      await call(
        'POST',
        '/v1/vouchers',
        { ...body, gatewayId: 'nowhere' },
        { 'idempotency-key': 'voucher-0004' },
      ),
      404,
      'unknown_station',
    );
    expectError(
      await call(
        'POST',
        '/v1/vouchers',
        { ...body, devicePublicKey: 'AAAA' },
        { 'idempotency-key': 'voucher-0005' },
      ),
      400,
      'invalid_request',
    );
    expectError(await call('POST', '/v1/vouchers', body), 400, 'invalid_request');

    const list = (await call('GET', '/v1/vouchers')).json() as { vouchers: { cti: string; state: string }[] };
    expect(list.vouchers.map((v) => v.cti)).toContain(issued.cti);
    const cancel = await call('POST', `/v1/vouchers/${issued.cti}/cancel`, undefined, {
      'idempotency-key': 'cancel-0001',
    });
    expect(cancel.json()).toMatchObject({ state: 'cancelled' });
    expectError(
      await call('POST', `/v1/vouchers/${'0'.repeat(32)}/cancel`, undefined, {
        'idempotency-key': 'cancel-0002',
      }),
      404,
      'unknown_voucher',
    );
  });

  it('takes receipts and reports from phones; refuses garbage', async () => {
    const device = await nodeCrypto.generateSigningKey();
    const res = await call(
      'POST',
      '/v1/vouchers',
      {
        gatewayId: GATEWAY_ID,
        connector: 1,
        amount: 2_000,
        devicePublicKey: b64(device.publicKey),
        deviceId: 'device-0001',
      },
      { 'idempotency-key': 'voucher-0100' },
    );
    const voucher = new Uint8Array(Buffer.from((res.json() as { voucher: string }).voucher, 'base64url'));
    const receipt = await world.gateway.charge(voucher, device, 5_000, 1_200, world.clock.now);
    expect((await call('POST', '/v1/receipts', { receipt: b64(receipt) })).json()).toMatchObject({
      status: 'settled',
      charged: 800,
    });
    expect((await call('POST', '/v1/receipts', { receipt: b64(receipt) })).json()).toMatchObject({
      status: 'duplicate',
    });
    expectError(await call('POST', '/v1/receipts', { receipt: 'AAAA' }), 400, 'malformed_receipt');
    expectError(await call('POST', '/v1/receipts', { receipt: '!!' }), 400, 'invalid_request');
    expectError(await call('POST', '/v1/reports', { report: 'AAAA' }), 400, 'malformed_report');
    expect((await call('GET', '/v1/wallet')).json()).toMatchObject({ balance: 7_000 - 2_000 + 1_200 });
  });

  it('hands phones a station bundle to carry', async () => {
    const res = await call('GET', `/v1/stations/${GATEWAY_ID}/bundle`);
    const bundle = parseBundle(
      new Uint8Array(Buffer.from((res.json() as { bundle: string }).bundle, 'base64url')),
    );
    expect(bundle.body.audience).toEqual([GATEWAY_ID]);
    expect(bundle.body.binding).toBeUndefined();
    expectError(await call('GET', '/v1/stations/nowhere/bundle'), 404, 'unknown_station');
  });

  it('operator routes need the operator token; registering and provisioning a gateway works once', async () => {
    const saved = token;
    token = '';
    const spec = {
      id: 'gw-api-02',
      operatorId: 'op-1',
      name: 'Second',
      connectors: [{ id: 1, powerW: 22_000 }],
      tariff: { energyPrice: 1_000_000, serviceFee: 0, timeFee: 0 },
      currency: 'CNY',
    };
    expectError(await call('POST', '/v1/operator/gateways', spec), 401, 'unauthenticated');
    const op = { authorization: `Bearer ${OPERATOR}` };
    const created = await call('POST', '/v1/operator/gateways', spec, op);
    expect(created.statusCode).toBe(201);
    expectError(await call('POST', '/v1/operator/gateways', spec, op), 409, 'gateway_exists');
    expectError(
      await call('POST', '/v1/operator/gateways', { ...spec, id: 'bad id!' }, op),
      400,
      'invalid_request',
    );
    const code = (created.json() as { provisioningCode: string }).provisioningCode;
    const gatewayKey = await nodeCrypto.generateSigningKey();
    const provisioned = await call('POST', '/v1/gateway/provision', {
      code,
      publicKey: b64(gatewayKey.publicKey),
    });
    expect(provisioned.json()).toMatchObject({ gatewayId: 'gw-api-02' });
    expectError(
      await call('POST', '/v1/gateway/provision', { code, publicKey: b64(gatewayKey.publicKey) }),
      403,
      'invalid_code',
    );
    expect((await call('POST', '/v1/gateway/nonce', { gatewayId: 'gw-api-02' })).statusCode).toBe(200);
    expectError(
      await call('POST', '/v1/gateway/sync', {
        gatewayId: 'gw-api-02',
        cloudNonce: 'AAAAAAAAAAAAAAAAAAAAAA',
        gatewayNonce: 'AAAAAAAAAAAAAAAAAAAAAA',
        signature: 'AA',
      }),
      403,
      'invalid_nonce',
    );
    expect(
      (await call('POST', '/v1/operator/keys/issuer/rotate', { overlapSeconds: 3_600 }, op)).statusCode,
    ).toBe(200);
    expect((await call('GET', '/v1/operator/alerts', undefined, op)).statusCode).toBe(200);
    expect((await call('POST', '/v1/operator/jobs/refund', undefined, op)).json()).toMatchObject({
      refunded: 0,
    });
    token = saved;
  });

  it('rotating a gateway key (new provisioning code) refunds the vouchers pinned to the old key', async () => {
    const op = { authorization: `Bearer ${OPERATOR}` };
    const device = await nodeCrypto.generateSigningKey();
    const issued = await call(
      'POST',
      '/v1/vouchers',
      {
        gatewayId: GATEWAY_ID,
        connector: 1,
        amount: 1_000,
        devicePublicKey: b64(device.publicKey),
        deviceId: 'device-rotate-1',
      },
      { 'idempotency-key': 'voucher-rotate-1' },
    );
    expect(issued.statusCode).toBe(201);
    const before = (await call('GET', '/v1/wallet')).json() as { balance: number; held: number };
    expect(before.held).toBeGreaterThanOrEqual(1_000);
    const saved = token;
    token = '';
    const code = (
      await call('POST', `/v1/operator/gateways/${GATEWAY_ID}/provisioning-code`, undefined, op)
    ).json() as {
      provisioningCode: string;
    };
    expectError(
      await call('POST', '/v1/operator/gateways/nowhere/provisioning-code', undefined, op),
      404,
      'unknown_station',
    );
    const newKey = await nodeCrypto.generateSigningKey();
    const provisioned = await call('POST', '/v1/gateway/provision', {
      code: code.provisioningCode,
      publicKey: b64(newKey.publicKey),
    });
    expect(provisioned.statusCode).toBe(200);
    token = saved;
    // Every outstanding voucher of this station (issued or cancelled) went back to the wallet.
    const after = (await call('GET', '/v1/wallet')).json() as { balance: number; held: number };
    expect(after).toEqual({ currency: 'CNY', balance: before.balance + before.held, held: 0 });
    const cti = (issued.json() as { cti: string }).cti;
    const list = (await call('GET', '/v1/vouchers')).json() as { vouchers: { cti: string; state: string }[] };
    expect(list.vouchers.find((v) => v.cti === cti)?.state).toBe('refunded');
  });

  it('rate-limits sign-in attempts', async () => {
    const saved = token;
    token = '';
    let limited = 0;
    for (let i = 0; i < 8; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'ana@example.com', password: 'wrong one!' },
        remoteAddress: '10.9.9.9',
      });
      if (res.statusCode === 429) {
        expect(res.json()).toMatchObject({ error: { code: 'rate_limited' } });
        limited++;
      }
    }
    expect(limited).toBeGreaterThan(0);
    token = saved;
  });

  it('unknown routes and malformed JSON get JSON errors', async () => {
    expectError(await call('GET', '/v1/nothing'), 404, 'not_found');
    const res = await app.inject({
      method: 'POST',
      url: '/v1/sessions',
      payload: '{',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { code: 'invalid_request' } });
  });
});

describe('card pre-authorisation through the sandbox PSP (SQLite)', () => {
  let world: CloudWorld;
  let app: FastifyInstance;
  const SECRET = 'psp-webhook-secret-for-tests';

  beforeAll(async () => {
    world = await openCloudWorld('sqlite');
    app = await buildServer(world.ctx, { operatorToken: OPERATOR, pspWebhookSecret: SECRET });
  });
  afterAll(async () => {
    await app?.close();
    await world?.close();
  });

  it('holds by pre-authorisation, captures the fee, and takes signed webhooks only', async () => {
    const { signWebhook } = await import('../../cloud/src/domain/psp.ts');
    await app.inject({
      method: 'POST',
      url: '/v1/drivers',
      payload: { email: 'card@example.com', password: 'long enough' },
    });
    const { token } = (
      await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        payload: { email: 'card@example.com', password: 'long enough' },
      })
    ).json() as { token: string };
    const auth = { authorization: `Bearer ${token}` };
    const method = await app.inject({
      method: 'POST',
      url: '/v1/wallet/payment-method',
      payload: { method: 'sandbox-preauth' },
      headers: auth,
    });
    expect(method.json()).toEqual({ method: 'sandbox-preauth' });
    const device = await nodeCrypto.generateSigningKey();
    const issued = await app.inject({
      method: 'POST',
      url: '/v1/vouchers',
      headers: { ...auth, 'idempotency-key': 'card-voucher-01' },
      payload: {
        gatewayId: GATEWAY_ID,
        connector: 1,
        amount: 5_000,
        devicePublicKey: b64(device.publicKey),
        deviceId: 'card-device-01',
      },
    });
    expect(issued.statusCode).toBe(201);
    // The wallet was never touched: the hold is at the card issuer.
    expect((await app.inject({ method: 'GET', url: '/v1/wallet', headers: auth })).json()).toMatchObject({
      balance: 0,
      held: 0,
    });
    const voucher = new Uint8Array(Buffer.from((issued.json() as { voucher: string }).voucher, 'base64url'));
    const receipt = await world.gateway.charge(voucher, device, 10_000, 1_800, world.clock.now);
    const settled = await app.inject({
      method: 'POST',
      url: '/v1/receipts',
      payload: { receipt: b64(receipt) },
    });
    expect(settled.json()).toMatchObject({ status: 'settled', charged: 1_600 });
    const auths = await world.db.query<{ status: string; captured: number }>(
      'SELECT status, captured FROM psp_authorizations',
    );
    expect(auths).toEqual([{ status: 'captured', captured: 1_600 }]);

    const event = JSON.stringify({
      id: 'evt_test_0001',
      type: 'authorization.voided',
      authorizationId: 'auth_unknown',
    });
    const unsigned = await app.inject({
      method: 'POST',
      url: '/v1/psp/sandbox/webhook',
      payload: event,
      headers: { 'content-type': 'application/json' },
    });
    expect(unsigned.statusCode).toBe(401);
    const forged = await app.inject({
      method: 'POST',
      url: '/v1/psp/sandbox/webhook',
      payload: event,
      headers: {
        'content-type': 'application/json',
        'pilepass-sandbox-signature': signWebhook('wrong secret', event, world.clock.now),
      },
    });
    expect(forged.statusCode).toBe(401);
    const signed = {
      'content-type': 'application/json',
      'pilepass-sandbox-signature': signWebhook(SECRET, event, world.clock.now),
    };
    expect(
      (
        await app.inject({ method: 'POST', url: '/v1/psp/sandbox/webhook', payload: event, headers: signed })
      ).json(),
    ).toEqual({
      received: true,
      applied: true,
    });
    expect(
      (
        await app.inject({ method: 'POST', url: '/v1/psp/sandbox/webhook', payload: event, headers: signed })
      ).json(),
    ).toEqual({
      received: true,
      applied: false,
    });
  });
});
