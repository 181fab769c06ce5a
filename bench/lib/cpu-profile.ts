/**
 * Reads a V8 `.cpuprofile` (written by `node --cpu-prof`) and says where the time went, for
 * benchmark notes: the share of sampled time per function (self time), per function including
 * what it called (inclusive, each sample counted once per function on its stack — for async
 * functions that is their synchronous slices only), and per category (the caller names
 * categories from a sample's nearest frame that has a script URL, so native code — an OpenSSL
 * signature, a SQLite step, an fsync — is charged to the module that called it).
 *
 * Sample timestamps are V8 ticks in µs on the monotonic clock, the one `process.hrtime` reads
 * on Linux, so `window` can cut a profile to the part measured by another process.
 * @module
 */

import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileShare {
  readonly name: string;
  /** Share of all sampled time in the window (idle included), %. */
  readonly pct: number;
}

export interface ProfileSummary {
  /** Sampled time in the window, ms. */
  readonly sampledMs: number;
  /** Share of the window the process was on CPU (not `(idle)`), %. */
  readonly busyPct: number;
  readonly categories: readonly ProfileShare[];
  readonly topSelf: readonly ProfileShare[];
  readonly topInclusive: readonly ProfileShare[];
  /** False when the window did not overlap the profile and the whole profile was used. */
  readonly windowed: boolean;
}

export interface SummarizeOptions {
  /** Only samples in [startUs, endUs] (monotonic µs, i.e. `process.hrtime.bigint() / 1000n`). */
  readonly window?: { readonly startUs: number; readonly endUs: number };
  /** Category of a sample from its nearest frame with a URL (`url` is '' when there is none). */
  readonly categorize: (url: string, functionName: string) => string;
  /** Which frames may appear in `topInclusive` (default: all). */
  readonly inclusiveFilter?: (url: string) => boolean;
  /** Turns a script URL into a short location (default: the URL). */
  readonly shortUrl?: (url: string) => string;
  /** How many functions to list (default 12). */
  readonly top?: number;
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

export function readCpuProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
}

export function summarizeCpuProfile(profile: CpuProfile, options: SummarizeOptions): ProfileSummary {
  const shortUrl = options.shortUrl ?? ((url: string) => url);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (f: CallFrame) =>
    SPECIAL.has(f.functionName)
      ? f.functionName
      : `${f.functionName || '(anonymous)'} ${f.url ? shortUrl(f.url) + (f.lineNumber > 0 ? `:${f.lineNumber + 1}` : '') : '(native)'}`;

  // Sample i happened at startTime + sum(timeDeltas[0..i]); it stands for the time until the next one.
  const times: number[] = [];
  let t = profile.startTime;
  for (const d of profile.timeDeltas) {
    t += d;
    times.push(t);
  }
  const inWindow = (i: number) =>
    options.window ? times[i]! >= options.window.startUs && times[i]! <= options.window.endUs : true;
  let windowed = options.window !== undefined;
  if (windowed && !profile.samples.some((_, i) => inWindow(i))) windowed = false;

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const categories = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < profile.samples.length; i++) {
    if (windowed && !inWindow(i)) continue;
    const next = times[i + 1];
    const weight = next === undefined ? 0 : next - times[i]!;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    total += weight;
    const frame = node.callFrame;
    add(self, label(frame), weight);
    if (frame.functionName === '(idle)') {
      idle += weight;
      add(categories, 'idle (waiting for I/O)', weight);
      continue;
    }
    if (frame.functionName === '(garbage collector)') {
      add(categories, 'garbage collection', weight);
      continue;
    }
    if (frame.functionName === '(program)') {
      add(categories, 'V8/native, unattributed (program)', weight);
      continue;
    }
    const seen = new Set<string>();
    let category: string | undefined;
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      if (SPECIAL.has(f.functionName)) continue;
      if (category === undefined && f.url) category = options.categorize(f.url, f.functionName);
      const key = label(f);
      if (!seen.has(key) && (options.inclusiveFilter?.(f.url) ?? true)) {
        seen.add(key);
        add(inclusive, key, weight);
      }
    }
    add(categories, category ?? options.categorize('', frame.functionName), weight);
  }
  const top = options.top ?? 12;
  const shares = (m: Map<string, number>, n: number): ProfileShare[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, v]) => ({ name, pct: total ? Math.round((v * 1_000) / total) / 10 : 0 }));
  return {
    sampledMs: Math.round(total / 1_000),
    busyPct: total ? Math.round(((total - idle) * 1_000) / total) / 10 : 0,
    categories: shares(categories, 20),
    topSelf: shares(self, top),
    topInclusive: shares(inclusive, top),
    windowed,
  };
}
