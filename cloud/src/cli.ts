/**
 * `pilepass-cloud` — the cloud's command line.
 *
 *   start    run the API and the refund job (config from the environment: see config.ts)
 *   migrate  apply the database migrations and exit
 * @module
 */

import { loadCloudConfig } from './config.ts';
import { openDatabase } from './db/open.ts';
import { startCloud } from './main.ts';

const HELP = `Usage: pilepass-cloud <start|migrate>

Environment:
  DATABASE_URL              postgres://… (default: SQLite under PILEPASS_DATA_DIR)
  PILEPASS_DATA_DIR         default ./data
  PORT, HOST                default 8080, 127.0.0.1
  PILEPASS_MASTER_KEY       64 hex digits: encrypts signing keys at rest (required in production)
  PILEPASS_OPERATOR_TOKEN   bearer token of the operator API
  PILEPASS_VOUCHER_LIFETIME_SECONDS (604800), PILEPASS_GRACE_SECONDS (2592000),
  PILEPASS_PER_DEVICE_CAP, PILEPASS_MAX_HOLD, PILEPASS_MIN_HOLD (minor units)
`;

const command = process.argv[2];
if (command === 'start') {
  const cloud = await startCloud();
  const shutdown = async () => {
    await cloud.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
} else if (command === 'migrate') {
  const config = loadCloudConfig();
  const db = await openDatabase(
    config.databaseUrl
      ? { databaseUrl: config.databaseUrl }
      : { sqlitePath: `${config.dataDir}/cloud.sqlite` },
  );
  await db.close();
  process.stdout.write('migrations applied\n');
} else {
  process.stdout.write(HELP);
  process.exitCode = command === undefined || command === '--help' || command === '-h' ? 0 : 2;
}
