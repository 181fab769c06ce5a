/**
 * Gateway configuration: a JSON file validated with a schema (clear errors naming the field),
 * overridden by CLI flags, on embedded defaults good for a local demo. Nothing in here can add
 * trust: issuer keys come only from root-signed bundles, the root key only from provisioning.
 * @module
 */

import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { GATEWAY_ID_PATTERN } from '../../shared/src/index.ts';
import { canPileSchema } from './pile/can/config.ts';
import { checkHardwarePileSections } from './pile/hardware-config.ts';
import { ocppConfigSchema } from './pile/ocpp/config.ts';
import { relayPileSchema } from './pile/relay/config.ts';

const bleSchema = z
  .string()
  .regex(
    /^(hci(:\d+)?|uart:.+|socket:.+|in-process)$/,
    'expected "hci", "hci:<n>", "uart:<tty path>", "socket:<path>" (local tests) or "in-process"',
  );

const pileSchema = z
  .string()
  .regex(
    /^(sim(:.+)?|ocpp|relay|can)$/,
    'expected "sim", "sim:<socket path>", "ocpp", "relay" or "can" (the last three with their section)',
  );

export const configSchema = z
  .object({
    gatewayId: z.string().regex(GATEWAY_ID_PATTERN, 'gateway id: 1–32 of A–Z a–z 0–9 . _ -'),
    name: z.string().min(1).max(20).default('PilePass'),
    dataDir: z.string().min(1).default('./data/gateway'),
    ble: bleSchema.default('hci'),
    pile: pileSchema.default('sim'),
    /** OCPP 1.6J charge point options, required when pile is "ocpp" (pile/ocpp/config.ts). */
    ocpp: ocppConfigSchema.optional(),
    /** Relay-enabled EVSE options, required when pile is "relay" (pile/relay/config.ts). */
    relay: relayPileSchema.optional(),
    /** CAN pile controller options, required when pile is "can" (pile/can/config.ts, docs/can.md). */
    can: canPileSchema.optional(),
    connectors: z.array(z.number().int().min(0).max(255)).min(1).max(16).default([1, 2]),
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/, 'ISO 4217 code, e.g. CNY')
      .default('CNY'),
    /** Smallest hold accepted, minor units. */
    minimumAmount: z.number().int().min(0).default(100),
    /** Accepted clock error for nbf/exp, seconds. */
    toleranceSeconds: z.number().int().min(0).max(86_400).default(300),
    idleTimeoutSeconds: z.number().int().min(10).max(3_600).default(180),
    /** The cloud to sync with when the station has a network; absent = offline only (phones carry data). */
    cloudUrl: z.url({ protocol: /^https?$/ }).optional(),
    syncIntervalSeconds: z.number().int().min(5).max(86_400).default(60),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    limits: z
      .object({
        helloTtlMs: z.number().int().min(1_000).max(30_000).default(30_000),
        presentationDeadlineMs: z.number().int().min(1_000).max(60_000).default(12_000),
        reassemblyTimeoutMs: z.number().int().min(100).max(10_000).default(2_000),
        maxUnauthenticatedLinks: z.number().int().min(2).max(16).default(4),
      })
      .strict()
      .default({
        helloTtlMs: 30_000,
        presentationDeadlineMs: 12_000,
        reassemblyTimeoutMs: 2_000,
        maxUnauthenticatedLinks: 4,
      }),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.pile === 'ocpp' && config.ocpp === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['ocpp'],
        message: 'required when pile is "ocpp" (at least chargePointId)',
      });
    }
    checkHardwarePileSections(config, ctx);
  });

export type GatewayConfig = z.output<typeof configSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Validates a config object; throws ConfigError listing every wrong field. */
export function parseConfig(input: unknown): GatewayConfig {
  const result = configSchema.safeParse(input);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new ConfigError(`invalid gateway configuration:\n${lines.join('\n')}`);
}

/** Reads the file (if any) and applies overrides (CLI flags) on top. */
export function loadConfig(path: string | undefined, overrides: Record<string, unknown> = {}): GatewayConfig {
  let fromFile: Record<string, unknown> = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
    }
    try {
      fromFile = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
    }
  }
  const merged: Record<string, unknown> = { ...fromFile };
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
  return parseConfig(merged);
}
