/**
 * Deterministic CBOR (RFC 8949 §4.2.1, core deterministic encoding) for every protocol message.
 *
 * A small strict codec for the protocol's data model only — unsigned/negative safe integers,
 * byte and text strings, arrays, maps with integer or text keys, booleans and null; no
 * floats, tags, undefined, big integers or indefinite lengths:
 * - the encoder always emits the core deterministic encoding (shortest heads, map keys in
 *   bytewise order of their encodings);
 * - the decoder accepts **only** that encoding, in one pass: a longer-than-needed head, keys
 *   out of order or repeated, or an indefinite length is NON_CANONICAL; every declared length
 *   is checked against the remaining input before anything is allocated; nesting depth, item
 *   count and input size are limited; every failure is a typed {@link ProtocolError}.
 *
 * Why not a library: the widely used `cbor2` (whose CDE mode we first used) measured
 * 20–40 µs per encode call even for tiny values and ~440 µs for a voucher's claims on this
 * machine, which dominated the gateway's per-tap cost. `cbor2` stays as the test oracle:
 * test/cbor.test.ts proves both codecs byte-identical and in agreement on random input.
 * @module
 */

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
  const out = new ByteWriter();
  writeItem(out, value);
  return out.finish();
}

class ByteWriter {
  #buf: Uint8Array;
  #len = 0;
  constructor(initialSize = 256) {
    this.#buf = new Uint8Array(initialSize);
  }
  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }
  byte(b: number): void {
    this.#reserve(1);
    this.#buf[this.#len++] = b;
  }
  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/** Writes a head with the shortest argument form (preferred serialization). */
function writeHead(out: ByteWriter, major: number, arg: number): void {
  const m = major << 5;
  if (arg < 24) out.byte(m | arg);
  else if (arg < 0x100) {
    out.byte(m | 24);
    out.byte(arg);
  } else if (arg < 0x10000) {
    out.byte(m | 25);
    out.byte(arg >>> 8);
    out.byte(arg & 0xff);
  } else if (arg < 0x100000000) {
    out.byte(m | 26);
    for (let shift = 24; shift >= 0; shift -= 8) out.byte((arg >>> shift) & 0xff);
  } else {
    out.byte(m | 27);
    const hi = Math.floor(arg / 0x100000000);
    const lo = arg >>> 0;
    for (let shift = 24; shift >= 0; shift -= 8) out.byte((hi >>> shift) & 0xff);
    for (let shift = 24; shift >= 0; shift -= 8) out.byte((lo >>> shift) & 0xff);
  }
}

const utf8Encoder = new TextEncoder();

