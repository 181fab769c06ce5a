/**
 * Configuration schema of the relay-enabled EVSE driver: the `relay` section of the gateway
 * config, used when `"pile": "relay"`. Every wrong field is reported with its path; cross-field rules (a line
 * used twice, a Modbus meter without a bus, duplicate unit ids or meter ids) name both places.
 * @module
 */

import { z } from 'zod';
import { meterIdSchema } from '../meter-id.ts';
import { METER_MODELS } from './meter-models.ts';

const lineNumber = z.number().int().min(0).max(1023);

const outputLineSchema = z
  .object({
    line: lineNumber,
    /** The line's active level is electrical low (then the hardware must pull it *up* to be off). */
    activeLow: z.boolean().default(false),
  })
  .strict();

const inputLineSchema = z
  .object({
    line: lineNumber,
    activeLow: z.boolean().default(false),
    bias: z.enum(['as-is', 'disable', 'pull-up', 'pull-down']).default('as-is'),
  })
  .strict();

const modbusMeterSchema = z
  .object({
    type: z.literal('modbus'),
    unitId: z.number().int().min(1).max(247),
    model: z.enum(METER_MODELS),
    meterId: meterIdSchema,
  })
  .strict();

const s0MeterSchema = z
  .object({
    type: z.literal('s0'),
    input: inputLineSchema,
    pulsesPerKwh: z.number().int().min(1).max(100_000),
    /** The meter's display at commissioning, Wh; the register counts on from here. */
    initialWh: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
    meterId: meterIdSchema,
    /** How far ahead the persisted count runs (see s0-meter.ts), Wh. */
    reserveStepWh: z.number().int().min(1).max(1_000).default(20),
  })
  .strict();

const relayConnectorSchema = z
  .object({
    connector: z.number().int().min(1).max(255),
    enable: outputLineSchema,
    feedback: inputLineSchema,
    plug: inputLineSchema.optional(),
    evseError: inputLineSchema.optional(),
    meter: z.discriminatedUnion('type', [modbusMeterSchema, s0MeterSchema], {
      error: 'meter: expected { "type": "modbus", … } or { "type": "s0", … }',
    }),
  })
  .strict();

const modbusBusSchema = z
  .object({
    port: z
      .string()
      .regex(
        /^(\/dev\/\S+|tcp:[^:\s]+:\d{1,5})$/,
        'expected a serial device (/dev/ttyUSB0) or tcp:<host>:<port>',
      ),
    baudRate: z
      .number()
      .int()
      .refine((b) => [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200].includes(b), {
        message: 'baud rate: one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200',
      })
      .default(9600),
    parity: z.enum(['none', 'even', 'odd']).default('none'),
    dataBits: z.union([z.literal(7), z.literal(8)], { error: 'data bits: 7 or 8' }).default(8),
    stopBits: z.union([z.literal(1), z.literal(2)], { error: 'stop bits: 1 or 2' }).default(1),
    timeoutMs: z.number().int().min(50).max(5_000).default(500),
  })
  .strict();

export const relayPileSchema = z
  .object({
    /** libgpiod chip: name (gpiochip0), number, path or label (pinctrl-rp1 on a Pi 5). */
    gpioChip: z.string().min(1).default('gpiochip0'),
    connectors: z.array(relayConnectorSchema).min(1).max(16),
    modbus: modbusBusSchema.optional(),
    pollMs: z.number().int().min(100).max(10_000).default(1_000),
    contactorOpenMs: z.number().int().min(50).max(10_000).default(1_000),
    meterSilentMs: z.number().int().min(1_000).max(120_000).default(10_000),
    mismatchPowerW: z.number().int().min(10).max(100_000).default(200),
    mismatchGraceMs: z.number().int().min(0).max(60_000).default(5_000),
    s0SampleMs: z.number().int().min(2).max(25).default(10),
  })
  .strict()
  .superRefine((pile, ctx) => {
    const lines = new Map<number, string>();
    const units = new Map<number, string>();
    const meterIds = new Map<string, string>();
    const numbers = new Map<number, string>();
    const claim = <K>(
      seen: Map<K, string>,
      key: K,
      where: string,
      path: (string | number)[],
      what: string,
    ) => {
      const first = seen.get(key);
      if (first === undefined) seen.set(key, where);
      else ctx.addIssue({ code: 'custom', path, message: `${what} is already used by ${first}` });
    };
    pile.connectors.forEach((c, i) => {
      const at = `connectors.${i}`;
      claim(numbers, c.connector, at, ['connectors', i, 'connector'], `connector ${c.connector}`);
      const uses: [string, { line: number } | undefined][] = [
        ['enable', c.enable],
        ['feedback', c.feedback],
        ['plug', c.plug],
        ['evseError', c.evseError],
      ];
      if (c.meter.type === 's0') uses.push(['meter.input', c.meter.input]);
      for (const [name, use] of uses) {
        if (!use) continue;
        claim(
          lines,
          use.line,
          `${at}.${name}`,
          ['connectors', i, ...name.split('.'), 'line'],
          `line ${use.line}`,
        );
      }
      claim(
        meterIds,
        c.meter.meterId,
        `${at}.meter`,
        ['connectors', i, 'meter', 'meterId'],
        `meter id ${c.meter.meterId}`,
      );
      if (c.meter.type === 'modbus') {
        claim(
          units,
          c.meter.unitId,
          `${at}.meter`,
          ['connectors', i, 'meter', 'unitId'],
          `Modbus unit ${c.meter.unitId}`,
        );
        if (!pile.modbus && i === pile.connectors.findIndex((x) => x.meter.type === 'modbus')) {
          ctx.addIssue({
            code: 'custom',
            path: ['modbus'],
            message: `required: ${at}.meter is a Modbus meter (give at least { "port": "/dev/ttyUSB0" })`,
          });
        }
      }
    });
  });

export type RelayPileConfig = z.output<typeof relayPileSchema>;
