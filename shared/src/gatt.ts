/**
 * GATT layout and framing: how protocol messages map onto one BLE service.
 *
 * | characteristic | properties        | carries                                              |
 * |----------------|-------------------|------------------------------------------------------|
 * | hello          | read              | the signed hello (long read; same bytes per link)    |
 * | control        | write (with resp.)| phone → gateway PDUs                                  |
 * | events         | notify only       | gateway → phone PDUs (never read by the app)          |
 *
 * Facts that shape this: Web Bluetooth has no MTU API and refuses writes over 512 B; a write
 * longer than MTU−3 goes out as prepared writes; reads are long reads (bleno calls the read
 * handler once per blob); a notification carries at most MTU−3 bytes (bleno truncates
 * silently). So every PDU is sent as a message = 2-byte big-endian length ‖ PDU, cut into
 * units (≤ 512 B per write, ≤ MTU−3 B per notification), and reassembled with a size limit
 * and a deadline between units. ATT error codes never reach a web page, so every error is
 * a PDU too.
 *
 * PDU = type byte ‖ CBOR body:  0x01 presentation (p→g), 0x02 secure frame (both),
 * 0x03 rejection (g→p, plaintext CBOR [code]: sent only when no session keys exist yet).
 * @module
 */

import { concatBytes } from './bytes.ts';
import { asArray, asUint, decodeCbor, encodeCbor } from './cbor.ts';
import { ErrorCode, type ErrorCode as ErrorCodeT, isErrorCode, ProtocolError } from './errors.ts';

export const SERVICE_UUID = '7a1c0001-5d2e-4f8a-9b3c-2e6f1d0c9a71';
export const HELLO_CHARACTERISTIC_UUID = '7a1c0002-5d2e-4f8a-9b3c-2e6f1d0c9a71';
export const CONTROL_CHARACTERISTIC_UUID = '7a1c0003-5d2e-4f8a-9b3c-2e6f1d0c9a71';
export const EVENTS_CHARACTERISTIC_UUID = '7a1c0004-5d2e-4f8a-9b3c-2e6f1d0c9a71';

/** Web Bluetooth refuses longer writes. */
export const MAX_WRITE_BYTES = 512;
/** Largest message (length prefix excluded) either side reassembles. */
export const MAX_MESSAGE_BYTES = 65_535;
/** Deadline between two units of one message. */
export const REASSEMBLY_TIMEOUT_MS = 2_000;
const LENGTH_PREFIX = 2;

export const PduType = { PRESENTATION: 0x01, FRAME: 0x02, REJECTION: 0x03 } as const;
export type PduType = (typeof PduType)[keyof typeof PduType];

export interface Pdu {
  readonly type: PduType;
  readonly body: Uint8Array;
}

export function encodePdu(type: PduType, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = type;
  out.set(body, 1);
  return out;
}

export function decodePdu(bytes: Uint8Array): Pdu {
  if (bytes.length < 2) throw new ProtocolError(ErrorCode.MALFORMED, 'empty PDU');
  const type = bytes[0]!;
  if (type !== PduType.PRESENTATION && type !== PduType.FRAME && type !== PduType.REJECTION) {
    throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE, `PDU type ${type}`);
  }
  return { type, body: bytes.subarray(1) };
}

export function encodeRejection(code: ErrorCodeT): Uint8Array {
  return encodePdu(PduType.REJECTION, encodeCbor([code]));
}

export function decodeRejection(body: Uint8Array): ErrorCodeT {
  const [code] = asArray(decodeCbor(body, { maxBytes: 16, maxDepth: 1, maxItems: 2 }), 'rejection', 1);
  const value = asUint(code, 'rejection code', 999);
  if (!isErrorCode(value)) throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `unknown error code ${value}`);
  return value;
}

