/**
 * The gateway's entry to the hardware pile drivers: builds the relay or CAN driver from the
 * validated gateway config (`pile` and its section), with driver errors going to the log.
 * Imported lazily by gateway.ts, so the sim and OCPP setups never load GPIO, Modbus or CAN code.
 * @module
 */

import type { Logger } from 'pino';
import type { GatewayConfig } from '../config.ts';
import { ConfigError } from '../config.ts';
import type { PileDriver } from '../contracts.ts';

export async function openHardwarePile(config: GatewayConfig, log: Logger): Promise<PileDriver> {
  const onError = (error: unknown) =>
    log.warn({ err: error instanceof Error ? error.message : String(error) }, 'pile driver');
  if (config.pile === 'relay') {
    if (!config.relay) throw new ConfigError('relay: required when pile is "relay"');
    const { openRelayPile } = await import('./relay/open-relay-pile.ts');
    return openRelayPile(config.relay, { dataDir: config.dataDir, onError });
  }
  if (config.pile === 'can') {
    if (!config.can) throw new ConfigError('can: required when pile is "can"');
    const { openCanPile } = await import('./can/open-can-pile.ts');
    return openCanPile(config.can, { connectors: config.connectors, onError });
  }
  throw new ConfigError(`pile: "${config.pile}" is not a hardware driver`);
}
