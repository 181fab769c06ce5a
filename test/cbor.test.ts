/**
 * RFC 8949 §4.2.1 core deterministic encoding: our codec (shared/src/cbor.ts) against an
 * independent implementation, `cbor2` in its CDE mode, used as the oracle:
 * - the encoder is byte-identical to cbor2's CDE encoder;
 * - on any input, where ours accepts, cbor2 (strict CDE options) accepts the same value;
 *   where cbor2 accepts a value of our data model, ours accepts it too;
 * - RFC 8949 Appendix A examples in our data model decode and encode as the RFC states.
 */

import { decode as oracleDecode, encode as oracleEncode } from 'cbor2';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CborValue,
  DEFAULT_LIMITS,
  decodeCbor,
  encodeCbor,
  fromHex,
  ProtocolError,
  toHex,
} from '../shared/src/index.ts';

function nesting(value: CborValue): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(nesting));
  if (value instanceof Map) return 1 + Math.max(0, ...[...value.values()].map(nesting));
  return 0;
}

const value: fc.Arbitrary<CborValue> = fc
  .letrec<{ v: CborValue }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.oneof(
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
        fc.maxSafeInteger(),
        fc.string({ unit: 'grapheme', maxLength: 12 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.boolean(),
        fc.constant(null),
      ),
      fc.array(tie('v'), { maxLength: 30 }),
      fc
        .array(fc.tuple(fc.oneof(fc.maxSafeInteger(), fc.string({ maxLength: 6 })), tie('v')), {
          maxLength: 8,
        })
        .map((e) => new Map(e)),
    ),
  }))
  .v.filter((v) => nesting(v) <= DEFAULT_LIMITS.maxDepth);

function inDataModel(v: unknown): boolean {
  if (typeof v === 'number') return Number.isSafeInteger(v);
  if (typeof v === 'string' || typeof v === 'boolean' || v === null || v instanceof Uint8Array) return true;
  if (Array.isArray(v)) return v.every(inDataModel);
  if (v instanceof Map) {
    return [...v].every(
      ([k, x]) =>
        (typeof k === 'string' || (typeof k === 'number' && Number.isSafeInteger(k))) && inDataModel(x),
    );
  }
  return false;
}

const ORACLE_STRICT = {
  cde: true,
  preferMap: true,
  rejectDuplicateKeys: true,
  rejectStreaming: true,
  rejectUndefined: true,
  rejectFloats: true,
  rejectSimple: true,
  tags: new Map(),
} as Parameters<typeof oracleDecode>[1];

function oursOrError(bytes: Uint8Array): CborValue | ProtocolError {
  try {
    return decodeCbor(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    throw err;
  }
}

describe('RFC 8949 §4.2.1 deterministic encoding, checked against cbor2 (CDE)', () => {
  it('encoder output is byte-identical to the oracle', () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(toHex(encodeCbor(v))).toBe(toHex(oracleEncode(v, { cde: true })));
      }),
      { numRuns: 1_000 },
    );
  });

  it('decoder returns what the oracle returns for canonical input', () => {
    fc.assert(
      fc.property(value, (v) => {
        const bytes = encodeCbor(v);
        expect(decodeCbor(bytes)).toEqual(oracleDecode(bytes, ORACLE_STRICT));
      }),
      { numRuns: 1_000 },
    );
  });

  it('on random and mutated input, both codecs accept the same values and refuse the rest', () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.tuple(value, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([v, i, x]) => {
        const b = encodeCbor(v);
        if (b.length > 0) b[i % b.length]! ^= x;
        return b;
      }),
    );
    fc.assert(
      fc.property(input, (bytes) => {
        const ours = oursOrError(bytes);
        let oracle: unknown;
        try {
          oracle = oracleDecode(bytes, ORACLE_STRICT);
        } catch {
          oracle = undefined;
        }
        if (!(ours instanceof ProtocolError)) expect(oracle).toEqual(ours);
        else if (
          oracle !== undefined &&
          inDataModel(oracle) &&
          nesting(oracle as CborValue) <= DEFAULT_LIMITS.maxDepth
        ) {
          throw new Error(`oracle accepts ${toHex(bytes)} but ours refuses: ${ours.message}`);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it('RFC 8949 Appendix A examples within the data model', () => {
    const examples: [string, CborValue][] = [
      ['00', 0],
      ['17', 23],
      ['1818', 24],
      ['1903e8', 1000],
      ['1a000f4240', 1_000_000],
      ['1b000000e8d4a51000', 1_000_000_000_000],
      ['20', -1],
      ['3863', -100],
      ['3903e7', -1000],
      ['40', new Uint8Array(0)],
      ['4401020304', Uint8Array.of(1, 2, 3, 4)],
      ['60', ''],
      ['6161', 'a'],
      ['6449455446', 'IETF'],
      ['62c3bc', 'ü'],
      ['63e6b0b4', '水'],
      ['f4', false],
      ['f5', true],
      ['f6', null],
      ['80', []],
      ['83010203', [1, 2, 3]],
      ['8301820203820405', [1, [2, 3], [4, 5]]],
      ['a0', new Map()],
      [
        'a201020304',
        new Map([
          [1, 2],
          [3, 4],
        ]),
      ],
      [
        'a26161016162820203',
        new Map<string, CborValue>([
          ['a', 1],
          ['b', [2, 3]],
        ]),
      ],
    ];
    for (const [hex, v] of examples) {
      expect(toHex(encodeCbor(v)), hex).toBe(hex);
      expect(decodeCbor(fromHex(hex)), hex).toEqual(v);
    }
  });

  it('RFC 8949 Appendix A examples outside the data model are refused with a type error', () => {
    for (const hex of [
      'f90000',
      'fb3ff199999999999a',
      'c074323031332d30332d32315432303a30343a30305a',
      'f7',
      'f0',
      'c249010000000000000000',
    ]) {
      expect(oursOrError(fromHex(hex)), hex).toMatchObject({ code: 104 });
    }
  });
});
