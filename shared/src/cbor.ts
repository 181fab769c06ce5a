/**
 * Deterministic CBOR (RFC 8949 §4.2.1, core deterministic encoding) for every protocol message.
 *
 * Encoding and decoding use the `cbor2` library in its CDE mode. On top of it this module
 * - restricts values to the protocol's data model (unsigned/negative safe integers, byte and
 *   text strings, arrays, maps with integer or text keys, booleans, null — no floats, tags,
 *   undefined or big integers);
 * - pre-scans the item headers before decoding, so hostile input cannot make the decoder
 *   allocate or recurse beyond stated limits (`maxBytes`, `maxDepth`, `maxItems`);
 * - rejects any input that is not byte-for-byte the canonical encoding of what it decodes to
 *   (re-encode and compare), because signatures and hashes are computed over exact bytes;
 * - turns every failure into a typed {@link ProtocolError}.
 * @module
 */

import { decode, encode } from 'cbor2';
import { equalBytes } from './bytes.ts';
import { ErrorCode, ProtocolError } from './errors.ts';

export type CborKey = number | string;
export type CborValue =
  | number
  | string
  | boolean
  | null
  | Uint8Array
  | readonly CborValue[]
  | ReadonlyMap<CborKey, CborValue>;
export type CborMap = ReadonlyMap<CborKey, CborValue>;

export interface DecodeLimits {
  /** Largest accepted input in bytes. */
  readonly maxBytes: number;
  /** Deepest accepted nesting of arrays and maps (a top-level array is depth 1). */
  readonly maxDepth: number;
  /** Most data items (of any kind) accepted in one input. */
  readonly maxItems: number;
}

export const DEFAULT_LIMITS: DecodeLimits = { maxBytes: 65_536, maxDepth: 8, maxItems: 4_096 };

/** Encodes a value of the protocol data model in core deterministic encoding. */
export function encodeCbor(value: CborValue): Uint8Array {
  assertDataModel(value, 0);
  return encode(value, { cde: true });
}

function assertDataModel(value: unknown, depth: number): void {
  if (depth > 64) throw new TypeError('value nested too deeply to encode');
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value))
      throw new TypeError(`cannot encode non-integer or unsafe number ${value}`);
    return;
  }
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return;
  if (value instanceof Uint8Array) return;
  if (Array.isArray(value)) {
    for (const v of value) assertDataModel(v, depth + 1);
    return;
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      if (typeof k !== 'string' && !(typeof k === 'number' && Number.isSafeInteger(k))) {
        throw new TypeError('map keys must be integers or text');
      }
      assertDataModel(v, depth + 1);
    }
    return;
  }
  throw new TypeError(`value of type ${typeof value} is outside the protocol data model`);
}

/**
 * Decodes exactly one canonical CBOR item filling all of `bytes`.
 * @throws ProtocolError TOO_LARGE, TOO_DEEP, MALFORMED, NON_CANONICAL or UNEXPECTED_TYPE
 */
export function decodeCbor(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): CborValue {
  if (!(bytes instanceof Uint8Array)) throw new ProtocolError(ErrorCode.MALFORMED, 'input is not bytes');
  if (bytes.length > limits.maxBytes) {
    throw new ProtocolError(ErrorCode.TOO_LARGE, `${bytes.length} > ${limits.maxBytes} bytes`);
  }
  scanHeaders(bytes, limits);
  let value: unknown;
  try {
    value = decode(bytes, {
      cde: true,
      preferMap: true,
      rejectDuplicateKeys: true,
      rejectStreaming: true,
      rejectUndefined: true,
      rejectFloats: true,
      rejectSimple: true,
      // cbor2 counts leaves as a level too; the header scan above enforces the real limit.
      maxDepth: limits.maxDepth * 2 + 4,
      // No tag is part of the protocol: decode every tag as a plain Tag object and refuse it below.
      tags: new Map(),
    } as Parameters<typeof decode>[1]);
  } catch (err) {
    throw classifyDecoderError(err);
  }
  checkDataModel(value, 0, limits.maxDepth);
  // The library's CDE checks cover lengths and key order; this comparison covers everything
  // else (e.g. a text string that is not UTF-8 normalised the same way) with one rule.
  let again: Uint8Array;
  try {
    again = encode(value, { cde: true });
  } catch {
    throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'value cannot be re-encoded');
  }
  if (!equalBytes(again, bytes)) throw new ProtocolError(ErrorCode.NON_CANONICAL);
  return value as CborValue;
}

function classifyDecoderError(err: unknown): ProtocolError {
  if (err instanceof ProtocolError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/depth/i.test(message)) return new ProtocolError(ErrorCode.TOO_DEEP, message);
  if (/(long|out of order|duplicate|preferred|streaming|sort|canonical|indefinite)/i.test(message)) {
    return new ProtocolError(ErrorCode.NON_CANONICAL, message);
  }
  if (/(float|simple|undefined|bigint|tag)/i.test(message)) {
    return new ProtocolError(ErrorCode.UNEXPECTED_TYPE, message);
  }
  return new ProtocolError(ErrorCode.MALFORMED, message);
}

