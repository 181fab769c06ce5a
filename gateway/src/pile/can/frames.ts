/**
 * The PilePass CAN frame set (docs/can.md): ids and pure encode/decode functions for every frame
 * between the gateway and a pile controller. Classic CAN, 11-bit ids, all multi-byte fields
 * little-endian (Intel, DBC `@1+`). Decoders check the exact length, value ranges and that
 * reserved bits and bytes are zero, and throw a typed `CanFrameError` otherwise; encoders refuse
 * values the layout cannot carry. No I/O here.
 * @module
 */

export const CAN_PROTOCOL_VERSION = 1;

/** Id bases; the frame's id is base + node id (1–127). Lower id = higher bus priority. */
export const CAN_ID_BASE = {
  pileFault: 0x080,
  pileStatus: 0x180,
  gatewayCommand: 0x200,
  pileMeter: 0x280,
  heartbeat: 0x700,
} as const;

export type CanFrameErrorCode = 'length' | 'range' | 'reserved' | 'unknown-value';

/** A frame that does not follow docs/can.md, or a value that cannot be encoded. */
export class CanFrameError extends Error {
  readonly code: CanFrameErrorCode;
  readonly frame: string;
  constructor(frame: string, code: CanFrameErrorCode, message: string) {
    super(`${frame}: ${message}`);
    this.name = 'CanFrameError';
    this.code = code;
    this.frame = frame;
  }
}

export function isNodeId(node: number): boolean {
  return Number.isInteger(node) && node >= 1 && node <= 127;
}

export function canId(base: number, node: number): number {
  if (!isNodeId(node)) throw new CanFrameError('id', 'range', `node id ${node} is not 1–127`);
  return base + node;
}

// ---- helpers --------------------------------------------------------------------------------

function expectLength(frame: string, data: Uint8Array, length: number): DataView {
  if (data.length !== length) {
    throw new CanFrameError(frame, 'length', `expected ${length} data bytes, got ${data.length}`);
  }
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

function expectZero(frame: string, view: DataView, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    if (view.getUint8(i) !== 0) throw new CanFrameError(frame, 'reserved', `reserved byte ${i} is not 0`);
  }
}

function checkUint(frame: string, field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new CanFrameError(frame, 'range', `${field} ${value} is not an integer ${min}–${max}`);
  }
}

function connectorOf(frame: string, view: DataView, allowPile = false): number {
  const connector = view.getUint8(0);
  if (connector === 0 && !allowPile) throw new CanFrameError(frame, 'range', 'connector 0');
  return connector;
}

// ---- GW_COMMAND (0x200 + pile node) ---------------------------------------------------------

export const COMMANDS = { start: 1, stop: 2, request: 3 } as const;
export type Command = keyof typeof COMMANDS;

export interface CommandFrame {
  readonly connector: number;
  readonly command: Command;
  /** Echoed in the status frame's ack (u8, wraps). */
  readonly sequence: number;
  /** START only: energy cap for the session, Wh; 0 = none. */
  readonly maxEnergyWh: number;
}

export function encodeCommand(frame: CommandFrame): Uint8Array {
  const name = 'GW_COMMAND';
  checkUint(name, 'connector', frame.connector, 1, 255);
  checkUint(name, 'sequence', frame.sequence, 0, 255);
  checkUint(name, 'maxEnergyWh', frame.maxEnergyWh, 0, 0xffff_ffff);
  if (frame.command !== 'start' && frame.maxEnergyWh !== 0) {
    throw new CanFrameError(name, 'range', `maxEnergyWh must be 0 for ${frame.command}`);
  }
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  view.setUint8(0, frame.connector);
  view.setUint8(1, COMMANDS[frame.command]);
  view.setUint8(2, frame.sequence);
  view.setUint32(4, frame.maxEnergyWh, true);
  return data;
}

export function decodeCommand(data: Uint8Array): CommandFrame {
  const name = 'GW_COMMAND';
  const view = expectLength(name, data, 8);
  const code = view.getUint8(1);
  const command = (Object.keys(COMMANDS) as Command[]).find((c) => COMMANDS[c] === code);
  if (!command) throw new CanFrameError(name, 'unknown-value', `command ${code}`);
  expectZero(name, view, 3, 4);
  const maxEnergyWh = view.getUint32(4, true);
  if (command !== 'start' && maxEnergyWh !== 0) {
    throw new CanFrameError(name, 'reserved', `maxEnergyWh must be 0 for ${command}`);
  }
  return { connector: connectorOf(name, view), command, sequence: view.getUint8(2), maxEnergyWh };
}

// ---- PILE_STATUS (0x180 + pile node) --------------------------------------------------------

export const ACK_RESULTS = {
  accepted: 0,
  'refused-faulted': 1,
  'refused-unplugged': 2,
  'refused-other': 3,
  'unknown-command': 4,
  none: 0xff,
} as const;
export type AckResult = keyof typeof ACK_RESULTS;

