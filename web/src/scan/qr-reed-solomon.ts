/**
 * Reed–Solomon error correction for QR codewords, in GF(256) with the QR polynomial
 * x^8+x^4+x^3+x^2+1 and generator roots α^0…α^(n-1): syndromes, Berlekamp–Massey for the
 * error locator, Chien search for the positions and Forney for the values.
 * @module
 */

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
for (let i = 0, x = 1; i < 255; i++) {
  EXP[i] = x;
  EXP[i + 255] = x;
  LOG[x] = i;
  x <<= 1;
  if (x & 256) x ^= 0x11d;
}

const mul = (a: number, b: number): number => (a && b ? EXP[LOG[a]! + LOG[b]!]! : 0);
const div = (a: number, b: number): number => (a ? EXP[LOG[a]! + 255 - LOG[b]!]! : 0);

/** Value at `x` of the polynomial with coefficients lowest degree first. */
function evaluate(poly: readonly number[], x: number): number {
  let y = 0;
  for (let i = poly.length - 1; i >= 0; i--) y = mul(y, x) ^ poly[i]!;
  return y;
}

/** Syndromes r(α^j) of a block whose first codeword is the highest-degree coefficient. */
function syndromes(block: Uint8Array, eccCount: number): number[] {
  const result: number[] = [];
  for (let j = 0; j < eccCount; j++) {
    let s = 0;
    for (const c of block) s = mul(s, EXP[j]!) ^ c;
    result.push(s);
  }
  return result;
}

/**
 * Corrects `block` (data then `eccCount` EC codewords) in place. Returns false when it holds
 * more errors than the code can fix (the block is then left unusable).
 */
export function correctBlock(block: Uint8Array, eccCount: number): boolean {
  const s = syndromes(block, eccCount);
  if (s.every((v) => v === 0)) return true;
  // Berlekamp–Massey: the shortest LFSR (error locator Λ, lowest degree first) generating s.
  let locator = [1];
  let previous = [1];
  let errors = 0;
  let shift = 1;
  let lastDiscrepancy = 1;
  for (let n = 0; n < eccCount; n++) {
    let d = s[n]!;
    for (let i = 1; i <= errors; i++) d ^= mul(locator[i] ?? 0, s[n - i]!);
    if (d === 0) {
      shift++;
      continue;
    }
    const next = locator.slice();
    const coef = div(d, lastDiscrepancy);
    for (let i = 0; i < previous.length; i++)
      next[i + shift] = (next[i + shift] ?? 0) ^ mul(coef, previous[i]!);
    if (2 * errors <= n) {
      errors = n + 1 - errors;
      previous = locator;
      lastDiscrepancy = d;
      shift = 1;
    } else shift++;
    locator = next;
  }
  if (2 * errors > eccCount) return false;
  // Chien search: an error at power e (array index N-1-e) makes Λ(α^-e) = 0.
  const n = block.length;
  const powers: number[] = [];
  for (let e = 0; e < n; e++) if (evaluate(locator, EXP[255 - e]!) === 0) powers.push(e);
  if (powers.length !== errors) return false;
  // Forney (first root α^0): Y = X·Ω(X⁻¹)/Λ'(X⁻¹), with Ω = S·Λ mod x^eccCount.
  const omega = new Array<number>(eccCount).fill(0);
  for (let i = 0; i < eccCount; i++)
    for (let j = 0; j < locator.length && i + j < eccCount; j++) omega[i + j]! ^= mul(s[i]!, locator[j]!);
  const derivative = locator.map((c, i) => (i % 2 === 1 ? c : 0)).slice(1);
  for (const e of powers) {
    const inverse = EXP[255 - e]!;
    const denominator = evaluate(derivative, inverse);
    if (denominator === 0) return false;
    block[n - 1 - e]! ^= mul(EXP[e]!, div(evaluate(omega, inverse), denominator));
  }
  return syndromes(block, eccCount).every((v) => v === 0);
}
