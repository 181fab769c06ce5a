/**
 * Finding a QR code in a camera frame: binarization against the local mean (so uneven light
 * does not matter), finder patterns by their 1:1:3:1:1 runs (checked across, down and
 * diagonally), the three finders ordered into a code's corners, and the module grid sampled
 * through a perspective transform fixed by the alignment pattern (affine from the finders
 * alone for version 1 or when no alignment pattern is found).
 * @module
 */

export interface Point {
  readonly x: number;
  readonly y: number;
}

/** A binarized frame: 1 = dark. */
export interface BitImage {
  readonly bits: Uint8Array;
  readonly width: number;
  readonly height: number;
}

interface Finder extends Point {
  readonly size: number;
  count: number;
}

/** Dark where a pixel is clearly below the mean of its neighbourhood (a window wider than a finder). */
export function binarize(rgba: Uint8ClampedArray, width: number, height: number): BitImage {
  const w1 = width + 1;
  const sums = new Float64Array(w1 * (height + 1));
  const gray = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    let row = 0;
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const g = (rgba[i]! + 2 * rgba[i + 1]! + rgba[i + 2]!) >> 2;
      gray[y * width + x] = g;
      row += g;
      sums[(y + 1) * w1 + x + 1] = sums[y * w1 + x + 1]! + row;
    }
  }
  const radius = Math.max(12, Math.min(width, height) >> 3);
  const bits = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const y0 = Math.max(0, y - radius);
    const y1 = Math.min(height, y + radius + 1);
    for (let x = 0; x < width; x++) {
      const x0 = Math.max(0, x - radius);
      const x1 = Math.min(width, x + radius + 1);
      const sum = sums[y1 * w1 + x1]! - sums[y0 * w1 + x1]! - sums[y1 * w1 + x0]! + sums[y0 * w1 + x0]!;
      const mean = sum / ((x1 - x0) * (y1 - y0));
      bits[y * width + x] = gray[y * width + x]! < mean * 0.9 ? 1 : 0;
    }
  }
  return { bits, width, height };
}

/** Module size when the five runs are in the ratio 1:1:3:1:1, else 0. */
function finderRatio(runs: readonly number[]): number {
  const total = runs.reduce((a, b) => a + b, 0);
  if (total < 7) return 0;
  const module = total / 7;
  const tolerance = module * 0.6;
  const ok = runs.every((r, i) => Math.abs(r - (i === 2 ? 3 : 1) * module) < (i === 2 ? 3 : 1) * tolerance);
  return ok ? module : 0;
}

/**
 * Runs light/dark/light… outwards from a dark pixel along (dx, dy): the offset of the centre of
 * the middle dark run and the pattern's module size, when the runs are a finder's.
 */
function crossCheck(image: BitImage, x: number, y: number, dx: number, dy: number, limit: number) {
  const at = (k: number): number => {
    const px = x + k * dx;
    const py = y + k * dy;
    return px < 0 || py < 0 || px >= image.width || py >= image.height
      ? -1
      : image.bits[py * image.width + px]!;
  };
  if (at(0) !== 1) return undefined;
  const walk = (sign: number): number[] | undefined => {
    const runs = [0, 0, 0];
    let k = sign;
    for (let run = 0, colour = 1; run < 3; run++, colour ^= 1) {
      while (at(k) === colour && runs[run]! <= limit) {
        runs[run]!++;
        k += sign;
      }
      if (runs[run]! > limit || (run > 0 && runs[run] === 0)) return undefined;
    }
    return runs;
  };
  const back = walk(-1);
  const ahead = walk(1);
  if (!back || !ahead) return undefined;
  const module = finderRatio([back[2]!, back[1]!, back[0]! + ahead[0]! + 1, ahead[1]!, ahead[2]!]);
  return module ? { offset: (ahead[0]! - back[0]!) / 2 + 0.5, module } : undefined;
}

