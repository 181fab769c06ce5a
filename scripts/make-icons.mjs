// Writes the PWA's PNG icons (web/public/icons/) with node:zlib only: a green tile with a
// white plug-like disc and a bolt. Run: node scripts/make-icons.mjs (the output is committed).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'web', 'public', 'icons');
const BG = [0x0b, 0x7a, 0x5a];
const FG = [0xff, 0xff, 0xff];

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** Inside the bolt: a polygon in unit coordinates (0..1), tested by ray casting. */
const BOLT = [
  [0.56, 0.2],
  [0.34, 0.54],
  [0.48, 0.54],
  [0.42, 0.8],
  [0.66, 0.44],
  [0.52, 0.44],
];

function inPolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** `safe` shrinks the artwork into the maskable safe zone (a circle of 80 % diameter). */
function png(size, safe) {
  const scale = safe ? 0.7 : 1;
  const raw = Buffer.alloc(size * (size * 3 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 3 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const u = ((x + 0.5) / size - 0.5) / scale + 0.5;
      const v = ((y + 0.5) / size - 0.5) / scale + 0.5;
      const r = Math.hypot(u - 0.5, v - 0.5);
      const ring = r < 0.4 && r > 0.34;
      const color = ring || inPolygon(u, v, BOLT) ? FG : BG;
      raw.set(color, y * (size * 3 + 1) + 1 + x * 3);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, 'icon-192.png'), png(192, false));
writeFileSync(join(OUT, 'icon-512.png'), png(512, false));
writeFileSync(join(OUT, 'icon-maskable-512.png'), png(512, true));
writeFileSync(join(OUT, 'apple-touch-icon-180.png'), png(180, true));
console.log(`icons written to ${OUT}`);
