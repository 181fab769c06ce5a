/**
 * The gateway's composition root: wires config, keys, ledger, clock, sync, pile driver,
 * charging sessions, the link protocol and a GATT transport, and starts them in the order
 * that keeps money safe (ledger and pile reconciled before any phone can connect).
 * @module
 */

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { utf8 } from '../../shared/src/index.ts';
import { ChargingSessions } from './charging/sessions.ts';
import { GatewayClock } from './clock.ts';
import type { GatewayConfig } from './config.ts';
import type { GattTransport, PileDriver } from './contracts.ts';
import { type GatewayIdentity, loadOrCreateGatewayKey, loadRootKey } from './keys.ts';
import { Ledger } from './ledger/ledger.ts';
import { GatewayLinks, type LinkServices } from './link/links.ts';
import { GatewaySync } from './sync.ts';
import { SyncAgent } from './sync-agent.ts';

export interface GatewayDeps {
  /** A transport built by the caller (tests: in-process); default from config.ble. */
  readonly transport?: GattTransport;
  /** A pile driver built by the caller; default from config.pile. */
  readonly pile?: PileDriver;
  readonly logger?: Logger;
  /** System clock for the start-up candidate time, Unix s (tests move it). */
  readonly systemNow?: () => number;
}

export interface RunningGateway {
  readonly config: GatewayConfig;
  readonly identity: GatewayIdentity;
  readonly ledger: Ledger;
  readonly clock: GatewayClock;
  readonly sync: GatewaySync;
  readonly charging: ChargingSessions;
  readonly links: GatewayLinks;
  readonly transport: GattTransport;
  readonly pile: PileDriver;
  readonly logger: Logger;
  /** Running when `cloudUrl` is configured. */
  readonly syncAgent: SyncAgent | undefined;
  stop(): Promise<void>;
}

export function createLogger(config: GatewayConfig): Logger {
  return pino({ level: config.logLevel, base: { gw: config.gatewayId } }, pino.destination(2));
}

