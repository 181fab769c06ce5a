/**
 * The data segments of a QR code (numeric, alphanumeric, byte; ECI and structured-append headers
 * skipped) turned into text. All segments' bytes are read as one UTF-8 string, as our pile codes
 * are written. Kanji segments are not supported.
 * @module
 */

const ALPHANUMERIC = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';

/** Text of the data codewords of a code of `version`, or undefined when the stream is malformed. */
export function decodeSegments(data: Uint8Array, version: number): string | undefined {
  let position = 0;
  const read = (count: number): number => {
    let value = 0;
    for (let i = 0; i < count; i++, position++) {
      const byte = data[position >> 3];
      if (byte === undefined) throw new RangeError('past the end');
      value = (value << 1) | ((byte >> (7 - (position & 7))) & 1);
    }
    return value;
  };
  // Bits of the character count for numeric, alphanumeric, byte by version range.
  const countBits = version < 10 ? [10, 9, 8] : version < 27 ? [12, 11, 16] : [14, 13, 16];
  const bytes: number[] = [];
  try {
    while (data.length * 8 - position >= 4) {
      const mode = read(4);
      if (mode === 0) break;
      if (mode === 1) {
        for (let left = read(countBits[0]!); left > 0; left -= 3) {
          const digits = Math.min(left, 3);
          const value = read(digits * 3 + 1);
          if (value >= 10 ** digits) return undefined;
          for (const c of value.toString().padStart(digits, '0')) bytes.push(c.charCodeAt(0));
        }
      } else if (mode === 2) {
        for (let left = read(countBits[1]!); left > 0; left -= 2) {
          const pair = left > 1;
          const value = read(pair ? 11 : 6);
          const chars = pair ? [Math.floor(value / 45), value % 45] : [value];
          for (const c of chars) {
            const char = ALPHANUMERIC[c];
            if (char === undefined) return undefined;
            bytes.push(char.charCodeAt(0));
          }
        }
      } else if (mode === 4) {
        for (let left = read(countBits[2]!); left > 0; left--) bytes.push(read(8));
      } else if (mode === 7) {
        // ECI designator: 1, 2 or 3 bytes by its leading bits. Text is read as UTF-8 regardless.
        const first = read(8);
        if (first & 0x80) read(first & 0x40 ? 16 : 8);
      } else if (mode === 3) read(16);
      else if (mode === 9) read(8);
      else if (mode !== 5) return undefined;
    }
  } catch {
    return undefined;
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
