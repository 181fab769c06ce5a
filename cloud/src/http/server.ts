/**
 * The cloud's HTTP JSON API (Fastify): schema validation on every route, OpenAPI at
 * `/openapi.json`, idempotency keys on every POST that moves money, clear 4xx JSON errors
 * (`{ error: { code, message } }`, never a stack trace) and rate limits on auth routes.
 * Bytes travel as base64url strings.
 *
 *   drivers   POST /v1/drivers · POST /v1/sessions · GET /v1/wallet · POST /v1/wallet/top-ups
 *             GET /v1/stations · GET /v1/stations/:id/bundle
 *             POST /v1/vouchers · GET /v1/vouchers · POST /v1/vouchers/:cti/cancel
 *             POST /v1/receipts · POST /v1/reports              (phones as couriers)
 *   gateways  POST /v1/gateway/provision · POST /v1/gateway/nonce · POST /v1/gateway/sync
 *   operator  POST /v1/operator/gateways · POST /v1/operator/gateways/:id/revoke-key
 *             POST /v1/operator/gateways/:id/provisioning-code (replace the Pi / rotate its key)
 *             POST /v1/operator/keys/issuer/rotate · GET /v1/operator/alerts · POST /v1/operator/jobs/refund
 * @module
 */

import { timingSafeEqual } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { type CloudContext, DomainError } from '../domain/context.ts';
import {
  authenticate,
  registerDriver,
  setPaymentMethod,
  signIn,
  topUpIn,
  walletOf,
} from '../domain/drivers.ts';
import { applyWebhookEvent, verifyWebhook, type WebhookEvent } from '../domain/psp.ts';
import { processReceipt, processReport } from '../domain/settlement.ts';
import {
  listAlerts,
  listStations,
  newProvisioningCode,
  provisionGateway,
  registerGateway,
} from '../domain/stations.ts';
import { buildBundle, handleSync, issueSyncNonce } from '../domain/sync.ts';
import {
  cancelVoucherIn,
  prepareVoucher,
  refundExpiredHolds,
  refundVouchersPinnedTo,
  revokeGatewayKey,
  vouchersOfDriver,
} from '../domain/vouchers.ts';
import { withIdempotency } from './idempotency.ts';

export interface ServerOptions {
  readonly operatorToken: string;
  /** Shared secret of the sandbox PSP's webhooks. */
  readonly pspWebhookSecret?: string;
  readonly logger?: boolean | object;
  /** Sign-in attempts per IP per minute. */
  readonly authRateLimit?: number;
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
function fromB64(value: string, what: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(value)) throw new DomainError('invalid_encoding', `${what} must be base64url`);
  return new Uint8Array(Buffer.from(value, 'base64url'));
}

const error = {
  type: 'object',
  properties: {
    error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } },
  },
} as const;
const b64String = { type: 'string', pattern: '^[A-Za-z0-9_-]+$', maxLength: 120_000 } as const;
const idempotencyHeaders = {
  type: 'object',
  properties: { 'idempotency-key': { type: 'string', minLength: 8, maxLength: 128 } },
  required: ['idempotency-key'],
} as const;
const tariffSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['energyPrice', 'serviceFee', 'timeFee'],
  properties: {
    energyPrice: { type: 'integer', minimum: 0, maximum: 1_000_000_000 },
    serviceFee: { type: 'integer', minimum: 0, maximum: 1_000_000_000 },
    timeFee: { type: 'integer', minimum: 0, maximum: 1_000_000_000 },
  },
} as const;

