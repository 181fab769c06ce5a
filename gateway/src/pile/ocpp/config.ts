/**
 * The `ocpp` section of the gateway configuration (used when `pile` is `"ocpp"`): where the
 * gateway's OCPP 1.6J endpoint listens, which charge point may connect, its timers and the
 * optional power cap. Validated with zod so every wrong field is named in the error; times are
 * whole seconds here and become monotonic milliseconds in the driver options.
 *
 * The charge point connects to `ws://<host>:<port><path>/<chargePointId>` with the `ocpp1.6`
 * subprotocol (set that URL as the central system URL in the pile's configuration).
 * @module
 */

import { z } from 'zod';
import type { OcppPileDriverOptions } from './driver.ts';

/** OCPP charge point identity characters (OCPP 2.0.1 identifierString; 1.6 piles use the same). */
const CHARGE_POINT_ID = /^[A-Za-z0-9*\-_=:+|@.]{1,48}$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const URL_PATH = /^\/(?:[A-Za-z0-9._~-]+(?:\/[A-Za-z0-9._~-]+)*)?$/;

export const ocppConfigSchema = z
  .object({
    /**
     * Address the endpoint binds to. Default: every interface, because the pile reaches the Pi
     * over the station LAN; set the LAN interface's address to keep it off other networks.
     */
    host: z
      .union([z.ipv4(), z.ipv6(), z.string().regex(HOSTNAME)], {
        error: 'expected an IPv4/IPv6 address or a host name, e.g. "0.0.0.0" or "192.168.10.2"',
      })
      .default('0.0.0.0'),
    port: z
      .number({ error: 'expected a TCP port number' })
      .int('expected a whole TCP port number')
      .min(0, 'expected 1–65535 (0 = any free port, for tests)')
      .max(65_535, 'expected 1–65535 (0 = any free port, for tests)')
      .default(9000),
    /** URL path before the charge point id, e.g. "/ocpp" for ws://host:port/ocpp/<id>. */
    path: z
      .string()
      .regex(URL_PATH, 'expected a URL path such as "/ocpp" (leading slash, no trailing slash, no query)')
      .default('/ocpp'),
    /** The one charge point identity accepted (the last URL segment the pile connects with). */
    chargePointId: z
      .string({ error: 'required: the charge point identity the pile connects with' })
      .regex(CHARGE_POINT_ID, 'expected 1–48 of A–Z a–z 0–9 * - _ = : + | @ .'),
    /** OCPP security profile 1 (HTTP Basic auth): the pile's AuthorizationKey. Absent = none. */
    password: z
      .string()
      .min(16, 'expected 16–40 characters (OCPP security profile 1 AuthorizationKey)')
      .max(40, 'expected 16–40 characters (OCPP security profile 1 AuthorizationKey)')
      .optional(),
    /** Heartbeat interval sent in BootNotification.conf (s). */
    heartbeatSeconds: z.number().int('expected whole seconds').min(1).max(86_400).default(60),
    /** The link counts as lost after this many heartbeat intervals without any message. */
    missedHeartbeats: z.number().int('expected a whole number').min(2).max(10).default(3),
    /** MeterValueSampleInterval configured on the pile (s); readings older than this are refreshed. */
    meterSampleSeconds: z.number().int('expected whole seconds').min(1).max(3_600).default(10),
    /** How long a call to the charge point may take (s). */
    requestTimeoutSeconds: z.number().int('expected whole seconds').min(1).max(120).default(10),
    /** From RemoteStartTransaction to the pile's StartTransaction (s). */
    startTimeoutSeconds: z.number().int('expected whole seconds').min(1).max(600).default(60),
    /** From RemoteStopTransaction to the pile's StopTransaction (s). */
    stopTimeoutSeconds: z.number().int('expected whole seconds').min(1).max(600).default(30),
    /** At start-up, how long to wait for the charge point to connect and report (s). */
    startupWaitSeconds: z.number().int('expected whole seconds').min(0).max(600).default(30),
    /**
     * Power (W) or current (A) cap sent as the TxProfile of every remote start. OCPP 1.6
     * profiles cap power, not energy; absent = no profile is sent.
     */
    chargingLimit: z
      .object({
        unit: z.enum(['W', 'A'], { error: 'expected "W" or "A"' }),
        value: z
          .number()
          .int('expected a whole number of W or A')
          .min(1, 'expected a positive limit')
          .max(1_000_000),
      })
      .strict()
      .optional(),
    /**
     * After each BootNotification, set the pile's configuration keys the gateway relies on
     * (sample interval, measurands, no offline or local authorization). Best effort: refusals
     * are logged.
     */
    configureChargePoint: z.boolean().default(true),
  })
  .strict();

export type OcppConfig = z.output<typeof ocppConfigSchema>;

/** Driver options from the validated `ocpp` section (absent only for a hand-built config). */
export function ocppDriverOptions(
  config: OcppConfig | undefined,
  context: Pick<OcppPileDriverOptions, 'connectors' | 'now' | 'log'>,
): OcppPileDriverOptions {
  if (config === undefined) throw new RangeError('ocpp: the "ocpp" section is required when pile is "ocpp"');
  return {
    ...context,
    host: config.host,
    port: config.port,
    path: config.path,
    chargePointId: config.chargePointId,
    password: config.password,
    heartbeatSeconds: config.heartbeatSeconds,
    livenessTimeoutMs: config.heartbeatSeconds * config.missedHeartbeats * 1000,
    meterSampleSeconds: config.meterSampleSeconds,
    meterMaxAgeMs: config.meterSampleSeconds * 1000,
    requestTimeoutMs: config.requestTimeoutSeconds * 1000,
    startTimeoutMs: config.startTimeoutSeconds * 1000,
    stopTimeoutMs: config.stopTimeoutSeconds * 1000,
    startupWaitMs: config.startupWaitSeconds * 1000,
    chargingLimit: config.chargingLimit,
    configureChargePoint: config.configureChargePoint,
  };
}
