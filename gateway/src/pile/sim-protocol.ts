/**
 * The sim pile's wire protocol: newline-delimited JSON over a local Unix socket, shared by the
 * simulator process (sim-pile.ts) and its clients (sim-driver.ts) so both sides build and check
 * the same shapes. Nothing here does I/O; parsing never throws on peer input.
 *
 *   client → pile   {"id":7,"op":"start","connector":1,"maxEnergyWh":20000}
 *   pile → client   {"id":7,"ok":true,"reading":{…}}  or  {"id":7,"ok":false,"code":"faulted","error":"…"}
 *   pile → all      {"event":"reading","reading":{…}} every tick and on change,
 *                   {"event":"unplugged","connector":1}, {"event":"fault","connector":1,"detail":"…"}
 *
 * The full description is in README.md next to this file.
 * @module
 */

import type { ConnectorReading } from '../contracts.ts';

export const SIM_OPS = ['read', 'start', 'stop', 'plug', 'unplug', 'fault', 'clear-fault', 'state'] as const;
export type SimOp = (typeof SIM_OPS)[number];

/** Request ids are chosen by the client and echoed unchanged. */
export type RequestId = number | string;

export interface SimRequest {
  readonly id: RequestId;
  readonly op: SimOp;
  /** Required by every op except `state`. */
  readonly connector?: number | undefined;
  /** `start` only: opens the contactor after this many Wh from the start (positive integer). */
  readonly maxEnergyWh?: number | undefined;
  /** `fault` only: free text carried in the fault event. */
  readonly detail?: string | undefined;
}

export type SimErrorCode = 'bad-request' | 'unknown-connector' | 'faulted' | 'unplugged' | 'internal';

/** A reading as it travels (ConnectorReading without signed meter data; plugged is always known). */
export interface WireReading {
  readonly connector: number;
  readonly contactorOn: boolean;
  readonly plugged: boolean;
  readonly faulted: boolean;
  /** Meter register, integer Wh. */
  readonly meterWh: number;
  readonly meterId: string;
  /** Present power, integer W (0 while the contactor is open). */
  readonly powerW: number;
}

/** One connector as the `state` op reports it. */
export interface SimConnectorState extends WireReading {
  /** Last fault detail while faulted, else null. */
  readonly faultDetail: string | null;
  /** Register value at which an energy-capped start opens the contactor, else null. */
  readonly stopAtWh: number | null;
}

export interface SimPileState {
  readonly connectors: readonly SimConnectorState[];
  /** Power each connector delivers while on, integer W. */
  readonly ratedPowerW: number;
  /** Simulated-time multiplier. */
  readonly speed: number;
  readonly requirePlug: boolean;
  /** Clients connected at the time of the reply (including the asker). */
  readonly clients: number;
}

export type SimResponse =
  | {
      readonly id: RequestId | null;
      readonly ok: true;
      readonly reading?: WireReading;
      readonly state?: SimPileState;
    }
  | {
      readonly id: RequestId | null;
      readonly ok: false;
      readonly code: SimErrorCode;
      readonly error: string;
    };

export type SimEvent =
  | { readonly event: 'reading'; readonly reading: WireReading }
  | { readonly event: 'unplugged'; readonly connector: number }
  | { readonly event: 'fault'; readonly connector: number; readonly detail: string };

/** Longest line either side accepts; a longer one is discarded (and answered with an error by the pile). */
export const MAX_LINE_CHARS = 64 * 1024;

// ---- line framing -----------------------------------------------------------------------------

/**
 * Splits a UTF-8 text stream (socket with setEncoding('utf8')) into lines. A line longer than
 * MAX_LINE_CHARS is dropped up to its newline and reported once through `onTooLong`.
 */
export function createLineSplitter(
  onLine: (line: string) => void,
  onTooLong: () => void,
): (chunk: string) => void {
  let buffer = '';
  let discarding = false;
  return (chunk) => {
    let rest = chunk;
    for (;;) {
      const newline = rest.indexOf('\n');
      if (newline < 0) {
        if (discarding) return;
        buffer += rest;
        if (buffer.length > MAX_LINE_CHARS) {
          buffer = '';
          discarding = true;
          onTooLong();
        }
        return;
      }
      const piece = rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      if (discarding) {
        discarding = false;
        continue;
      }
      const line = (buffer + piece).replace(/\r$/, '');
      buffer = '';
      if (line.length > MAX_LINE_CHARS) {
        onTooLong();
        continue;
      }
      if (line.trim() !== '') onLine(line);
    }
  };
}

// ---- parsing ----------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRequestId(value: unknown): value is RequestId {
  return (
    (typeof value === 'number' && Number.isSafeInteger(value)) ||
    (typeof value === 'string' && value.length > 0 && value.length <= 64)
  );
}

export function isConnectorNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= 255;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export type ParsedRequest =
  | { readonly ok: true; readonly request: SimRequest }
  | { readonly ok: false; readonly id: RequestId | null; readonly error: string };

