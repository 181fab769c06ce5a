/** Reads every test/vectors/*.json into one object keyed by file name. Node only. */

import { readdirSync, readFileSync } from 'node:fs';
import type { Vectors } from './vector-checks.ts';

export function loadVectors(): Vectors {
  const dir = new URL('../vectors/', import.meta.url);
  const vectors: Vectors = {};
  for (const file of readdirSync(dir)) {
    if (file.endsWith('.json'))
      vectors[file.slice(0, -5)] = JSON.parse(readFileSync(new URL(file, dir), 'utf8'));
  }
  return vectors;
}