function writeItem(out: ByteWriter, value: CborValue): void {
  if (typeof value === 'number') {
    if (value >= 0) writeHead(out, 0, value);
    else writeHead(out, 1, -1 - value);
  } else if (typeof value === 'string') {
    const text = utf8Encoder.encode(value);
    writeHead(out, 3, text.length);
    out.bytes(text);
  } else if (value instanceof Uint8Array) {
    writeHead(out, 2, value.length);
    out.bytes(value);
  } else if (typeof value === 'boolean') out.byte(value ? 0xf5 : 0xf4);
  else if (value === null) out.byte(0xf6);
  else if (Array.isArray(value)) {
    writeHead(out, 4, value.length);
    for (const item of value) writeItem(out, item);
  } else {
    // Core deterministic order: keys sorted by the bytewise order of their encodings.
    const entries = [...(value as CborMap)].map(([k, v]) => {
      const key = new ByteWriter(16);
      writeItem(key, k);
      return [key.finish(), v] as const;
    });
    entries.sort(([a], [b]) => compareBytes(a, b));
    writeHead(out, 5, entries.length);
    for (let i = 0; i < entries.length; i++) {
      const [key, v] = entries[i]!;
      if (i > 0 && compareBytes(entries[i - 1]![0], key) === 0) throw new TypeError('duplicate map key');
      out.bytes(key);
      writeItem(out, v);
    }
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
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
  const reader = new Reader(bytes, limits);
  const value = reader.item(0);
  if (reader.pos !== bytes.length) throw new ProtocolError(ErrorCode.MALFORMED, 'trailing bytes');
  return value;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Smallest argument each long head form may carry (else a shorter form exists). */
const MIN_ARGUMENT = [24, 0x100, 0x10000, 0x100000000];

class Reader {
  pos = 0;
  #items = 0;
  readonly #bytes: Uint8Array;
  readonly #limits: DecodeLimits;

  constructor(bytes: Uint8Array, limits: DecodeLimits) {
    this.#bytes = bytes;
    this.#limits = limits;
  }

  #remaining(): number {
    return this.#bytes.length - this.pos;
  }

  item(depth: number): CborValue {
    const bytes = this.#bytes;
    if (this.pos >= bytes.length) throw new ProtocolError(ErrorCode.MALFORMED, 'truncated');
    if (++this.#items > this.#limits.maxItems) throw new ProtocolError(ErrorCode.TOO_LARGE, 'too many items');
    const initial = bytes[this.pos++]!;
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (major === 7) return this.#simple(info);
    if (major === 6) throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'tags are not used');
    const arg = this.#argument(info);
    switch (major) {
      case 0:
        return arg;
      case 1:
        if (arg >= Number.MAX_SAFE_INTEGER)
          throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'integer out of range');
        return -1 - arg;
      case 2:
        return this.#take(arg).slice();
      case 3:
        try {
          return utf8Decoder.decode(this.#take(arg));
        } catch {
          throw new ProtocolError(ErrorCode.MALFORMED, 'text is not UTF-8');
        }
      case 4: {
        this.#enter(depth, arg);
        const out: CborValue[] = new Array(arg);
        for (let i = 0; i < arg; i++) out[i] = this.item(depth + 1);
        return out;
      }
      default: {
        this.#enter(depth, arg * 2);
        const out = new Map<CborKey, CborValue>();
        let previousKey: Uint8Array | undefined;
        for (let i = 0; i < arg; i++) {
          const keyStart = this.pos;
          const key = this.item(depth + 1);
          if (typeof key !== 'number' && typeof key !== 'string') {
            throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'map key is not an integer or text');
          }
          const keyBytes = bytes.subarray(keyStart, this.pos);
          if (previousKey && compareBytes(previousKey, keyBytes) >= 0) {
            throw new ProtocolError(ErrorCode.NON_CANONICAL, 'map keys out of order or repeated');
          }
          previousKey = keyBytes;
          out.set(key, this.item(depth + 1));
        }
        return out;
      }
    }
  }

  #argument(info: number): number {
    if (info < 24) return info;
    if (info === 31) throw new ProtocolError(ErrorCode.NON_CANONICAL, 'indefinite length');
    if (info > 27) throw new ProtocolError(ErrorCode.MALFORMED, 'reserved additional information');
    const size = 1 << (info - 24);
    if (size > this.#remaining()) throw new ProtocolError(ErrorCode.MALFORMED, 'truncated');
    let arg = 0;
    for (let i = 0; i < size; i++) arg = arg * 256 + this.#bytes[this.pos++]!;
    if (arg < MIN_ARGUMENT[info - 24]!)
      throw new ProtocolError(ErrorCode.NON_CANONICAL, 'argument not in shortest form');
    if (arg > Number.MAX_SAFE_INTEGER)
      throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'integer out of range');
    return arg;
  }

  #take(length: number): Uint8Array {
    if (length > this.#remaining()) throw new ProtocolError(ErrorCode.MALFORMED, 'string past end');
    const out = this.#bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /** Before reading a container's children: depth limit, and each child needs >= 1 byte. */
  #enter(depth: number, children: number): void {
    if (depth + 1 > this.#limits.maxDepth) throw new ProtocolError(ErrorCode.TOO_DEEP);
    if (children > this.#remaining()) throw new ProtocolError(ErrorCode.MALFORMED, 'container past end');
  }

  #simple(info: number): CborValue {
    if (info === 20) return false;
    if (info === 21) return true;
    if (info === 22) return null;
    if (info === 31) throw new ProtocolError(ErrorCode.MALFORMED, 'unexpected break');
    if (info >= 25 && info <= 27) throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'floats are not used');
    throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, 'simple value not used');
  }
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
