/**
 * The PWA's own QR decoder (the fallback where the browser has no BarcodeDetector): codes made by
 * the qrencode CLI, rendered into RGBA frames at several scales, positions and rotations, with
 * noise, uneven light and damaged modules, must read back as the text that was encoded.
 */

import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeQr } from '../../web/src/scan/qr-decoder.ts';

type Level = 'L' | 'M' | 'Q' | 'H';

/** Module matrix (true = dark, no quiet zone) of `text` as qrencode makes it. */
function qrModules(text: string, level: Level = 'M', version?: number): boolean[][] {
  const args = [
    '-t',
    'ASCII',
    '-m',
    '0',
    '-l',
    level,
    ...(version ? ['-v', String(version)] : []),
    '--',
    text,
  ];
  const ascii = execFileSync('qrencode', args, { encoding: 'utf8' });
  return ascii
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => Array.from({ length: line.length / 2 }, (_, i) => line[2 * i] === '#'));
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Render {
  scale: number;
  /** Rotation in degrees about the code's centre. */
  angle?: number;
  /** Perspective: the scale grows by this fraction from the frame's centre to its bottom edge. */
  tilt?: number;
  /** Centre of the code in the frame, as fractions of the frame size. */
  at?: [number, number];
  /** Gaussian-ish noise amplitude in grey levels. */
  noise?: number;
  /** Light falling from 1 on the left to `1 - shade` on the right. */
  shade?: number;
  seed?: number;
}

/** An RGBA frame showing `modules` (4-module quiet zone, black on white), 2×2 supersampled. */
function renderFrame(modules: boolean[][], options: Render) {
  const { scale, angle = 0, tilt = 0, at = [0.5, 0.5], noise = 0, shade = 0, seed = 1 } = options;
  const n = modules.length;
  const side = Math.ceil((n + 8) * scale * 1.5);
  const width = side + 40;
  const height = side;
  const rgba = new Uint8ClampedArray(width * height * 4);
  const rand = random(seed);
  const cos = Math.cos((angle * Math.PI) / 180);
  const sin = Math.sin((angle * Math.PI) / 180);
  const cx = at[0] * width;
  const cy = at[1] * height;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let dark = 0;
      for (const [sx, sy] of [
        [0.25, 0.25],
        [0.75, 0.25],
        [0.25, 0.75],
        [0.75, 0.75],
      ] as const) {
        // A homography: frame point (x, y) shows the code's point (x, y) / w.
        const w = 1 + (tilt * (y + sy - cy)) / (height / 2);
        const dx = (x + sx - cx) / w;
        const dy = (y + sy - cy) / w;
        const u = Math.floor((cos * dx + sin * dy) / scale + n / 2);
        const v = Math.floor((-sin * dx + cos * dy) / scale + n / 2);
        if (modules[v]?.[u]) dark++;
      }
      const light = 1 - (shade * x) / width;
      const grey = (230 - (dark / 4) * 200) * light + (rand() + rand() + rand() - 1.5) * noise;
      const i = (y * width + x) * 4;
      rgba[i] = rgba[i + 1] = rgba[i + 2] = grey;
      rgba[i + 3] = 255;
    }
  return { rgba, width, height };
}

function decode(modules: boolean[][], options: Render): string | undefined {
  const { rgba, width, height } = renderFrame(modules, options);
  return decodeQr(rgba, width, height);
}

const TEXTS = [
  'pilepass:gw-demo-01/2',
  'https://app.example.com/#/pile/gw-demo-01/2',
  'PILEPASS:GW-DEMO-01/2',
  '0123456789012345',
  'Ladesäule №7 — 充电桩 2',
];