const STATUS_FLAG = {
  contactorClosed: 1 << 0,
  plugged: 1 << 1,
  plugKnown: 1 << 2,
  faulted: 1 << 3,
  sessionActive: 1 << 4,
} as const;
const STATUS_FLAGS_USED = 0b1_1111;

export interface StatusFrame {
  readonly connector: number;
  readonly contactorClosed: boolean;
  /** undefined when the controller cannot tell. */
  readonly plugged: boolean | undefined;
  readonly faulted: boolean;
  /** A START was accepted and no STOP, fault, unplug or cap has ended it. */
  readonly sessionActive: boolean;
  /** Sequence of the last command processed for this connector. */
  readonly ackSequence: number;
  /** Its result; `none` before any command since the controller booted. */
  readonly ackResult: AckResult;
}

export function encodeStatus(frame: StatusFrame): Uint8Array {
  const name = 'PILE_STATUS';
  checkUint(name, 'connector', frame.connector, 1, 255);
  checkUint(name, 'ackSequence', frame.ackSequence, 0, 255);
  let flags = 0;
  if (frame.contactorClosed) flags |= STATUS_FLAG.contactorClosed;
  if (frame.plugged !== undefined) flags |= STATUS_FLAG.plugKnown;
  if (frame.plugged === true) flags |= STATUS_FLAG.plugged;
  if (frame.faulted) flags |= STATUS_FLAG.faulted;
  if (frame.sessionActive) flags |= STATUS_FLAG.sessionActive;
  const data = new Uint8Array(8);
  data[0] = frame.connector;
  data[1] = flags;
  data[2] = frame.ackSequence;
  data[3] = ACK_RESULTS[frame.ackResult];
  return data;
}

export function decodeStatus(data: Uint8Array): StatusFrame {
  const name = 'PILE_STATUS';
  const view = expectLength(name, data, 8);
  const flags = view.getUint8(1);
  if ((flags & ~STATUS_FLAGS_USED) !== 0)
    throw new CanFrameError(name, 'reserved', `reserved flag bits in 0x${flags.toString(16)}`);
  const known = (flags & STATUS_FLAG.plugKnown) !== 0;
  const pluggedBit = (flags & STATUS_FLAG.plugged) !== 0;
  if (!known && pluggedBit) throw new CanFrameError(name, 'reserved', 'plugged set while plug state unknown');
  const resultCode = view.getUint8(3);
  const ackResult = (Object.keys(ACK_RESULTS) as AckResult[]).find((r) => ACK_RESULTS[r] === resultCode);
  if (!ackResult) throw new CanFrameError(name, 'unknown-value', `ack result ${resultCode}`);
  expectZero(name, view, 4, 8);
  return {
    connector: connectorOf(name, view),
    contactorClosed: (flags & STATUS_FLAG.contactorClosed) !== 0,
    plugged: known ? pluggedBit : undefined,
    faulted: (flags & STATUS_FLAG.faulted) !== 0,
    sessionActive: (flags & STATUS_FLAG.sessionActive) !== 0,
    ackSequence: view.getUint8(2),
    ackResult,
  };
}

// ---- PILE_METER (0x280 + pile node) ---------------------------------------------------------

export interface MeterFrame {
  readonly connector: number;
  /** Import energy register, Wh (u32). */
  readonly energyWh: number;
  /** Active power, W (u24). */
  readonly powerW: number;
}

export function encodeMeter(frame: MeterFrame): Uint8Array {
  const name = 'PILE_METER';
  checkUint(name, 'connector', frame.connector, 1, 255);
  checkUint(name, 'energyWh', frame.energyWh, 0, 0xffff_ffff);
  checkUint(name, 'powerW', frame.powerW, 0, 0xff_ffff);
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  view.setUint8(0, frame.connector);
  view.setUint32(1, frame.energyWh, true);
  view.setUint16(5, frame.powerW & 0xffff, true);
  view.setUint8(7, frame.powerW >>> 16);
  return data;
}

export function decodeMeter(data: Uint8Array): MeterFrame {
  const name = 'PILE_METER';
  const view = expectLength(name, data, 8);
  return {
    connector: connectorOf(name, view),
    energyWh: view.getUint32(1, true),
    powerW: view.getUint16(5, true) | (view.getUint8(7) << 16),
  };
}

// ---- PILE_FAULT (0x080 + pile node) ---------------------------------------------------------

/** Fault codes; the controller may send others (decoded as `code N`). */
export const FAULT_CODES: Readonly<Record<number, string>> = {
  1: 'residual current',
  2: 'overcurrent',
  3: 'overtemperature',
  4: 'contactor welded',
  5: 'meter failure',
  6: 'control pilot error',
  7: 'emergency stop',
  8: 'isolation fault',
  9: 'vehicle communication',
  10: 'gateway heartbeat lost',
  255: 'other',
};

