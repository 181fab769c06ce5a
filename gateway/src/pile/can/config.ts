/**
 * Configuration schema of the CAN pile controller driver: the `can` section of the gateway
 * config, used when `"pile": "can"`. The connectors are the gateway's `connectors`; the frame
 * set and the meaning of every timing are in docs/can.md.
 * @module
 */

import { z } from 'zod';
import { meterIdSchema } from '../meter-id.ts';

export const canPileSchema = z
  .object({
    /** SocketCAN network interface, brought up by the OS (e.g. systemd-networkd). */
    interface: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_.-]{0,14}$/, 'CAN interface name, e.g. "can0" (1–15 characters)')
      .default('can0'),
    pileNodeId: z.number().int().min(1).max(127).default(16),
    gatewayNodeId: z.number().int().min(1).max(127).default(1),
    heartbeatMs: z.number().int().min(20).max(5_000).default(200),
    heartbeatTimeoutMs: z.number().int().min(60).max(60_000).default(600),
    commandTimeoutMs: z.number().int().min(50).max(10_000).default(1_000),
    stopTimeoutMs: z.number().int().min(100).max(10_000).default(2_000),
    staleMs: z.number().int().min(100).max(60_000).default(2_000),
    startupWaitMs: z.number().int().min(0).max(60_000).default(3_000),
    /** Meter ids as receipts name them, per connector (default `CAN<pileNodeId>-<connector>`). */
    meters: z
      .array(z.object({ connector: z.number().int().min(1).max(255), meterId: meterIdSchema }).strict())
      .max(255)
      .default([]),
  })
  .strict()
  .superRefine((can, ctx) => {
    if (can.pileNodeId === can.gatewayNodeId) {
      ctx.addIssue({
        code: 'custom',
        path: ['gatewayNodeId'],
        message: 'must differ from pileNodeId (heartbeat ids would collide)',
      });
    }
    const seen = new Set<number>();
    can.meters.forEach((m, i) => {
      if (seen.has(m.connector)) {
        ctx.addIssue({
          code: 'custom',
          path: ['meters', i, 'connector'],
          message: `connector ${m.connector} given twice`,
        });
      }
      seen.add(m.connector);
    });
    if (can.heartbeatTimeoutMs < 2 * can.heartbeatMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['heartbeatTimeoutMs'],
        message: `must be at least 2 × heartbeatMs (${2 * can.heartbeatMs}); 3 × is usual`,
      });
    }
  });

export type CanPileConfig = z.output<typeof canPileSchema>;
