/**
 * Cross-field rules between the gateway config's `pile` choice, its `connectors` and the
 * hardware drivers' sections (`relay`, `can`), as one function the gateway config schema calls,
 * so each rule names the field it is about.
 * @module
 */

import type { z } from 'zod';
import type { CanPileConfig } from './can/config.ts';
import type { RelayPileConfig } from './relay/config.ts';

interface PileSections {
  readonly pile: string;
  readonly connectors: readonly number[];
  readonly relay?: RelayPileConfig | undefined;
  readonly can?: CanPileConfig | undefined;
}

export function checkHardwarePileSections(config: PileSections, ctx: z.RefinementCtx): void {
  if (config.pile === 'relay') {
    if (!config.relay) {
      ctx.addIssue({
        code: 'custom',
        path: ['relay'],
        message: 'required when pile is "relay" (at least connectors)',
      });
    } else {
      const wired = config.relay.connectors.map((c) => c.connector);
      const same =
        wired.length === config.connectors.length && wired.every((c) => config.connectors.includes(c));
      if (!same) {
        ctx.addIssue({
          code: 'custom',
          path: ['relay', 'connectors'],
          message: `wires connectors ${wired.join(', ')} but connectors is ${config.connectors.join(', ')}: they must be the same`,
        });
      }
    }
  }
  if (config.pile === 'can') {
    if (!config.can) {
      ctx.addIssue({ code: 'custom', path: ['can'], message: 'required when pile is "can" (at least {})' });
    } else {
      config.can.meters.forEach((meter, i) => {
        if (!config.connectors.includes(meter.connector)) {
          ctx.addIssue({
            code: 'custom',
            path: ['can', 'meters', i, 'connector'],
            message: `connector ${meter.connector} is not in connectors (${config.connectors.join(', ')})`,
          });
        }
      });
    }
  }
}
