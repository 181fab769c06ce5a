/**
 * A gateway running in-process for unit tests: the real link protocol, ledger (SQLite in a
 * temp dir), clock, sync and charging code, with the in-process transport and a FakePile.
 * The gateway's key, root key and first bundle come from a seeded test world, so vouchers
 * issued with `issueTestVoucher(world)` are valid at this gateway.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../gateway/src/config.ts';
import { type RunningGateway, startGateway } from '../../../gateway/src/gateway.ts';
import { pinRootKey } from '../../../gateway/src/keys.ts';
import { type InProcessPhoneLink, InProcessTransport } from '../../../gateway/src/link/in-process.ts';
import { nodeCrypto } from '../../../shared/src/crypto/node.ts';
import { PhoneSession, type SigningKey, toHex } from '../../../shared/src/index.ts';
import { buildWorld, derivedScalar, T0, type World } from '../../support/world.ts';
import { FakePile } from './fake-pile.ts';

export const SEED = 'gateway-tests';

export interface TestGateway {
  readonly world: World;
  readonly gateway: RunningGateway;
  readonly transport: InProcessTransport;
  readonly pile: FakePile;
  readonly dataDir: string;
  /** A phone connects at `mtu` and prepares to present `voucherBytes` with `deviceKey`. */
  phone(
    voucherBytes: Uint8Array,
    deviceKey: SigningKey,
    mtu?: number,
  ): { link: InProcessPhoneLink; session: PhoneSession };
  /** Stops the gateway (state stays on disk for a restart). */
  stop(): Promise<void>;
  /** Starts a new gateway process-equivalent on the same data dir and pile. */
  restart(options?: StartOptions): Promise<TestGateway>;
  /** Stops and deletes the data dir. */
  dispose(): Promise<void>;
}

export interface StartOptions {
  readonly systemNow?: () => number;
  readonly limits?: Record<string, number>;
  readonly pile?: FakePile;
  readonly dataDir?: string;
  readonly installBundle?: boolean;
  readonly config?: Record<string, unknown>;
}

export async function startTestGateway(options: StartOptions = {}): Promise<TestGateway> {
  const world = await buildWorld(nodeCrypto, SEED);
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'pilepass-gw-'));
  if (!options.dataDir) {
    writeFileSync(
      join(dataDir, 'gateway-key.json'),
      JSON.stringify({ privateKey: toHex(derivedScalar(SEED, 'gateway')) }),
      {
        mode: 0o600,
      },
    );
    pinRootKey(dataDir, { kid: world.root.kid, publicKey: world.root.key.publicKey });
  }
  const pile = options.pile ?? new FakePile();
  const transport = new InProcessTransport();
  const config = parseConfig({
    gatewayId: world.gateway.id,
    dataDir,
    ble: 'in-process',
    connectors: [...pile.connectors],
    logLevel: 'silent',
    ...(options.limits ? { limits: options.limits } : {}),
    ...options.config,
  });
  const gateway = await startGateway(config, {
    transport,
    pile,
    systemNow: options.systemNow ?? (() => T0 + 60),
  });
  if (options.installBundle !== false && gateway.sync.bundleVersion === undefined) {
    await gateway.sync.installBundle(world.bundle.bytes);
  }
  const handle: TestGateway = {
    world,
    gateway,
    transport,
    pile,
    dataDir,
    phone(voucherBytes, deviceKey, mtu = 185) {
      const link = transport.connect({ mtu });
      return { link, session: new PhoneSession({ crypto: nodeCrypto, link, voucherBytes, deviceKey }) };
    },
    stop: () => gateway.stop(),
    async restart(more = {}) {
      await gateway.stop();
      return startTestGateway({ ...options, ...more, pile, dataDir });
    },
    async dispose() {
      await gateway.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}