export async function buildServer(ctx: CloudContext, options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: 256 * 1024,
    ajv: { customOptions: { removeAdditional: false } },
  });
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'PilePass cloud API',
        version: '1.0.0',
        description: 'Vouchers, settlement and gateway sync.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
    },
  });
  await app.register(rateLimit, { global: false });
  // Keep the raw JSON text: webhook signatures are computed over the exact bytes sent.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    (request as FastifyRequest & { rawBody?: string }).rawBody = body as string;
    if (body === '') return done(null, undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(new DomainError('invalid_request', 'the body is not valid JSON'), undefined);
    }
  });

  app.setErrorHandler(
    (err: Error & { validation?: unknown; statusCode?: number; code?: string }, request, reply) => {
      if (err instanceof DomainError)
        return reply.status(err.status).send({ error: { code: err.code, message: err.message } });
      if (err.validation)
        return reply.status(400).send({ error: { code: 'invalid_request', message: err.message } });
      if (err.statusCode === 429)
        return reply
          .status(429)
          .send({ error: { code: 'rate_limited', message: 'too many requests; try again shortly' } });
      if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
        return reply
          .status(err.statusCode)
          .send({ error: { code: 'invalid_request', message: err.message } });
      }
      request.log.error({ err }, 'unhandled error');
      return reply.status(500).send({ error: { code: 'internal', message: 'internal error' } });
    },
  );
  app.setNotFoundHandler((_request, reply) =>
    reply.status(404).send({ error: { code: 'not_found', message: 'no such route' } }),
  );

  const driverOf = (request: FastifyRequest) =>
    authenticate(ctx, /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1]);
  const requireOperator = (request: FastifyRequest) => {
    const given = Buffer.from(/^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '');
    const expected = Buffer.from(options.operatorToken);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new DomainError('unauthenticated', 'operator token required', 401);
    }
  };
  const send = (reply: FastifyReply, r: { statusCode: number; body: unknown }) =>
    reply.status(r.statusCode).send(r.body);
  const authLimit = { rateLimit: { max: options.authRateLimit ?? 20, timeWindow: '1 minute' } };

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // ---- drivers -----------------------------------------------------------------------------
  app.post(
    '/v1/drivers',
    {
      config: authLimit,
      schema: {
        tags: ['drivers'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['email', 'password'],
          properties: {
            email: { type: 'string', maxLength: 254 },
            password: { type: 'string', minLength: 8, maxLength: 256 },
            currency: { type: 'string', pattern: '^[A-Z]{3}$' },
          },
        },
        response: { 201: { type: 'object', properties: { driverId: { type: 'string' } } }, '4xx': error },
      },
    },
    async (request, reply) => {
      const body = request.body as { email: string; password: string; currency?: string };
      return reply.status(201).send(await registerDriver(ctx, body.email, body.password, body.currency));
    },
  );

  app.post(
    '/v1/sessions',
    {
      config: authLimit,
      schema: {
        tags: ['drivers'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['email', 'password'],
          properties: {
            email: { type: 'string', maxLength: 254 },
            password: { type: 'string', maxLength: 256 },
          },
        },
        response: {
          200: { type: 'object', properties: { token: { type: 'string' }, expiresAt: { type: 'integer' } } },
          '4xx': error,
        },
      },
    },
    async (request) => {
      const body = request.body as { email: string; password: string };
      return signIn(ctx, body.email, body.password);
    },
  );

  app.get(
    '/v1/wallet',
    {
      schema: {
        tags: ['drivers'],
        security: [{ bearer: [] }],
        response: {
          200: {
            type: 'object',
            properties: {
              currency: { type: 'string' },
              balance: { type: 'integer' },
              held: { type: 'integer' },
            },
          },
          '4xx': error,
        },
      },
    },
    async (request) => walletOf(ctx, await driverOf(request)),
  );

  app.post(
    '/v1/wallet/top-ups',
    {
      schema: {
        tags: ['drivers'],
        security: [{ bearer: [] }],
        headers: idempotencyHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['amount'],
          properties: { amount: { type: 'integer', minimum: 1, maximum: 10_000_000 } },
        },
        response: { 201: { type: 'object', properties: { balance: { type: 'integer' } } }, '4xx': error },
      },
    },
    async (request, reply) => {
      const driverId = await driverOf(request);
      const { amount } = request.body as { amount: number };
      return send(
        reply,
        await withIdempotency(
          ctx,
          driverId,
          request.headers['idempotency-key'] as string,
          request.body,
          async (tx) => ({
            statusCode: 201,
            body: await topUpIn(tx, ctx, driverId, amount),
          }),
        ),
      );
    },
  );

  app.post(
    '/v1/wallet/payment-method',
    {
      schema: {
        tags: ['drivers'],
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['method'],
          properties: { method: { type: 'string', enum: ['wallet', 'sandbox-preauth'] } },
        },
      },
    },
    async (request) => {
      const { method } = request.body as { method: 'wallet' | 'sandbox-preauth' };
      await setPaymentMethod(ctx, await driverOf(request), method);
      return { method };
    },
  );

  app.post(
    '/v1/psp/sandbox/webhook',
    {
      schema: {
        tags: ['payments'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['id', 'type', 'authorizationId'],
          properties: {
            id: { type: 'string', pattern: '^evt_[A-Za-z0-9_-]{4,64}$' },
            type: { type: 'string', enum: ['authorization.expired', 'authorization.voided'] },
            authorizationId: { type: 'string', maxLength: 80 },
          },
        },
      },
    },
    async (request) => {
      if (!options.pspWebhookSecret)
        throw new DomainError('not_configured', 'no sandbox PSP is configured', 404);
      const raw = (request as FastifyRequest & { rawBody?: string }).rawBody ?? '';
      verifyWebhook(
        options.pspWebhookSecret,
        raw,
        request.headers['pilepass-sandbox-signature'] as string | undefined,
        ctx.now(),
      );
      const applied = await ctx.db.transaction((tx) =>
        applyWebhookEvent(tx, request.body as WebhookEvent, ctx.now()),
      );
      return { received: true, applied };
    },
  );

  app.get('/v1/stations', { schema: { tags: ['stations'] } }, async () => ({
    stations: await listStations(ctx),
  }));

  app.get(
    '/v1/stations/:id/bundle',
    {
      schema: {
        tags: ['stations'],
        params: {
          type: 'object',
          properties: { id: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' } },
          required: ['id'],
        },
        response: {
          200: { type: 'object', properties: { bundle: { type: 'string' }, version: { type: 'integer' } } },
          '4xx': error,
        },
      },
    },
    async (request) => {
      const bundle = await buildBundle(ctx, (request.params as { id: string }).id);
      return { bundle: b64(bundle.bytes), version: bundle.body.version };
    },
  );

  app.post(
    '/v1/vouchers',
    {
      schema: {
        tags: ['vouchers'],
        security: [{ bearer: [] }],
        headers: idempotencyHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['gatewayId', 'amount', 'devicePublicKey', 'deviceId'],
          properties: {
            gatewayId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' },
            connector: { type: 'integer', minimum: 0, maximum: 255 },
            amount: { type: 'integer', minimum: 1 },
            devicePublicKey: { type: 'string', pattern: '^[A-Za-z0-9_-]{44,88}$' },
            deviceId: { type: 'string', pattern: '^[A-Za-z0-9._-]{8,64}$' },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: {
              cti: { type: 'string' },
              voucher: { type: 'string' },
              holdAmount: { type: 'integer' },
              currency: { type: 'string' },
              expiresAt: { type: 'integer' },
              graceUntil: { type: 'integer' },
            },
          },
          '4xx': error,
        },
      },
    },
    async (request, reply) => {
      const driverId = await driverOf(request);
      const body = request.body as {
        gatewayId: string;
        connector?: number;
        amount: number;
        devicePublicKey: string;
        deviceId: string;
      };
      return send(
        reply,
        // Checks and signing first; the hold and the idempotency record then commit together.
        await (async () => {
          const prepared = await prepareVoucher(ctx, {
            driverId,
            deviceId: body.deviceId,
            devicePublicKey: fromB64(body.devicePublicKey, 'devicePublicKey'),
            gatewayId: body.gatewayId,
            connector: body.connector,
            amount: body.amount,
          });
          return withIdempotency(
            ctx,
            driverId,
            request.headers['idempotency-key'] as string,
            body,
            async (tx) => {
              const issued = await prepared.apply(tx);
              return { statusCode: 201, body: { ...issued, voucher: b64(issued.voucher) } };
            },
          );
        })(),
      );
    },
  );

  app.get('/v1/vouchers', { schema: { tags: ['vouchers'], security: [{ bearer: [] }] } }, async (request) => {
    const rows = await vouchersOfDriver(ctx, await driverOf(request));
    return {
      vouchers: rows.map((v) => ({
        cti: Buffer.from(v.cti).toString('hex'),
        gatewayId: v.gateway_id,
        connector: v.connector,
        state: v.state,
        holdAmount: v.hold_amount,
        captured: v.captured,
        refunded: v.refunded,
        clawedBack: v.clawed_back,
        currency: v.currency,
        issuedAt: v.issued_at,
        expiresAt: v.expires_at,
        voucher: b64(v.voucher_bytes),
      })),
    };
  });

  app.post(
    '/v1/vouchers/:cti/cancel',
    {
      schema: {
        tags: ['vouchers'],
        security: [{ bearer: [] }],
        headers: idempotencyHeaders,
        params: {
          type: 'object',
          properties: { cti: { type: 'string', pattern: '^[0-9a-f]{32,64}$' } },
          required: ['cti'],
        },
      },
    },
    async (request, reply) => {
      const driverId = await driverOf(request);
      const { cti } = request.params as { cti: string };
      return send(
        reply,
        await withIdempotency(
          ctx,
          driverId,
          request.headers['idempotency-key'] as string,
          { cancel: cti },
          async (tx) => {
            const row = await cancelVoucherIn(tx, ctx, driverId, new Uint8Array(Buffer.from(cti, 'hex')));
            return { statusCode: 200, body: { cti, state: row.state } };
          },
        ),
      );
    },
  );

  const upload = (field: string) => ({
    type: 'object',
    additionalProperties: false,
    required: [field],
    properties: { [field]: b64String },
  });

  app.post('/v1/receipts', { schema: { tags: ['settlement'], body: upload('receipt') } }, async (request) => {
    // Idempotent by receipt hash; a phone may upload what the gateway also sends.
    return processReceipt(ctx, fromB64((request.body as { receipt: string }).receipt, 'receipt'), 'phone');
  });

  app.post('/v1/reports', { schema: { tags: ['settlement'], body: upload('report') } }, async (request) => {
    return processReport(ctx, fromB64((request.body as { report: string }).report, 'report'), 'phone');
  });

  // ---- gateways ----------------------------------------------------------------------------
  app.post(
    '/v1/gateway/provision',
    {
      config: authLimit,
      schema: {
        tags: ['gateways'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['code', 'publicKey'],
          properties: { code: { type: 'string', minLength: 8, maxLength: 32 }, publicKey: b64String },
        },
      },
    },
    async (request) => {
      const body = request.body as { code: string; publicKey: string };
      const result = await provisionGateway(ctx, body.code, fromB64(body.publicKey, 'publicKey'));
      // A replaced key (new Pi, rotation): vouchers pinned to the old key are refunded.
      if (result.keyReplaced) await refundVouchersPinnedTo(ctx, result.gatewayId, 'gateway key replaced');
      const bundle = await buildBundle(ctx, result.gatewayId);
      return {
        gatewayId: result.gatewayId,
        root: { kid: b64(result.root.kid), publicKey: b64(result.root.publicKey) },
        bundle: b64(bundle.bytes),
      };
    },
  );

  app.post(
    '/v1/gateway/nonce',
    {
      schema: {
        tags: ['gateways'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['gatewayId'],
          properties: { gatewayId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' } },
        },
      },
    },
    async (request) => {
      const { nonce, expiresAt } = await issueSyncNonce(
        ctx,
        (request.body as { gatewayId: string }).gatewayId,
      );
      return { nonce: b64(nonce), expiresAt };
    },
  );

  app.post(
    '/v1/gateway/sync',
    {
      schema: {
        tags: ['gateways'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['gatewayId', 'cloudNonce', 'gatewayNonce', 'signature'],
          properties: {
            gatewayId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' },
            cloudNonce: b64String,
            gatewayNonce: b64String,
            report: b64String,
            signature: b64String,
          },
        },
      },
    },
    async (request) => {
      const body = request.body as {
        gatewayId: string;
        cloudNonce: string;
        gatewayNonce: string;
        report?: string;
        signature: string;
      };
      const result = await handleSync(ctx, {
        gatewayId: body.gatewayId,
        cloudNonce: fromB64(body.cloudNonce, 'cloudNonce'),
        gatewayNonce: fromB64(body.gatewayNonce, 'gatewayNonce'),
        report: body.report ? fromB64(body.report, 'report') : undefined,
        signature: fromB64(body.signature, 'signature'),
      });
      return { bundle: b64(result.bundle), report: result.report ?? null };
    },
  );

  // ---- operator ----------------------------------------------------------------------------
  app.post(
    '/v1/operator/gateways',
    {
      schema: {
        tags: ['operator'],
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['id', 'operatorId', 'name', 'connectors', 'tariff', 'currency'],
          properties: {
            id: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' },
            operatorId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
            name: { type: 'string', minLength: 1, maxLength: 80 },
            location: { type: 'string', maxLength: 200 },
            currency: { type: 'string', pattern: '^[A-Z]{3}$' },
            tariff: tariffSchema,
            connectors: {
              type: 'array',
              minItems: 1,
              maxItems: 16,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['id', 'powerW'],
                properties: {
                  id: { type: 'integer', minimum: 0, maximum: 255 },
                  powerW: { type: 'integer', minimum: 1, maximum: 1_000_000 },
                },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      requireOperator(request);
      const body = request.body as Parameters<typeof registerGateway>[1];
      return reply.status(201).send(await registerGateway(ctx, { ...body, location: body.location ?? '' }));
    },
  );

  app.post(
    '/v1/operator/gateways/:id/provisioning-code',
    { schema: { tags: ['operator'], security: [{ bearer: [] }] } },
    async (request) => {
      requireOperator(request);
      return newProvisioningCode(ctx, (request.params as { id: string }).id);
    },
  );

  app.post(
    '/v1/operator/gateways/:id/revoke-key',
    { schema: { tags: ['operator'], security: [{ bearer: [] }] } },
    async (request) => {
      requireOperator(request);
      return { refunded: await revokeGatewayKey(ctx, (request.params as { id: string }).id) };
    },
  );

  app.post(
    '/v1/operator/keys/issuer/rotate',
    {
      schema: {
        tags: ['operator'],
        security: [{ bearer: [] }],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['overlapSeconds'],
          properties: { overlapSeconds: { type: 'integer', minimum: 0, maximum: 90 * 86_400 } },
        },
      },
    },
    async (request) => {
      requireOperator(request);
      const key = await ctx.keys.rotateIssuer(
        ctx.now(),
        (request.body as { overlapSeconds: number }).overlapSeconds,
      );
      return { kid: b64(key.kid) };
    },
  );

  app.get(
    '/v1/operator/alerts',
    { schema: { tags: ['operator'], security: [{ bearer: [] }] } },
    async (request) => {
      requireOperator(request);
      return { alerts: await listAlerts(ctx) };
    },
  );

  app.post(
    '/v1/operator/jobs/refund',
    { schema: { tags: ['operator'], security: [{ bearer: [] }] } },
    async (request) => {
      requireOperator(request);
      return { refunded: await refundExpiredHolds(ctx) };
    },
  );

  return app;
}