/** Units for one message: length prefix then the PDU, cut at `unitSize` bytes. */
export function chunkMessage(pdu: Uint8Array, unitSize: number): Uint8Array[] {
  if (pdu.length > MAX_MESSAGE_BYTES) throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE);
  if (!Number.isInteger(unitSize) || unitSize < LENGTH_PREFIX + 1)
    throw new RangeError('unit size too small');
  const framed = new Uint8Array(LENGTH_PREFIX + pdu.length);
  framed[0] = pdu.length >> 8;
  framed[1] = pdu.length & 0xff;
  framed.set(pdu, LENGTH_PREFIX);
  const units: Uint8Array[] = [];
  for (let i = 0; i < framed.length; i += unitSize) units.push(framed.subarray(i, i + unitSize));
  return units;
}

/**
 * Reassembles units into messages. Pure: the caller passes its monotonic clock. Any error
 * leaves the reassembler empty; the transport drops the link on errors.
 */
export class Reassembler {
  readonly #maxMessageBytes: number;
  readonly #timeoutMs: number;
  #buffer: Uint8Array | undefined;
  #filled = 0;
  #lastUnitAt = 0;

  constructor(maxMessageBytes = MAX_MESSAGE_BYTES, timeoutMs = REASSEMBLY_TIMEOUT_MS) {
    this.#maxMessageBytes = Math.min(maxMessageBytes, MAX_MESSAGE_BYTES);
    this.#timeoutMs = timeoutMs;
  }

  /** True while part of a message has arrived. */
  get pending(): boolean {
    return this.#buffer !== undefined;
  }

  /** Whether a partial message has waited past its deadline at `nowMs`. */
  expired(nowMs: number): boolean {
    return this.#buffer !== undefined && nowMs - this.#lastUnitAt > this.#timeoutMs;
  }

  reset(): void {
    this.#buffer = undefined;
    this.#filled = 0;
  }

  /** Feeds one unit; returns the PDU when a message completes. */
  push(unit: Uint8Array, nowMs: number): Uint8Array | undefined {
    try {
      return this.#push(unit, nowMs);
    } catch (err) {
      this.reset();
      throw err;
    }
  }

  #push(unit: Uint8Array, nowMs: number): Uint8Array | undefined {
    if (unit.length === 0) throw new ProtocolError(ErrorCode.MALFORMED, 'empty unit');
    if (this.#buffer !== undefined && this.expired(nowMs))
      throw new ProtocolError(ErrorCode.REASSEMBLY_TIMEOUT);
    this.#lastUnitAt = nowMs;
    let data = unit;
    if (this.#buffer === undefined) {
      if (unit.length < LENGTH_PREFIX)
        throw new ProtocolError(ErrorCode.MALFORMED, 'unit shorter than length prefix');
      const length = (unit[0]! << 8) | unit[1]!;
      if (length === 0) throw new ProtocolError(ErrorCode.MALFORMED, 'zero-length message');
      if (length > this.#maxMessageBytes)
        throw new ProtocolError(ErrorCode.FRAME_TOO_LARGE, `${length} bytes`);
      this.#buffer = new Uint8Array(length);
      this.#filled = 0;
      data = unit.subarray(LENGTH_PREFIX);
    }
    const buffer = this.#buffer;
    if (this.#filled + data.length > buffer.length)
      throw new ProtocolError(ErrorCode.MALFORMED, 'unit overruns message');
    buffer.set(data, this.#filled);
    this.#filled += data.length;
    if (this.#filled < buffer.length) return undefined;
    this.reset();
    return buffer;
  }
}

/**
 * An ATT long read as a central performs it: blobs of at most MTU−1 bytes from increasing
 * offsets until a short one arrives (an exactly full last blob costs one more, empty, read).
 */
export async function longRead(
  readBlob: (offset: number) => Promise<Uint8Array>,
  mtu: number,
): Promise<Uint8Array> {
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (;;) {
    const blob = await readBlob(offset);
    if (blob.length > mtu - 1) throw new ProtocolError(ErrorCode.MALFORMED, 'blob longer than MTU − 1');
    blobs.push(blob);
    offset += blob.length;
    if (blob.length < mtu - 1) return concatBytes(...blobs);
  }
}