function checkDataModel(value: unknown, depth: number, maxDepth: number): void {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value))
      throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'non-integer number');
    return;
  }
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return;
  if (value instanceof Uint8Array) return;
  if (Array.isArray(value) || value instanceof Map) {
    if (depth + 1 > maxDepth) throw new ProtocolError(ErrorCode.TOO_DEEP);
    if (Array.isArray(value)) {
      for (const v of value) checkDataModel(v, depth + 1, maxDepth);
    } else {
      for (const [k, v] of value as Map<unknown, unknown>) {
        if (typeof k !== 'string' && !(typeof k === 'number' && Number.isSafeInteger(k))) {
          throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'map key is not an integer or text');
        }
        checkDataModel(v, depth + 1, maxDepth);
      }
    }
    return;
  }
  throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `unsupported CBOR item (${typeof value})`);
}

/**
 * Walks item headers without building values: checks that every declared length fits in the
 * remaining input, and that depth and item count stay within limits. Iterative, O(n).
 */
function scanHeaders(bytes: Uint8Array, limits: DecodeLimits): void {
  // Stack of "items still expected" per open container.
  const pending: number[] = [1];
  let offset = 0;
  let items = 0;
  while (pending.length > 0) {
    if (pending[pending.length - 1] === 0) {
      pending.pop();
      continue;
    }
    pending[pending.length - 1]!--;
    if (offset >= bytes.length) throw new ProtocolError(ErrorCode.MALFORMED, 'truncated');
    if (++items > limits.maxItems) throw new ProtocolError(ErrorCode.TOO_LARGE, 'too many items');
    const initial = bytes[offset++]!;
    const major = initial >> 5;
    const info = initial & 0x1f;
    let arg: number;
    if (info < 24) arg = info;
    else if (info <= 27) {
      const size = 1 << (info - 24);
      if (offset + size > bytes.length) throw new ProtocolError(ErrorCode.MALFORMED, 'truncated');
      arg = 0;
      for (let i = 0; i < size; i++) arg = arg * 256 + bytes[offset + i]!;
      offset += size;
    } else if (info === 31) {
      throw new ProtocolError(ErrorCode.NON_CANONICAL, 'indefinite length');
    } else {
      throw new ProtocolError(ErrorCode.MALFORMED, 'reserved additional information');
    }
    switch (major) {
      case 0:
      case 1:
        break;
      case 2:
      case 3:
        if (arg > bytes.length - offset) throw new ProtocolError(ErrorCode.MALFORMED, 'string past end');
        offset += arg;
        break;
      case 4:
      case 5: {
        const children = major === 4 ? arg : arg * 2;
        // Each child needs at least one byte: a cheap bound that stops huge declared lengths.
        if (children > bytes.length - offset)
          throw new ProtocolError(ErrorCode.MALFORMED, 'container past end');
        if (pending.length >= limits.maxDepth + 1) throw new ProtocolError(ErrorCode.TOO_DEEP);
        pending.push(children);
        break;
      }
      case 6:
        throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'tags are not used');
      default:
        if (info >= 25) throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'floats are not used');
        if (arg !== 20 && arg !== 21 && arg !== 22) {
          throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'simple value not used');
        }
    }
  }
  if (offset !== bytes.length) throw new ProtocolError(ErrorCode.MALFORMED, 'trailing bytes');
}

// ---- typed field readers used by message decoders -------------------------------------------

function fail(what: string): never {
  throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, what);
}

export function asArray(
  value: CborValue | undefined,
  what: string,
  min: number,
  max = min,
): readonly CborValue[] {
  if (!Array.isArray(value)) fail(`${what}: expected array`);
  const arr = value as readonly CborValue[];
  if (arr.length < min || arr.length > max)
    fail(`${what}: expected ${min}..${max} elements, got ${arr.length}`);
  return arr;
}

export function asMap(value: CborValue | undefined, what: string): CborMap {
  if (!(value instanceof Map)) fail(`${what}: expected map`);
  return value as CborMap;
}

export function asUint(value: CborValue | undefined, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
    fail(`${what}: expected unsigned integer <= ${max}`);
  }
  return value;
}

export function asInt(value: CborValue | undefined, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) fail(`${what}: expected integer`);
  return value;
}

export function asBytes(value: CborValue | undefined, what: string, min: number, max = min): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(`${what}: expected byte string`);
  if (value.length < min || value.length > max)
    fail(`${what}: expected ${min}..${max} bytes, got ${value.length}`);
  return value;
}

export function asText(
  value: CborValue | undefined,
  what: string,
  pattern: RegExp,
  maxLength: number,
): string {
  if (typeof value !== 'string' || value.length > maxLength || !pattern.test(value))
    fail(`${what}: invalid text`);
  return value;
}

export function asBool(value: CborValue | undefined, what: string): boolean {
  if (typeof value !== 'boolean') fail(`${what}: expected boolean`);
  return value;
}

/**
 * Reads a map whose keys must all be in `allowed`; unknown keys are refused so that a signed
 * message cannot carry fields one party reads and another ignores.
 */
export function asClosedMap(
  value: CborValue | undefined,
  what: string,
  allowed: readonly CborKey[],
): CborMap {
  const map = asMap(value, what);
  for (const key of map.keys()) if (!allowed.includes(key)) fail(`${what}: unknown key ${String(key)}`);
  return map;
}