/** Finder pattern centres, most often seen first. */
export function findFinders(image: BitImage): Finder[] {
  const { bits, width, height } = image;
  const found: Finder[] = [];
  const runs: number[] = [];
  for (let y = 0; y < height; y++) {
    runs.length = 0;
    const row = y * width;
    let start = 0;
    for (let x = 1; x <= width; x++) {
      if (x < width && bits[row + x] === bits[row + x - 1]) continue;
      runs.push(start, x - start);
      start = x;
    }
    // runs: [start, length] pairs, alternating colour starting with the colour of pixel 0.
    for (let i = bits[row] ? 0 : 2; i + 9 < runs.length; i += 4) {
      const lengths = [runs[i + 1]!, runs[i + 3]!, runs[i + 5]!, runs[i + 7]!, runs[i + 9]!];
      const module = finderRatio(lengths);
      if (!module) continue;
      const limit = Math.ceil(module * 5);
      const cx = Math.floor(runs[i + 4]! + runs[i + 5]! / 2);
      const vertical = crossCheck(image, cx, y, 0, 1, limit);
      if (!vertical) continue;
      const cy = Math.floor(y + vertical.offset);
      const across = crossCheck(image, cx, cy, 1, 0, limit);
      if (!across) continue;
      const fx = cx + across.offset;
      const fy = y + vertical.offset;
      if (!crossCheck(image, Math.floor(fx), Math.floor(fy), 1, 1, limit)) continue;
      const size = (vertical.module + across.module) / 2;
      const same = found.find(
        (f) => Math.hypot(f.x - fx, f.y - fy) < 2 * size && Math.abs(f.size - size) < size * 0.5,
      );
      if (same) {
        const n = same.count;
        Object.assign(same, {
          x: (same.x * n + fx) / (n + 1),
          y: (same.y * n + fy) / (n + 1),
          size: (same.size * n + size) / (n + 1),
          count: n + 1,
        });
      } else found.push({ x: fx, y: fy, size, count: 1 });
    }
  }
  return found.sort((a, b) => b.count - a.count);
}

/** A code's corners (top-left, top-right, bottom-left) from three finders; lower score = more code-like. */
export interface Corners {
  readonly topLeft: Finder;
  readonly topRight: Finder;
  readonly bottomLeft: Finder;
  readonly score: number;
}

const distance = (a: Point, b: Point) => Math.hypot(a.x - b.x, a.y - b.y);

/** Triples of finders shaped like a code (right isosceles corner, equal module sizes), best first. */
export function cornerCandidates(finders: readonly Finder[]): Corners[] {
  const pool = finders.slice(0, 12);
  const result: Corners[] = [];
  for (let i = 0; i < pool.length; i++)
    for (let j = i + 1; j < pool.length; j++)
      for (let k = j + 1; k < pool.length; k++) {
        const three = [pool[i]!, pool[j]!, pool[k]!];
        const sizes = three.map((f) => f.size);
        if (Math.max(...sizes) > 1.5 * Math.min(...sizes)) continue;
        // The top-left is the corner opposite the longest side.
        const sides = [0, 1, 2].map((n) => distance(three[(n + 1) % 3]!, three[(n + 2) % 3]!));
        const corner = sides.indexOf(Math.max(...sides));
        const topLeft = three[corner]!;
        let a = three[(corner + 1) % 3]!;
        let b = three[(corner + 2) % 3]!;
        if ((a.x - topLeft.x) * (b.y - topLeft.y) - (a.y - topLeft.y) * (b.x - topLeft.x) < 0)
          [a, b] = [b, a];
        const legA = distance(topLeft, a);
        const legB = distance(topLeft, b);
        const hyp = sides[corner]!;
        const module = (sizes[0]! + sizes[1]! + sizes[2]!) / 3;
        const legsInModules = (legA + legB) / 2 / module;
        if (legsInModules < 10 || legsInModules > 60) continue;
        const unequal = Math.abs(legA - legB) / Math.max(legA, legB);
        const skew = Math.abs(hyp * hyp - legA * legA - legB * legB) / (hyp * hyp);
        if (unequal > 0.4 || skew > 0.4) continue;
        result.push({
          topLeft,
          topRight: a,
          bottomLeft: b,
          score: unequal + skew - 0.05 * Math.min(10, topLeft.count + a.count + b.count),
        });
      }
  return result.sort((p, q) => p.score - q.score);
}

/** Maps module coordinates (u, v) to image coordinates. */
export type Transform = (u: number, v: number) => Point;

type Matrix = readonly number[];