export interface FaultFrame {
  /** 0 = the whole pile. */
  readonly connector: number;
  readonly code: number;
  /** true = raised, false = cleared. */
  readonly active: boolean;
  readonly vendorCode: number;
}

export function faultText(code: number): string {
  return FAULT_CODES[code] ?? `code ${code}`;
}

export function encodeFault(frame: FaultFrame): Uint8Array {
  const name = 'PILE_FAULT';
  checkUint(name, 'connector', frame.connector, 0, 255);
  checkUint(name, 'code', frame.code, 1, 255);
  checkUint(name, 'vendorCode', frame.vendorCode, 0, 0xffff_ffff);
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  view.setUint8(0, frame.connector);
  view.setUint8(1, frame.code);
  view.setUint8(2, frame.active ? 1 : 0);
  view.setUint32(4, frame.vendorCode, true);
  return data;
}

export function decodeFault(data: Uint8Array): FaultFrame {
  const name = 'PILE_FAULT';
  const view = expectLength(name, data, 8);
  const code = view.getUint8(1);
  if (code === 0) throw new CanFrameError(name, 'range', 'fault code 0');
  const active = view.getUint8(2);
  if (active > 1) throw new CanFrameError(name, 'unknown-value', `active ${active}`);
  expectZero(name, view, 3, 4);
  return {
    connector: connectorOf(name, view, true),
    code,
    active: active === 1,
    vendorCode: view.getUint32(4, true),
  };
}

// ---- heartbeats (0x700 + sender node) -------------------------------------------------------

export const GATEWAY_STATES = { operational: 1, 'switch-off': 2 } as const;
export type GatewayState = keyof typeof GATEWAY_STATES;

export interface GatewayHeartbeat {
  /** +1 per heartbeat, wraps at 256; a repeated value is not a heartbeat. */
  readonly counter: number;
  /**
   * `switch-off`: the gateway is closing, or has lost the pile's heartbeat; the controller
   * switches every connector off and refuses START while it hears this.
   */
  readonly state: GatewayState;
  /** After this long without a gateway heartbeat the controller switches everything off, ms. */
  readonly timeoutMs: number;
}

export function encodeGatewayHeartbeat(frame: GatewayHeartbeat): Uint8Array {
  const name = 'GW_HEARTBEAT';
  checkUint(name, 'counter', frame.counter, 0, 255);
  checkUint(name, 'timeoutMs', frame.timeoutMs, 1, 0xffff);
  const data = new Uint8Array(4);
  const view = new DataView(data.buffer);
  view.setUint8(0, frame.counter);
  view.setUint8(1, GATEWAY_STATES[frame.state]);
  view.setUint16(2, frame.timeoutMs, true);
  return data;
}

export function decodeGatewayHeartbeat(data: Uint8Array): GatewayHeartbeat {
  const name = 'GW_HEARTBEAT';
  const view = expectLength(name, data, 4);
  const code = view.getUint8(1);
  const state = (Object.keys(GATEWAY_STATES) as GatewayState[]).find((s) => GATEWAY_STATES[s] === code);
  if (!state) throw new CanFrameError(name, 'unknown-value', `state ${code}`);
  const timeoutMs = view.getUint16(2, true);
  if (timeoutMs === 0) throw new CanFrameError(name, 'range', 'timeout 0 ms');
  return { counter: view.getUint8(0), state, timeoutMs };
}

export const PILE_STATES = { booting: 0, operational: 1, faulted: 2 } as const;
export type PileState = keyof typeof PILE_STATES;

export interface PileHeartbeat {
  readonly counter: number;
  readonly state: PileState;
  /** The frame set version the controller speaks (this code: CAN_PROTOCOL_VERSION). */
  readonly protocolVersion: number;
  readonly connectorCount: number;
}

export function encodePileHeartbeat(frame: PileHeartbeat): Uint8Array {
  const name = 'PILE_HEARTBEAT';
  checkUint(name, 'counter', frame.counter, 0, 255);
  checkUint(name, 'protocolVersion', frame.protocolVersion, 1, 255);
  checkUint(name, 'connectorCount', frame.connectorCount, 1, 255);
  return Uint8Array.of(frame.counter, PILE_STATES[frame.state], frame.protocolVersion, frame.connectorCount);
}

export function decodePileHeartbeat(data: Uint8Array): PileHeartbeat {
  const name = 'PILE_HEARTBEAT';
  const view = expectLength(name, data, 4);
  const code = view.getUint8(1);
  const state = (Object.keys(PILE_STATES) as PileState[]).find((s) => PILE_STATES[s] === code);
  if (!state) throw new CanFrameError(name, 'unknown-value', `state ${code}`);
  const protocolVersion = view.getUint8(2);
  if (protocolVersion === 0) throw new CanFrameError(name, 'range', 'protocol version 0');
  const connectorCount = view.getUint8(3);
  if (connectorCount === 0) throw new CanFrameError(name, 'range', 'connector count 0');
  return { counter: view.getUint8(0), state, protocolVersion, connectorCount };
}
