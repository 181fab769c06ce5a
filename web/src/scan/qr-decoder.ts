/**
 * A small QR decoder for the pile codes, used where the browser has no BarcodeDetector: finds the
 * code in an RGBA frame (same input as jsQR's image data), samples its modules and decodes them
 * with Reed–Solomon correction. Versions 1–10. Returns undefined when nothing decodes; never throws.
 * @module
 */

import {
  type BitImage,
  binarize,
  cornerCandidates,
  findAlignment,
  findFinders,
  type Point,
  perspective,
  type Transform,
} from './qr-locate.ts';
import { decodeModules, MAX_VERSION } from './qr-matrix.ts';

function decodeWith(image: BitImage, transform: Transform, version: number): string | undefined {
  return decodeModules((x, y) => {
    const p = transform(x + 0.5, y + 0.5);
    const px = Math.floor(p.x);
    const py = Math.floor(p.y);
    return (
      px >= 0 && py >= 0 && px < image.width && py < image.height && image.bits[py * image.width + px] === 1
    );
  }, version);
}

/** The text of the QR code in the frame, or undefined when none can be read. */
export function decodeQr(rgba: Uint8ClampedArray, width: number, height: number): string | undefined {
  if (!(width > 0 && height > 0 && Number.isInteger(width) && Number.isInteger(height))) return undefined;
  if (rgba.length < width * height * 4) return undefined;
  try {
    const image = binarize(rgba, width, height);
    for (const { topLeft, topRight, bottomLeft } of cornerCandidates(findFinders(image)).slice(0, 4)) {
      // Distances between finder centres in modules, each leg measured with its own finders' module
      // size (under perspective the far finders look smaller).
      const legs = [topRight, bottomLeft].map(
        (f) => Math.hypot(f.x - topLeft.x, f.y - topLeft.y) / ((f.size + topLeft.size) / 2),
      );
      const estimate = Math.round(((legs[0]! + legs[1]!) / 2 - 10) / 4);
      for (const version of [estimate, estimate - 1, estimate + 1]) {
        if (version < 1 || version > MAX_VERSION) continue;
        const inner = version * 4 + 10; // modules between the finders' centres
        const ex: Point = { x: (topRight.x - topLeft.x) / inner, y: (topRight.y - topLeft.y) / inner };
        const ey: Point = { x: (bottomLeft.x - topLeft.x) / inner, y: (bottomLeft.y - topLeft.y) / inner };
        const affine: Transform = (u, v) => ({
          x: topLeft.x + (u - 3.5) * ex.x + (v - 3.5) * ey.x,
          y: topLeft.y + (u - 3.5) * ex.y + (v - 3.5) * ey.y,
        });
        const transforms = [affine];
        if (version > 1) {
          // Where the alignment pattern should be under a perspective whose depth is read from the
          // finders' sizes: module coords (u, v) ↦ TL + (u·A + v·B)/w with w = 1 + u(ka−1) + v(kb−1).
          const ka = topLeft.size / topRight.size;
          const kb = topLeft.size / bottomLeft.size;
          const t = (inner - 3) / inner;
          const w = 1 + t * (ka + kb - 2);
          const local = (k: number, e: Point) => ({ x: (k * e.x) / w, y: (k * e.y) / w });
          const ax = local(ka, ex);
          const ay = local(kb, ey);
          const guess = {
            x: topLeft.x + inner * t * (ax.x + ay.x),
            y: topLeft.y + inner * t * (ax.y + ay.y),
          };
          const alignment = w > 0.3 ? findAlignment(image, guess, ax, ay, 8) : undefined;
          const size = version * 4 + 17;
          if (alignment)
            transforms.unshift(
              perspective(
                [
                  { x: 3.5, y: 3.5 },
                  { x: size - 3.5, y: 3.5 },
                  { x: size - 6.5, y: size - 6.5 },
                  { x: 3.5, y: size - 3.5 },
                ],
                [topLeft, topRight, alignment, bottomLeft],
              ),
            );
        }
        for (const transform of transforms) {
          const text = decodeWith(image, transform, version);
          if (text !== undefined) return text;
        }
      }
    }
  } catch {
    // A frame that trips the locator (degenerate geometry) is a frame without a readable code.
  }
  return undefined;
}
