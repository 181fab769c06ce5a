/**
 * A cloud on one backend for domain tests: database (SQLite file or throwaway PostgreSQL),
 * key store, a clock the test moves, an operator with a provisioned gateway whose key the
 * test holds, and a simulated gateway that turns a voucher into a genuine signed receipt
 * (real hello, real token presentation, real presentation proof).
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../../../cloud/src/db/database.ts';
import { openDatabase } from '../../../cloud/src/db/open.ts';
import {
  type CloudContext,
  DEFAULT_MONEY_RULES,
  type MoneyRules,
} from '../../../cloud/src/domain/context.ts';
import { KeyStore } from '../../../cloud/src/domain/keys.ts';
import { provisionGateway, registerGateway } from '../../../cloud/src/domain/stations.ts';
import { nodeCrypto } from '../../../shared/src/crypto/node.ts';
import {
  acceptPresentation,
  ConnectorState,
  chargedAmount,
  computeFee,
  createGatewayHandshake,
  createTokenPresentation,
  GENESIS_RECEIPT_HASH,
  gatewayKeyId,
  openPresentation,
  parseVoucher,
  type SigningKey,
  StopReason,
  signReceipt,
  type Tariff,
} from '../../../shared/src/index.ts';

export const TARIFF: Tariff = { energyPrice: 1_200_000, serviceFee: 400_000, timeFee: 0 };
export const GATEWAY_ID = 'gw-cloud-01';
export const OPERATOR_ID = 'op-1';

export type Backend = 'sqlite' | 'postgres';

export interface CloudWorld {
  readonly ctx: CloudContext;
  readonly db: Database;
  readonly clock: { now: number };
  readonly gateway: SimulatedGateway;
  /** Where the database lives and the key that encrypts its signing keys (to start real cloud processes on it). */
  readonly location: { readonly databaseUrl?: string; readonly sqlitePath?: string };
  readonly masterKey: Uint8Array;
  /** Re-opens the database (a cloud restart) keeping the same keys and clock. */
  restart(): Promise<CloudWorld>;
  close(): Promise<void>;
}

export async function openCloudWorld(
  backend: Backend,
  options: { postgresUrl?: string; rules?: Partial<MoneyRules>; now?: number } = {},
): Promise<CloudWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-cloud-'));
  const location =
    backend === 'postgres'
      ? { databaseUrl: options.postgresUrl! }
      : { sqlitePath: join(dir, 'cloud.sqlite') };
  const masterKey = nodeCrypto.randomBytes(32);
  const clock = { now: options.now ?? 1_800_000_000 };
  const rules = { ...DEFAULT_MONEY_RULES, ...options.rules };
  const make = async (existingGateway?: SimulatedGateway): Promise<CloudWorld> => {
    const db = await openDatabase(location);
    const keys = new KeyStore(db, masterKey);
    const ctx: CloudContext = { db, keys, now: () => clock.now, rules, issuer: 'pilepass-test' };
    await keys.ensureKeys(clock.now);
    let gateway = existingGateway;
    if (!gateway) {
      const key = await nodeCrypto.generateSigningKey();
      const { provisioningCode } = await registerGateway(ctx, {
        id: GATEWAY_ID,
        operatorId: OPERATOR_ID,
        name: 'Test station',
        connectors: [
          { id: 1, powerW: 60_000 },
          { id: 2, powerW: 7_000 },
        ],
        tariff: TARIFF,
        currency: 'CNY',
        location: 'test',
      });
      await provisionGateway(ctx, provisioningCode, key.publicKey);
      gateway = new SimulatedGateway(key, await gatewayKeyId(nodeCrypto, key.publicKey));
    }
    const world: CloudWorld = {
      ctx,
      db,
      clock,
      gateway,
      location,
      masterKey,
      restart: async () => {
        await db.close();
        return make(gateway);
      },
      close: async () => {
        await db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
    return world;
  };
  return make();
}

/** A gateway in miniature: real handshake, token and receipt chain, no BLE and no pile. */
export class SimulatedGateway {
  readonly key: SigningKey;
  readonly kid: Uint8Array;
  #sequence = 0;
  #previous: Uint8Array = GENESIS_RECEIPT_HASH;

  constructor(key: SigningKey, kid: Uint8Array) {
    this.key = key;
    this.kid = kid;
  }

  /** A phone presents the voucher; the session delivers `energyWh` over `seconds`; returns the receipt bytes. */
  async charge(
    voucherBytes: Uint8Array,
    deviceKey: SigningKey,
    energyWh: number,
    seconds: number,
    at: number,
    overrides: { chargedAmount?: number; computedAmount?: number } = {},
  ): Promise<Uint8Array> {
    const voucher = parseVoucher(voucherBytes);
    const c = voucher.claims;
    const handshake = await createGatewayHandshake(nodeCrypto, this.key, {
      gatewayId: c.gatewayId,
      connectors: [{ id: 1, state: ConnectorState.AVAILABLE }],
      gatewayTime: at,
    });
    const phone = await createTokenPresentation(nodeCrypto, {
      helloBytes: handshake.hello.bytes,
      voucherBytes,
      deviceKey,
      connector: c.connector ?? 1,
    });
    const opened = await openPresentation(nodeCrypto, handshake, phone.envelope);
    const { proof } = await acceptPresentation(nodeCrypto, handshake, opened, c.deviceKey, c.cti);
    this.#sequence += 2; // spend record + receipt record, like the real ledger
    const receipt = await signReceipt(this.key, this.kid, {
      cti: c.cti,
      sessionId: nodeCrypto.randomBytes(16),
      gatewayId: c.gatewayId,
      connector: c.connector ?? 1,
      meterId: 'SIM-1',
      meterStartWh: 1_000_000,
      meterStopWh: 1_000_000 + energyWh,
      startedAt: at,
      stoppedAt: at + seconds,
      energyWh,
      tariff: c.tariff,
      computedAmount: overrides.computedAmount ?? computeFee(c.tariff, energyWh, seconds),
      chargedAmount: overrides.chargedAmount ?? chargedAmount(c.tariff, energyWh, seconds, c.hold.amount),
      currency: c.hold.currency,
      proof,
      sequence: this.#sequence,
      previousReceiptHash: this.#previous,
      stopReason: StopReason.DRIVER_REQUEST,
    });
    this.#previous = await nodeCrypto.sha256(receipt.bytes);
    return receipt.bytes;
  }
}