describe('QR decoder', () => {
  it('reads every version 1–10 at every EC level (byte, alphanumeric and numeric segments)', () => {
    let decoded = 0;
    for (let version = 1; version <= 10; version++)
      for (const level of ['L', 'M', 'Q', 'H'] as const) {
        const text = version < 3 ? 'PILE 1' : `pilepass:gw-${'x'.repeat(version * 3)}/${version}`;
        const modules = qrModules(text, level, version);
        expect(modules.length).toBe(version * 4 + 17);
        expect(decode(modules, { scale: 4, seed: version })).toBe(text);
        decoded++;
      }
    expect(decoded).toBe(40);
  });

  it('reads our pile codes at 3–8 px a module, anywhere in the frame', () => {
    for (const text of TEXTS)
      for (const level of ['L', 'M', 'Q', 'H'] as const) {
        const modules = qrModules(text, level);
        for (const [scale, at] of [
          [3, [0.5, 0.5]],
          [5, [0.4, 0.6]],
          [8, [0.6, 0.45]],
        ] as const)
          expect(decode(modules, { scale, at: [...at] }), `${text} ${level} ${scale}px`).toBe(text);
      }
  });

  it('reads the code turned a quarter, half and three quarters, and tilted 10–15°', () => {
    const text = 'https://app.example.com/#/pile/gw-demo-01/2';
    const modules = qrModules(text, 'M');
    for (const angle of [90, 180, 270, 10, -12, 15, 195])
      expect(decode(modules, { scale: 5, angle }), `${angle}°`).toBe(text);
  });

  it('reads a code seen at an angle (perspective fixed by the alignment pattern)', () => {
    const text = 'https://app.example.com/#/pile/gw-demo-01/2';
    for (const [version, tilt, angle] of [
      [3, 0.25, 5],
      [3, -0.25, 95],
      [5, 0.25, 185],
      [5, -0.25, 5],
      [7, 0.25, 275],
      [7, -0.25, 5],
      [10, 0.15, 5],
      [10, -0.15, 95],
    ] as const)
      expect(
        decode(qrModules(text, 'L', version), { scale: 5, tilt, angle }),
        `v${version} tilt ${tilt}`,
      ).toBe(text);
  });

  it('reads through noise and light falling off across the code', () => {
    const text = 'pilepass:gw-demo-01/2';
    for (const level of ['L', 'H'] as const) {
      const modules = qrModules(text, level, 3);
      expect(decode(modules, { scale: 5, noise: 40, seed: 7 })).toBe(text);
      expect(decode(modules, { scale: 5, shade: 0.7 })).toBe(text);
      expect(decode(modules, { scale: 6, noise: 30, shade: 0.6, angle: 8, seed: 3 })).toBe(text);
    }
  });

  it('corrects damaged modules with Reed–Solomon, and gives up when damage exceeds what the level can fix', () => {
    const text = 'https://app.example.com/#/pile/gw-demo-01/2';
    const modules = qrModules(text, 'H', 5);
    const size = modules.length;
    const isData = (x: number, y: number) =>
      !((x < 9 && y < 9) || (x > size - 9 && y < 9) || (x < 9 && y > size - 9) || x === 6 || y === 6) &&
      !(x >= size - 9 && x <= size - 5 && y >= size - 9 && y <= size - 5);
    const rand = random(42);
    const damaged = modules.map((row) => row.slice());
    let flipped = 0;
    while (flipped < 30) {
      const x = Math.floor(rand() * size);
      const y = Math.floor(rand() * size);
      if (!isData(x, y) || damaged[y]![x] !== modules[y]![x]) continue;
      damaged[y]![x] = !modules[y]![x];
      flipped++;
    }
    expect(decode(damaged, { scale: 4 })).toBe(text);
    // Wiping a third of the data area defeats even level H: no text, and no wrong text.
    const wiped = modules.map((row, y) =>
      row.map((dark, x) => (isData(x, y) && y > size / 3 && y < size - 9 ? false : dark)),
    );
    expect(decode(wiped, { scale: 4 })).toBeUndefined();
  });

  it('reads random short texts (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
        fc.constantFrom<Level>('L', 'M', 'Q', 'H'),
        fc.integer({ min: 3, max: 6 }),
        fc.integer({ min: 0, max: 3 }),
        (text, level, scale, quarter) => {
          const modules = qrModules(text, level);
          fc.pre(modules.length <= 57);
          expect(decode(modules, { scale, angle: quarter * 90 })).toBe(text);
        },
      ),
      { numRuns: 40, seed: 20261125 },
    );
  });

  it('returns undefined, without throwing, for frames with no code and for malformed input', () => {
    const rand = random(9);
    const width = 320;
    const height = 240;
    const noise = new Uint8ClampedArray(width * height * 4).map(() => Math.floor(rand() * 256));
    expect(decodeQr(noise, width, height)).toBeUndefined();
    expect(decodeQr(new Uint8ClampedArray(width * height * 4).fill(255), width, height)).toBeUndefined();
    expect(decodeQr(new Uint8ClampedArray(width * height * 4), width, height)).toBeUndefined();
    const stripes = new Uint8ClampedArray(width * height * 4).map((_, i) =>
      ((i >> 2) % width) % 14 < 7 ? 0 : 255,
    );
    expect(decodeQr(stripes, width, height)).toBeUndefined();
    expect(decodeQr(new Uint8ClampedArray(10), width, height)).toBeUndefined();
    expect(decodeQr(new Uint8ClampedArray(0), 0, 0)).toBeUndefined();
    expect(decodeQr(new Uint8ClampedArray(16), 2.5, 1)).toBeUndefined();
    // Only the three finder patterns, nothing between them.
    const code = qrModules('PILE 1', 'L', 1);
    const n = code.length;
    const finders = code.map((row, y) =>
      row.map(
        (dark, x) => dark && (x < 7 || x >= n - 7) && (y < 7 || y >= n - 7) && !(x >= n - 7 && y >= n - 7),
      ),
    );
    expect(decode(finders, { scale: 5 })).toBeUndefined();
  });
});