/** Projective map of the unit square onto the quadrilateral p0 p1 p2 p3 (row vector · matrix). */
function squareToQuad(p: readonly Point[]): Matrix {
  const [p0, p1, p2, p3] = p as [Point, Point, Point, Point];
  const dx3 = p0.x - p1.x + p2.x - p3.x;
  const dy3 = p0.y - p1.y + p2.y - p3.y;
  const dx1 = p1.x - p2.x;
  const dx2 = p3.x - p2.x;
  const dy1 = p1.y - p2.y;
  const dy2 = p3.y - p2.y;
  const denominator = dx1 * dy2 - dx2 * dy1;
  const g = (dx3 * dy2 - dx2 * dy3) / denominator;
  const h = (dx1 * dy3 - dx3 * dy1) / denominator;
  return [
    p1.x - p0.x + g * p1.x,
    p1.y - p0.y + g * p1.y,
    g,
    p3.x - p0.x + h * p3.x,
    p3.y - p0.y + h * p3.y,
    h,
    p0.x,
    p0.y,
    1,
  ];
}

function adjugate(m: Matrix): Matrix {
  const [a, b, c, d, e, f, g, h, i] = m as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return [
    e * i - f * h,
    c * h - b * i,
    b * f - c * e,
    f * g - d * i,
    a * i - c * g,
    c * d - a * f,
    d * h - e * g,
    b * g - a * h,
    a * e - b * d,
  ];
}

function multiply(m: Matrix, n: Matrix): Matrix {
  const out: number[] = [];
  for (let r = 0; r < 3; r++)
    for (let c = 0; c < 3; c++)
      out.push(m[r * 3]! * n[c]! + m[r * 3 + 1]! * n[3 + c]! + m[r * 3 + 2]! * n[6 + c]!);
  return out;
}

/** The projective transform taking the four module points `from` onto the image points `to`. */
export function perspective(from: readonly Point[], to: readonly Point[]): Transform {
  const m = multiply(adjugate(squareToQuad(from)), squareToQuad(to));
  return (u, v) => {
    const w = u * m[2]! + v * m[5]! + m[8]!;
    return { x: (u * m[0]! + v * m[3]! + m[6]!) / w, y: (u * m[1]! + v * m[4]! + m[7]!) / w };
  };
}

/**
 * The alignment pattern's centre near `estimate`: the spot best matching its 5×5 dark/light/dark
 * rings sampled along the module vectors `ex`, `ey`; undefined when nothing fits well.
 */
export function findAlignment(
  image: BitImage,
  estimate: Point,
  ex: Point,
  ey: Point,
  reach: number,
): Point | undefined {
  const module = Math.hypot(ex.x, ex.y);
  const step = Math.max(1, module / 3);
  const dark = (x: number, y: number) => {
    const px = Math.floor(x);
    const py = Math.floor(y);
    return (
      px >= 0 && py >= 0 && px < image.width && py < image.height && image.bits[py * image.width + px] === 1
    );
  };
  let best: Point | undefined;
  let bestScore = 21;
  const range = reach * module;
  for (let dy = -range; dy <= range; dy += step)
    for (let dx = -range; dx <= range; dx += step) {
      const cx = estimate.x + dx;
      const cy = estimate.y + dy;
      let score = 0;
      for (let j = -2; j <= 2; j++)
        for (let i = -2; i <= 2; i++) {
          const ring = Math.max(Math.abs(i), Math.abs(j));
          if (dark(cx + i * ex.x + j * ey.x, cy + i * ex.y + j * ey.y) === (ring !== 1)) score++;
        }
      // On a tie the spot nearest the estimate wins: a farther one may be another alignment pattern.
      if (
        score > bestScore ||
        (score === bestScore && best && Math.hypot(dx, dy) < distance(best, estimate))
      ) {
        bestScore = score;
        best = { x: cx, y: cy };
      }
    }
  if (!best) return undefined;
  // Refine to the middle of the dark centre module, across and down.
  const centre = (p: Point, d: Point) => {
    let lo = 0;
    let hi = 0;
    while (lo < module && dark(p.x - (lo + 1) * d.x, p.y - (lo + 1) * d.y)) lo++;
    while (hi < module && dark(p.x + (hi + 1) * d.x, p.y + (hi + 1) * d.y)) hi++;
    return (hi - lo) / 2;
  };
  if (!dark(best.x, best.y)) return best;
  const along = centre(best, { x: 1, y: 0 });
  const moved = { x: best.x + along, y: best.y };
  return { x: moved.x, y: moved.y + centre(moved, { x: 0, y: 1 }) };
}
