/**
 * The hardware pile drivers' config sections (`relay`, `can`) through the gateway's parseConfig:
 * valid sections with their defaults, every wrong field named with what is expected, the
 * cross-field rules (section required by `pile`, connector numbers matching `connectors`, lines,
 * unit ids and meter ids used twice, node ids, heartbeat timeout), and what an installer sees
 * when the gateway opens these drivers on a machine without GPIO or SocketCAN.
 */

import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../gateway/src/config.ts';
import { openHardwarePile } from '../../gateway/src/pile/open-hardware-pile.ts';

const BASE = { gatewayId: 'gw-0001', connectors: [1] };
const CONNECTOR = {
  connector: 1,
  enable: { line: 17 },
  feedback: { line: 27 },
  meter: { type: 'modbus', unitId: 1, model: 'sdm630', meterId: 'SDM630-1' },
};
const RELAY = { connectors: [CONNECTOR], modbus: { port: '/dev/ttyUSB0' } };

/** The `path: message` lines of the ConfigError for `input`. */
function issues(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(input)}`);
}

const relay = (section: unknown) => issues({ ...BASE, pile: 'relay', relay: section });
const can = (section: unknown) => issues({ ...BASE, pile: 'can', can: section });
const withConnector = (patch: Record<string, unknown>) => ({
  ...RELAY,
  connectors: [{ ...CONNECTOR, ...patch }],
});

describe('relay section', () => {
  it('a minimal section gets its defaults', () => {
    const config = parseConfig({ ...BASE, pile: 'relay', relay: RELAY });
    expect(config.relay).toMatchObject({
      gpioChip: 'gpiochip0',
      pollMs: 1000,
      contactorOpenMs: 1000,
      meterSilentMs: 10_000,
      modbus: {
        port: '/dev/ttyUSB0',
        baudRate: 9600,
        parity: 'none',
        dataBits: 8,
        stopBits: 1,
        timeoutMs: 500,
      },
    });
    expect(config.relay?.connectors[0]).toMatchObject({
      enable: { line: 17, activeLow: false },
      feedback: { line: 27, activeLow: false, bias: 'as-is' },
    });
  });

  it.each([
    [
      'enable line out of range',
      withConnector({ enable: { line: 5000 } }),
      'relay.connectors.0.enable.line',
      /too big|1023/i,
    ],
    [
      'enable with an unknown key',
      withConnector({ enable: { line: 4, pin: 4 } }),
      'relay.connectors.0.enable',
      /pin/,
    ],
    [
      'feedback bias',
      withConnector({ feedback: { line: 27, bias: 'up' } }),
      'relay.connectors.0.feedback.bias',
      /pull-up/,
    ],
    ['feedback missing', withConnector({ feedback: undefined }), 'relay.connectors.0.feedback', /object/i],
    ['connector 0', withConnector({ connector: 0 }), 'relay.connectors.0.connector', /too small|>=1/i],
    [
      'meter type',
      withConnector({ meter: { type: 'pulse' } }),
      'relay.connectors.0.meter.type',
      /expected \{ "type": "modbus", … \} or \{ "type": "s0", … \}/,
    ],
    [
      'meter model',
      withConnector({ meter: { ...CONNECTOR.meter, model: 'sdm999' } }),
      'relay.connectors.0.meter.model',
      /sdm120.*sdm630/,
    ],
    [
      'unit id 0',
      withConnector({ meter: { ...CONNECTOR.meter, unitId: 0 } }),
      'relay.connectors.0.meter.unitId',
      /too small|>=1/i,
    ],
    [
      'unit id 248',
      withConnector({ meter: { ...CONNECTOR.meter, unitId: 248 } }),
      'relay.connectors.0.meter.unitId',
      /too big|247/i,
    ],
    [
      'meter id not ASCII',
      withConnector({ meter: { ...CONNECTOR.meter, meterId: 'Zähler' } }),
      'relay.connectors.0.meter.meterId',
      /printable ASCII/,
    ],
    [
      'S0 pulses per kWh',
      withConnector({ meter: { type: 's0', input: { line: 5 }, pulsesPerKwh: 0, meterId: 'S0' } }),
      'relay.connectors.0.meter.pulsesPerKwh',
      /too small|>=1/i,
    ],
    [
      'S0 input missing',
      withConnector({ meter: { type: 's0', pulsesPerKwh: 1000, meterId: 'S0' } }),
      'relay.connectors.0.meter.input',
      /object/i,
    ],
    ['no connectors', { ...RELAY, connectors: [] }, 'relay.connectors', /too small|at least 1|>=1/i],
    [
      'Modbus port',
      { ...RELAY, modbus: { port: 'COM3' } },
      'relay.modbus.port',
      /serial device .* or tcp:<host>:<port>/,
    ],
    [
      'baud rate',
      { ...RELAY, modbus: { port: '/dev/ttyUSB0', baudRate: 9601 } },
      'relay.modbus.baudRate',
      /one of 1200, 2400/,
    ],
    [
      'parity',
      { ...RELAY, modbus: { port: '/dev/ttyUSB0', parity: 'mark' } },
      'relay.modbus.parity',
      /none.*even.*odd/,
    ],
    [
      'stop bits',
      { ...RELAY, modbus: { port: '/dev/ttyUSB0', stopBits: 3 } },
      'relay.modbus.stopBits',
      /1|2/,
    ],
    ['poll period', { ...RELAY, pollMs: 10 }, 'relay.pollMs', /too small|>=100/i],
    [
      'contactor open bound',
      { ...RELAY, contactorOpenMs: 20_000 },
      'relay.contactorOpenMs',
      /too big|10000/i,
    ],
    ['S0 sampling', { ...RELAY, s0SampleMs: 40 }, 'relay.s0SampleMs', /too big|25/i],
    ['unknown key', { ...RELAY, gpio: 'gpiochip0' }, 'relay', /gpio/],
  ])('%s', (_name, section, path, message) => {
    const lines = relay(section);
    const line = lines.find((l) => l.startsWith(`${path}: `));
    expect(line, lines.join('\n')).toBeDefined();
    expect(line).toMatch(message);
  });

  it('cross-field rules name both places', () => {
    expect(issues({ ...BASE, pile: 'relay' })).toContain(
      'relay: required when pile is "relay" (at least connectors)',
    );
    expect(relay({ ...RELAY, modbus: undefined })).toContain(
      'modbus: required: connectors.0.meter is a Modbus meter (give at least { "port": "/dev/ttyUSB0" })'.replace(
        /^/,
        'relay.',
      ),
    );
    expect(issues({ ...BASE, connectors: [1, 2], pile: 'relay', relay: RELAY })).toContain(
      'relay.connectors: wires connectors 1 but connectors is 1, 2: they must be the same',
    );
    const two = {
      ...RELAY,
      connectors: [
        { ...CONNECTOR, plug: { line: 22 } },
        { ...CONNECTOR, connector: 1, enable: { line: 22 }, feedback: { line: 23 } },
      ],
    };
    expect(relay(two)).toEqual(
      expect.arrayContaining([
        'relay.connectors.1.connector: connector 1 is already used by connectors.0',
        'relay.connectors.1.enable.line: line 22 is already used by connectors.0.plug',
        'relay.connectors.1.meter.meterId: meter id SDM630-1 is already used by connectors.0.meter',
        'relay.connectors.1.meter.unitId: Modbus unit 1 is already used by connectors.0.meter',
      ]),
    );
    const s0 = withConnector({
      meter: { type: 's0', input: { line: 27 }, pulsesPerKwh: 1000, meterId: 'S0' },
    });
    expect(relay(s0)).toContain(
      'relay.connectors.0.meter.input.line: line 27 is already used by connectors.0.feedback',
    );
  });
});

describe('can section', () => {
  it('an empty section gets its defaults', () => {
    expect(parseConfig({ ...BASE, pile: 'can', can: {} }).can).toEqual({
      interface: 'can0',
      pileNodeId: 16,
      gatewayNodeId: 1,
      heartbeatMs: 200,
      heartbeatTimeoutMs: 600,
      commandTimeoutMs: 1000,
      stopTimeoutMs: 2000,
      staleMs: 2000,
      startupWaitMs: 3000,
      meters: [],
    });
  });

  it.each([
    ['interface name', { interface: 'can 0' }, 'can.interface', /CAN interface name, e\.g\. "can0"/],
    ['interface too long', { interface: 'averyveryverylongcan0' }, 'can.interface', /1–15 characters/],
    ['pile node id', { pileNodeId: 0 }, 'can.pileNodeId', /too small|>=1/i],
    ['gateway node id', { gatewayNodeId: 200 }, 'can.gatewayNodeId', /too big|127/i],
    [
      'same node ids',
      { pileNodeId: 5, gatewayNodeId: 5 },
      'can.gatewayNodeId',
      /must differ from pileNodeId/,
    ],
    ['heartbeat period', { heartbeatMs: 5 }, 'can.heartbeatMs', /too small|>=20/i],
    [
      'heartbeat timeout below 2 periods',
      { heartbeatMs: 500, heartbeatTimeoutMs: 600 },
      'can.heartbeatTimeoutMs',
      /at least 2 × heartbeatMs \(1000\)/,
    ],
    ['command timeout', { commandTimeoutMs: 1.5 }, 'can.commandTimeoutMs', /int/i],
    ['stop timeout', { stopTimeoutMs: 50_000 }, 'can.stopTimeoutMs', /too big|10000/i],
    ['meter id', { meters: [{ connector: 1, meterId: '' }] }, 'can.meters.0.meterId', /printable ASCII/],
    [
      'meter connector twice',
      {
        meters: [
          { connector: 1, meterId: 'A' },
          { connector: 1, meterId: 'B' },
        ],
      },
      'can.meters.1.connector',
      /given twice/,
    ],
    [
      'meter for an unknown connector',
      { meters: [{ connector: 9, meterId: 'A' }] },
      'can.meters.0.connector',
      /connector 9 is not in connectors \(1\)/,
    ],
    ['unknown key', { bitrate: 250_000 }, 'can', /bitrate/],
  ])('%s', (_name, section, path, message) => {
    const lines = can(section);
    const line = lines.find((l) => l.startsWith(`${path}: `));
    expect(line, lines.join('\n')).toBeDefined();
    expect(line).toMatch(message);
  });

  it('the section is required by pile "can"; pile names the choices', () => {
    expect(issues({ ...BASE, pile: 'can' })).toContain('can: required when pile is "can" (at least {})');
    expect(issues({ ...BASE, pile: 'gpio' })[0]).toMatch(
      /^pile: expected "sim", "sim:<socket path>", "ocpp", "relay" or "can"/,
    );
  });
});

describe('opening the hardware drivers from config on this machine (no GPIO chip, no socketcan)', () => {
  const log = pino({ level: 'silent' });

  it('relay: the GPIO chip that cannot be opened is named', async () => {
    const config = parseConfig({
      ...BASE,
      pile: 'relay',
      dataDir: '/tmp/pilepass-nonexistent',
      relay: { ...RELAY, gpioChip: 'gpiochip7' },
    });
    await expect(openHardwarePile(config, log)).rejects.toMatchObject({
      name: 'GpioError',
      message: expect.stringMatching(/cannot open GPIO chip gpiochip7|GPIO unavailable/),
    });
  });

  it('can: SocketCAN missing (Node 20) or the interface absent is a typed error', async () => {
    const config = parseConfig({ ...BASE, pile: 'can', can: { interface: 'nocan9' } });
    await expect(openHardwarePile(config, log)).rejects.toMatchObject({
      name: 'CanUnavailableError',
      message: expect.stringMatching(/Node >= 22|cannot open CAN interface nocan9/),
    });
  });
});