export async function startGateway(config: GatewayConfig, deps: GatewayDeps = {}): Promise<RunningGateway> {
  const logger = deps.logger ?? createLogger(config);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const identity = await loadOrCreateGatewayKey(config.dataDir);
  const root = loadRootKey(config.dataDir);
  if (!root) logger.warn('no root key pinned: every token is refused until the gateway is provisioned');
  let clock: GatewayClock | undefined;
  const ledger = Ledger.open(join(config.dataDir, 'ledger.sqlite'), {
    now: () => clock?.now() ?? Math.floor(Date.now() / 1000),
  });
  clock = new GatewayClock(ledger, deps.systemNow ? { systemNow: deps.systemNow } : {});
  ledger.appendRecord('boot', utf8(JSON.stringify({ at: clock.now(), pid: process.pid })));

  const sync = new GatewaySync({
    crypto: nodeCrypto,
    ledger,
    clock,
    root,
    gatewayId: config.gatewayId,
    gatewayKey: identity.key,
    gatewayKid: identity.kid,
    log: logger,
  });
  await sync.load();

  const pile = deps.pile ?? (await createPileFromConfig(config, clock, logger));
  const charging = new ChargingSessions({
    crypto: nodeCrypto,
    ledger,
    pile,
    clock,
    gatewayKey: identity.key,
    gatewayKid: identity.kid,
    gatewayId: config.gatewayId,
    idleTimeoutSeconds: config.idleTimeoutSeconds,
    log: logger,
  });
  await charging.start(); // recovery runs before any phone can connect

  const fixedClock = clock;
  const services: LinkServices = {
    crypto: nodeCrypto,
    gatewayKey: identity.key,
    gatewayId: config.gatewayId,
    connectorStates: () => charging.connectorStates(),
    now: () => fixedClock.now(),
    authorizationContext: () => ({
      crypto: nodeCrypto,
      keyring: sync.keyring,
      gatewayId: config.gatewayId,
      toleranceSeconds: config.toleranceSeconds,
      minimumAmount: config.minimumAmount,
      currency: config.currency,
      observeIssuedAt: (iat) => fixedClock.observeIssuedAt(iat),
      isSpent: (cti) => ledger.isSpent(cti),
      isRevoked: (hash) => ledger.isRevoked(hash),
    }),
    startCharging: (auth) => charging.startCharging(auth),
    findSessionByCti: (cti) => charging.findSessionByCti(cti),
    stopCharging: (id) => charging.stopCharging(id),
    subscribe: (id, listener) => charging.subscribe(id, listener),
    installBundle: (bytes) => sync.installCarriedBundle(bytes),
    pendingReport: () => sync.buildReport(),
  };
  const transport = deps.transport ?? (await createTransportFromConfig(config, logger));
  const links = new GatewayLinks(services, transport, { limits: config.limits, log: logger });
  await transport.start(links);
  const syncAgent = config.cloudUrl
    ? new SyncAgent({
        cloudUrl: config.cloudUrl,
        gatewayId: config.gatewayId,
        crypto: nodeCrypto,
        gatewayKey: identity.key,
        sync,
        ledger,
        intervalMs: config.syncIntervalSeconds * 1000,
        log: logger,
      })
    : undefined;
  syncAgent?.start(); // in the background: never in the way of authorization
  const persistTimer = setInterval(() => fixedClock.persist(), 60_000);
  persistTimer.unref();
  logger.info(
    { gatewayId: config.gatewayId, ble: config.ble, bundle: sync.bundleVersion },
    'gateway started',
  );

  let stopped = false;
  return {
    config,
    identity,
    ledger,
    clock,
    sync,
    charging,
    links,
    transport,
    pile,
    logger,
    syncAgent,
    async stop() {
      if (stopped) return;
      stopped = true;
      syncAgent?.stop();
      clearInterval(persistTimer);
      await transport.stop();
      await charging.close();
      fixedClock.persist();
      await pile.close();
      ledger.close();
      logger.info('gateway stopped');
    },
  };
}

async function createPileFromConfig(
  config: GatewayConfig,
  clock: GatewayClock,
  logger: Logger,
): Promise<PileDriver> {
  if (config.pile === 'ocpp') {
    const { createOcppPileDriver } = await import('./pile/ocpp/driver.ts');
    const { ocppDriverOptions } = await import('./pile/ocpp/config.ts');
    const context = {
      connectors: config.connectors,
      now: () => clock.now(),
      log: logger.child({ pile: 'ocpp' }),
    };
    return createOcppPileDriver(ocppDriverOptions(config.ocpp, context));
  }
  if (config.pile === 'relay' || config.pile === 'can') {
    const { openHardwarePile } = await import('./pile/open-hardware-pile.ts');
    return openHardwarePile(config, logger.child({ pile: config.pile }));
  }
  const { createSimPileDriver } = await import('./pile/sim-driver.ts');
  const socketPath = config.pile.startsWith('sim:')
    ? config.pile.slice(4)
    : join(config.dataDir, 'sim-pile.sock');
  return createSimPileDriver({ socketPath, connectors: config.connectors });
}

async function createTransportFromConfig(config: GatewayConfig, logger: Logger): Promise<GattTransport> {
  if (config.ble === 'in-process') {
    const { InProcessTransport } = await import('./link/in-process.ts');
    return new InProcessTransport();
  }
  if (config.ble.startsWith('socket:')) {
    const { SocketTransport } = await import('./link/socket-transport.ts');
    return new SocketTransport(config.ble.slice(7));
  }
  // bleno with adapter recovery; `pilepass-gateway start` (service.ts) adds the process restart.
  const { createBleTransport } = await import('./ble/station-transport.ts');
  return createBleTransport(config, logger, {
    onGiveUp: (err) => logger.error({ err: err.message }, 'BLE adapter given up: no phone can connect'),
  });
}
