/**
 * The CAN frame codec of docs/can.md as pure functions: byte layouts pinned by golden vectors
 * (little-endian, the DBC table), round trips of every frame type over all valid values
 * (fast-check), and typed CanFrameErrors for wrong lengths, reserved bits and bytes, unknown
 * enumeration values, and values an encoder cannot carry.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACK_RESULTS,
  type AckResult,
  CAN_ID_BASE,
  CanFrameError,
  COMMANDS,
  type Command,
  canId,
  decodeCommand,
  decodeFault,
  decodeGatewayHeartbeat,
  decodeMeter,
  decodePileHeartbeat,
  decodeStatus,
  encodeCommand,
  encodeFault,
  encodeGatewayHeartbeat,
  encodeMeter,
  encodePileHeartbeat,
  encodeStatus,
  faultText,
  GATEWAY_STATES,
  type GatewayState,
  PILE_STATES,
  type PileState,
} from '../../gateway/src/pile/can/frames.ts';

const hex = (data: Uint8Array) => Buffer.from(data).toString('hex');
const bytes = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));

function frameError(fn: () => unknown): CanFrameError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(CanFrameError);
    return error as CanFrameError;
  }
  throw new Error('expected a CanFrameError');
}

const u8 = fc.integer({ min: 0, max: 255 });
const connector = fc.integer({ min: 1, max: 255 });
const commandArb = fc
  .record({ connector, command: fc.constantFrom(...(Object.keys(COMMANDS) as Command[])), sequence: u8 })
  .chain((c) =>
    fc.record({
      connector: fc.constant(c.connector),
      command: fc.constant(c.command),
      sequence: fc.constant(c.sequence),
      maxEnergyWh: c.command === 'start' ? fc.integer({ min: 0, max: 0xffff_ffff }) : fc.constant(0),
    }),
  );
const statusArb = fc.record({
  connector,
  contactorClosed: fc.boolean(),
  plugged: fc.constantFrom(true, false, undefined),
  faulted: fc.boolean(),
  sessionActive: fc.boolean(),
  ackSequence: u8,
  ackResult: fc.constantFrom(...(Object.keys(ACK_RESULTS) as AckResult[])),
});
const meterArb = fc.record({
  connector,
  energyWh: fc.integer({ min: 0, max: 0xffff_ffff }),
  powerW: fc.integer({ min: 0, max: 0xff_ffff }),
});
const faultArb = fc.record({
  connector: u8,
  code: fc.integer({ min: 1, max: 255 }),
  active: fc.boolean(),
  vendorCode: fc.integer({ min: 0, max: 0xffff_ffff }),
});
const gatewayHeartbeatArb = fc.record({
  counter: u8,
  state: fc.constantFrom(...(Object.keys(GATEWAY_STATES) as GatewayState[])),
  timeoutMs: fc.integer({ min: 1, max: 0xffff }),
});
const pileHeartbeatArb = fc.record({
  counter: u8,
  state: fc.constantFrom(...(Object.keys(PILE_STATES) as PileState[])),
  protocolVersion: fc.integer({ min: 1, max: 255 }),
  connectorCount: fc.integer({ min: 1, max: 255 }),
});

describe('CAN ids', () => {
  it('are base + node id, node ids 1–127 only', () => {
    expect(canId(CAN_ID_BASE.gatewayCommand, 16)).toBe(0x210);
    expect(canId(CAN_ID_BASE.heartbeat, 127)).toBe(0x77f);
    expect(frameError(() => canId(CAN_ID_BASE.pileStatus, 0)).code).toBe('range');
    expect(frameError(() => canId(CAN_ID_BASE.pileStatus, 128)).code).toBe('range');
  });
});

describe('golden byte layouts (docs/can.md)', () => {
  it('GW_COMMAND', () => {
    expect(hex(encodeCommand({ connector: 2, command: 'start', sequence: 7, maxEnergyWh: 20_000 }))).toBe(
      '02010700204e0000',
    );
    expect(decodeCommand(bytes('0102ff0000000000'))).toEqual({
      connector: 1,
      command: 'stop',
      sequence: 255,
      maxEnergyWh: 0,
    });
  });

  it('PILE_STATUS', () => {
    const status = {
      connector: 1,
      contactorClosed: true,
      plugged: true,
      faulted: false,
      sessionActive: true,
      ackSequence: 7,
      ackResult: 'accepted',
    } as const;
    expect(hex(encodeStatus(status))).toBe('0117070000000000');
    expect(decodeStatus(bytes('0300ff0200000000'))).toEqual({
      connector: 3,
      contactorClosed: false,
      plugged: undefined,
      faulted: false,
      sessionActive: false,
      ackSequence: 255,
      ackResult: 'refused-unplugged',
    });
    expect(decodeStatus(bytes('010c00ff00000000'))).toMatchObject({
      plugged: false,
      faulted: true,
      ackResult: 'none',
    });
  });

  it('PILE_METER: u32 Wh then u24 W, little-endian', () => {
    expect(hex(encodeMeter({ connector: 1, energyWh: 0x01020304, powerW: 22_000 }))).toBe('0104030201f05500');
    expect(decodeMeter(bytes('02ffffffffffffff'))).toEqual({
      connector: 2,
      energyWh: 0xffff_ffff,
      powerW: 0xff_ffff,
    });
  });

  it('PILE_FAULT', () => {
    expect(hex(encodeFault({ connector: 0, code: 7, active: true, vendorCode: 0xdeadbeef }))).toBe(
      '00070100efbeadde',
    );
    expect(decodeFault(bytes('0201000000000000'))).toEqual({
      connector: 2,
      code: 1,
      active: false,
      vendorCode: 0,
    });
    expect(faultText(1)).toBe('residual current');
    expect(faultText(200)).toBe('code 200');
  });

  it('heartbeats', () => {
    expect(hex(encodeGatewayHeartbeat({ counter: 9, state: 'operational', timeoutMs: 600 }))).toBe(
      '09015802',
    );
    expect(decodeGatewayHeartbeat(bytes('ff02e803'))).toEqual({
      counter: 255,
      state: 'switch-off',
      timeoutMs: 1000,
    });
    expect(
      hex(encodePileHeartbeat({ counter: 1, state: 'faulted', protocolVersion: 1, connectorCount: 2 })),
    ).toBe('01020102');
  });
});

describe('round trips (fast-check)', () => {
  it('every frame type decodes to what was encoded', () => {
    fc.assert(
      fc.property(commandArb, (f) => {
        expect(decodeCommand(encodeCommand(f))).toEqual(f);
      }),
    );
    fc.assert(
      fc.property(statusArb, (f) => {
        expect(decodeStatus(encodeStatus(f))).toEqual(f);
      }),
    );
    fc.assert(
      fc.property(meterArb, (f) => {
        expect(decodeMeter(encodeMeter(f))).toEqual(f);
      }),
    );
    fc.assert(
      fc.property(faultArb, (f) => {
        expect(decodeFault(encodeFault(f))).toEqual(f);
      }),
    );
    fc.assert(
      fc.property(gatewayHeartbeatArb, (f) => {
        expect(decodeGatewayHeartbeat(encodeGatewayHeartbeat(f))).toEqual(f);
      }),
    );
    fc.assert(
      fc.property(pileHeartbeatArb, (f) => {
        expect(decodePileHeartbeat(encodePileHeartbeat(f))).toEqual(f);
      }),
    );
  });

  it('any 8 bytes either decode to a frame that re-encodes to the same bytes, or throw CanFrameError', () => {
    const decoders: [(d: Uint8Array) => unknown, (f: never) => Uint8Array][] = [
      [decodeCommand, encodeCommand as (f: never) => Uint8Array],
      [decodeStatus, encodeStatus as (f: never) => Uint8Array],
      [decodeMeter, encodeMeter as (f: never) => Uint8Array],
      [decodeFault, encodeFault as (f: never) => Uint8Array],
    ];
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), (data) => {
        for (const [decode, encode] of decoders) {
          let frame: unknown;
          try {
            frame = decode(data);
          } catch (error) {
            expect(error).toBeInstanceOf(CanFrameError);
            continue;
          }
          expect(hex(encode(frame as never))).toBe(hex(data));
        }
      }),
    );
  });
});

describe('rejections', () => {
  it('a wrong length is a length error, for every frame type', () => {
    const cases: [string, (d: Uint8Array) => unknown, number][] = [
      ['GW_COMMAND', decodeCommand, 8],
      ['PILE_STATUS', decodeStatus, 8],
      ['PILE_METER', decodeMeter, 8],
      ['PILE_FAULT', decodeFault, 8],
      ['GW_HEARTBEAT', decodeGatewayHeartbeat, 4],
      ['PILE_HEARTBEAT', decodePileHeartbeat, 4],
    ];
    for (const [name, decode, length] of cases) {
      for (const wrong of [0, length - 1, length + 1]) {
        const error = frameError(() => decode(new Uint8Array(wrong).fill(1)));
        expect(error.code).toBe('length');
        expect(error.frame).toBe(name);
        expect(error.message).toBe(`${name}: expected ${length} data bytes, got ${wrong}`);
      }
    }
  });

  it('reserved bits and bytes must be zero; unknown values are refused', () => {
    expect(frameError(() => decodeStatus(bytes('0120000000000000'))).code).toBe('reserved'); // flag bit 5
    expect(frameError(() => decodeStatus(bytes('0102000000000000'))).code).toBe('reserved'); // plugged, state unknown
    expect(frameError(() => decodeStatus(bytes('0100000000000001'))).code).toBe('reserved'); // byte 7
    expect(frameError(() => decodeStatus(bytes('0100000500000000'))).code).toBe('unknown-value'); // ack 5
    expect(frameError(() => decodeStatus(bytes('0000000000000000'))).code).toBe('range'); // connector 0
    expect(frameError(() => decodeCommand(bytes('0104000000000000'))).code).toBe('unknown-value');
    expect(frameError(() => decodeCommand(bytes('0102000000010000'))).code).toBe('reserved'); // cap on STOP
    expect(frameError(() => decodeCommand(bytes('0101000100000000'))).code).toBe('reserved');
    expect(frameError(() => decodeFault(bytes('0100000000000000'))).code).toBe('range'); // code 0
    expect(frameError(() => decodeFault(bytes('0101020000000000'))).code).toBe('unknown-value');
    expect(frameError(() => decodeGatewayHeartbeat(bytes('00030a00'))).code).toBe('unknown-value');
    expect(frameError(() => decodeGatewayHeartbeat(bytes('00010000'))).code).toBe('range');
    expect(frameError(() => decodePileHeartbeat(bytes('00030101'))).code).toBe('unknown-value');
    expect(frameError(() => decodePileHeartbeat(bytes('00010001'))).code).toBe('range');
    expect(frameError(() => decodePileHeartbeat(bytes('00010100'))).code).toBe('range');
  });

  it('encoders refuse values the layout cannot carry', () => {
    const start = { connector: 1, command: 'start', sequence: 0, maxEnergyWh: 0 } as const;
    expect(frameError(() => encodeCommand({ ...start, maxEnergyWh: 2 ** 32 })).code).toBe('range');
    expect(frameError(() => encodeCommand({ ...start, connector: 0 })).code).toBe('range');
    expect(frameError(() => encodeCommand({ ...start, sequence: 256 })).code).toBe('range');
    expect(frameError(() => encodeCommand({ ...start, command: 'stop', maxEnergyWh: 5 })).code).toBe('range');
    expect(frameError(() => encodeMeter({ connector: 1, energyWh: -1, powerW: 0 })).code).toBe('range');
    expect(frameError(() => encodeMeter({ connector: 1, energyWh: 1.5, powerW: 0 })).code).toBe('range');
    expect(frameError(() => encodeMeter({ connector: 1, energyWh: 0, powerW: 2 ** 24 })).code).toBe('range');
    expect(
      frameError(() => encodeGatewayHeartbeat({ counter: 0, state: 'operational', timeoutMs: 70_000 })).code,
    ).toBe('range');
  });
});
