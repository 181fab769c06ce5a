/**
 * From a sampled module grid to text: format information (BCH, nearest valid word), unmasking,
 * the zig-zag codeword order, de-interleaving of the EC blocks, Reed–Solomon correction and the
 * bitstream. Versions 1–10, all four EC levels, all eight masks.
 * @module
 */

import { decodeSegments } from './qr-bitstream.ts';
import { correctBlock } from './qr-reed-solomon.ts';

export const MAX_VERSION = 10;

// Per version 1–10, indexed by the level's format bits (M=0, L=1, H=2, Q=3): EC codewords per
// block and number of blocks (ISO/IEC 18004 table 9).
const ECC_PER_BLOCK = [
  [10, 16, 26, 18, 24, 16, 18, 22, 22, 26],
  [7, 10, 15, 20, 26, 18, 20, 24, 30, 18],
  [17, 28, 22, 16, 22, 28, 26, 26, 24, 28],
  [13, 22, 18, 26, 18, 24, 18, 22, 20, 24],
];
const BLOCKS = [
  [1, 1, 1, 2, 2, 4, 4, 4, 5, 5],
  [1, 1, 1, 1, 1, 2, 2, 2, 2, 4],
  [1, 1, 2, 4, 4, 4, 5, 6, 8, 8],
  [1, 1, 2, 2, 4, 4, 6, 6, 8, 8],
];

const MASKS: ((x: number, y: number) => boolean)[] = [
  (x, y) => (x + y) % 2 === 0,
  (_, y) => y % 2 === 0,
  (x) => x % 3 === 0,
  (x, y) => (x + y) % 3 === 0,
  (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
  (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
  (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
  (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
];

/** Centre coordinates of the alignment patterns of `version` along one axis. */
export function alignmentCentres(version: number): number[] {
  if (version < 2) return [];
  const count = Math.floor(version / 7) + 2;
  const step = Math.floor((version * 8 + count * 3 + 5) / (count * 4 - 4)) * 2;
  const result = [6];
  for (let i = 0, pos = version * 4 + 10; i < count - 1; i++, pos -= step) result.splice(1, 0, pos);
  return result;
}

/** The 15-bit format word (masked) of the 5 data bits. */
function formatWord(data: number): number {
  let rem = data;
  for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  return ((data << 10) | rem) ^ 0x5412;
}

function bitCount(v: number): number {
  let n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

/** Modules that carry no data: finders with separators and format areas, timing, alignment, version. */
function functionModules(version: number): Uint8Array {
  const size = version * 4 + 17;
  const marked = new Uint8Array(size * size);
  const fill = (x0: number, y0: number, w: number, h: number) => {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) marked[y * size + x] = 1;
  };
  fill(0, 0, 9, 9);
  fill(size - 8, 0, 8, 9);
  fill(0, size - 8, 9, 8);
  fill(6, 0, 1, size);
  fill(0, 6, size, 1);
  const centres = alignmentCentres(version);
  for (const cy of centres)
    for (const cx of centres) {
      const last = centres.length - 1;
      const onFinder =
        (cx === 6 && cy === 6) || (cx === 6 && cy === centres[last]) || (cy === 6 && cx === centres[last]);
      if (!onFinder) fill(cx - 2, cy - 2, 5, 5);
    }
  if (version >= 7) {
    fill(size - 11, 0, 3, 6);
    fill(0, size - 11, 6, 3);
  }
  return marked;
}

/** Decodes the modules (`dark(x, y)`, x = column) of a code of `version`; undefined when it fails. */
export function decodeModules(dark: (x: number, y: number) => boolean, version: number): string | undefined {
  const size = version * 4 + 17;
  const bit = (x: number, y: number) => (dark(x, y) ? 1 : 0);
  let copy1 = 0;
  let copy2 = 0;
  for (let i = 0; i < 15; i++) {
    const x1 = i < 6 ? 8 : i < 8 ? 8 : i === 8 ? 7 : 14 - i;
    const y1 = i < 6 ? i : i === 6 ? 7 : 8;
    copy1 |= bit(x1, y1) << i;
    copy2 |= (i < 8 ? bit(size - 1 - i, 8) : bit(8, size - 15 + i)) << i;
  }
  let best = -1;
  let bestDistance = 4;
  for (let data = 0; data < 32; data++) {
    const word = formatWord(data);
    const distance = Math.min(bitCount(word ^ copy1), bitCount(word ^ copy2));
    if (distance < bestDistance) {
      bestDistance = distance;
      best = data;
    }
  }
  if (best < 0) return undefined;
  const level = best >> 3;
  const mask = MASKS[best & 7]!;
  const isFunction = functionModules(version);
  const rawBits: number[] = [];
  for (let right = size - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5;
    const upward = ((right + 1) & 2) === 0;
    for (let vert = 0; vert < size; vert++) {
      const y = upward ? size - 1 - vert : vert;
      for (let j = 0; j < 2; j++) {
        const x = right - j;
        if (!isFunction[y * size + x]) rawBits.push(bit(x, y) ^ (mask(x, y) ? 1 : 0));
      }
    }
  }
  const total = rawBits.length >> 3;
  const codewords = new Uint8Array(total);
  for (let i = 0; i < total * 8; i++) codewords[i >> 3]! |= rawBits[i]! << (7 - (i & 7));
  const ecc = ECC_PER_BLOCK[level]![version - 1]!;
  const blockCount = BLOCKS[level]![version - 1]!;
  const shortCount = blockCount - (total % blockCount);
  const shortLength = Math.floor(total / blockCount);
  const shortData = shortLength - ecc;
  // Same order as the encoder: data columns (short blocks skip the last one), then EC columns.
  const blocks = Array.from(
    { length: blockCount },
    (_, j) => new Uint8Array(j < shortCount ? shortLength : shortLength + 1),
  );
  let k = 0;
  for (let i = 0; i <= shortLength; i++)
    for (let j = 0; j < blockCount; j++) {
      if (i === shortData && j < shortCount) continue;
      const index = i > shortData && j < shortCount ? i - 1 : i;
      blocks[j]![index] = codewords[k++]!;
    }
  const data: number[] = [];
  for (const block of blocks) {
    if (!correctBlock(block, ecc)) return undefined;
    data.push(...block.subarray(0, block.length - ecc));
  }
  return decodeSegments(new Uint8Array(data), version);
}