/** Pile side: one request line → request, or the reason it is refused (with its id when readable). */
export function parseRequest(line: string): ParsedRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { ok: false, id: null, error: `malformed JSON: ${(error as Error).message}` };
  }
  if (!isRecord(value)) return { ok: false, id: null, error: 'request must be a JSON object' };
  const id = isRequestId(value.id) ? value.id : null;
  if (id === null) return { ok: false, id: null, error: 'id must be a safe integer or a short string' };
  const op = value.op;
  if (typeof op !== 'string' || !(SIM_OPS as readonly string[]).includes(op)) {
    return { ok: false, id, error: `unknown op ${JSON.stringify(op)}` };
  }
  const simOp = op as SimOp;
  const { connector, maxEnergyWh, detail } = value;
  if (connector !== undefined && !isConnectorNumber(connector)) {
    return { ok: false, id, error: 'connector must be an integer 1..255' };
  }
  if (connector === undefined && simOp !== 'state') {
    return { ok: false, id, error: `op ${simOp} needs a connector` };
  }
  if (
    maxEnergyWh !== undefined &&
    (simOp !== 'start' || !isNonNegativeInteger(maxEnergyWh) || maxEnergyWh === 0)
  ) {
    return { ok: false, id, error: 'maxEnergyWh must be a positive integer (Wh), on start only' };
  }
  if (detail !== undefined && (simOp !== 'fault' || typeof detail !== 'string' || detail.length > 500)) {
    return { ok: false, id, error: 'detail must be a string of at most 500 characters, on fault only' };
  }
  return {
    ok: true,
    request: {
      id,
      op: simOp,
      connector: connector as number | undefined,
      maxEnergyWh: maxEnergyWh as number | undefined,
      detail: detail as string | undefined,
    },
  };
}

/** Checks a wire reading and turns it into the gateway's ConnectorReading. */
export function toConnectorReading(value: unknown): ConnectorReading | undefined {
  if (!isRecord(value)) return undefined;
  const { connector, contactorOn, plugged, faulted, meterWh, meterId, powerW } = value;
  if (
    !isConnectorNumber(connector) ||
    typeof contactorOn !== 'boolean' ||
    typeof plugged !== 'boolean' ||
    typeof faulted !== 'boolean' ||
    !isNonNegativeInteger(meterWh) ||
    typeof meterId !== 'string' ||
    !isNonNegativeInteger(powerW)
  ) {
    return undefined;
  }
  return { connector, contactorOn, plugged, faulted, meterWh, meterId, powerW };
}

function toConnectorState(value: unknown): SimConnectorState | undefined {
  const reading = toConnectorReading(value);
  if (reading === undefined || !isRecord(value)) return undefined;
  const { faultDetail, stopAtWh } = value;
  if (faultDetail !== null && typeof faultDetail !== 'string') return undefined;
  if (stopAtWh !== null && !isNonNegativeInteger(stopAtWh)) return undefined;
  return { ...(reading as WireReading), faultDetail, stopAtWh };
}

/** Client side: checks a `state` payload. */
export function toSimPileState(value: unknown): SimPileState | undefined {
  if (!isRecord(value) || !Array.isArray(value.connectors)) return undefined;
  const connectors: SimConnectorState[] = [];
  for (const item of value.connectors) {
    const state = toConnectorState(item);
    if (state === undefined) return undefined;
    connectors.push(state);
  }
  const { ratedPowerW, speed, requirePlug, clients } = value;
  if (
    !isNonNegativeInteger(ratedPowerW) ||
    typeof speed !== 'number' ||
    !(speed > 0) ||
    typeof requirePlug !== 'boolean' ||
    !isNonNegativeInteger(clients)
  ) {
    return undefined;
  }
  return { connectors, ratedPowerW, speed, requirePlug, clients };
}

export type ServerMessage =
  | {
      readonly type: 'response';
      readonly id: RequestId | null;
      readonly ok: true;
      readonly body: Record<string, unknown>;
    }
  | {
      readonly type: 'response';
      readonly id: RequestId | null;
      readonly ok: false;
      readonly code: SimErrorCode;
      readonly error: string;
    }
  | { readonly type: 'event'; readonly event: SimEvent }
  | { readonly type: 'invalid'; readonly reason: string };

const ERROR_CODES: readonly string[] = [
  'bad-request',
  'unknown-connector',
  'faulted',
  'unplugged',
  'internal',
];

/** Client side: one line from the pile → response, event, or why it makes no sense. */
export function parseServerMessage(line: string): ServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { type: 'invalid', reason: 'malformed JSON from sim pile' };
  }
  if (!isRecord(value)) return { type: 'invalid', reason: 'message is not an object' };
  if (typeof value.event === 'string') {
    switch (value.event) {
      case 'reading': {
        const reading = toConnectorReading(value.reading);
        if (reading === undefined) return { type: 'invalid', reason: 'bad reading event' };
        return { type: 'event', event: { event: 'reading', reading: reading as WireReading } };
      }
      case 'unplugged':
        if (!isConnectorNumber(value.connector)) return { type: 'invalid', reason: 'bad unplugged event' };
        return { type: 'event', event: { event: 'unplugged', connector: value.connector } };
      case 'fault':
        if (!isConnectorNumber(value.connector) || typeof value.detail !== 'string') {
          return { type: 'invalid', reason: 'bad fault event' };
        }
        return { type: 'event', event: { event: 'fault', connector: value.connector, detail: value.detail } };
      default:
        return { type: 'invalid', reason: `unknown event ${JSON.stringify(value.event)}` };
    }
  }
  const id = value.id === null ? null : isRequestId(value.id) ? value.id : undefined;
  if (id === undefined || typeof value.ok !== 'boolean') return { type: 'invalid', reason: 'bad response' };
  if (value.ok) return { type: 'response', id, ok: true, body: value };
  const code = typeof value.code === 'string' && ERROR_CODES.includes(value.code) ? value.code : 'internal';
  const error = typeof value.error === 'string' ? value.error : 'sim pile refused the request';
  return { type: 'response', id, ok: false, code: code as SimErrorCode, error };
}
