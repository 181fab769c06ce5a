/**
 * The cloud service: opens the database (migrating it), ensures the root and issuer
 * keys, starts the HTTP API and the refund job (safe to run in several processes at once),
 * and shuts down cleanly on SIGINT/SIGTERM.
 * @module
 */

import { join } from 'node:path';
import { loadCloudConfig } from './config.ts';
import { openDatabase } from './db/open.ts';
import type { CloudContext } from './domain/context.ts';
import { KeyStore } from './domain/keys.ts';
import { refundExpiredHolds } from './domain/vouchers.ts';
import { buildServer } from './http/server.ts';

export async function startCloud(env: NodeJS.ProcessEnv = process.env) {
  const config = loadCloudConfig(env);
  const db = await openDatabase(
    config.databaseUrl
      ? { databaseUrl: config.databaseUrl }
      : { sqlitePath: join(config.dataDir, 'cloud.sqlite') },
  );
  const keys = new KeyStore(db, config.masterKey);
  const now = () => Math.floor(Date.now() / 1000);
  await keys.ensureKeys(now());
  const ctx: CloudContext = { db, keys, now, rules: config.rules, issuer: config.issuer };
  const app = await buildServer(ctx, {
    operatorToken: config.operatorToken,
    pspWebhookSecret: config.pspWebhookSecret,
    logger: { level: env.LOG_LEVEL ?? 'info' },
  });
  for (const warning of config.warnings) app.log.warn(warning);
  await app.listen({ port: config.port, host: config.host });
  const job = setInterval(() => {
    refundExpiredHolds(ctx).catch((err: unknown) => app.log.error({ err }, 'refund job failed'));
  }, config.refundJobSeconds * 1000);
  job.unref();
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  app.log.info({ port, backend: db.dialect }, 'cloud started');
  return {
    app,
    ctx,
    port,
    async stop() {
      clearInterval(job);
      await app.close();
      await db.close();
    },
  };
}
