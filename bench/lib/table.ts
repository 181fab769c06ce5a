/**
 * Output helpers shared by every benchmark (protocol, gateway, cloud, web): a plain-text table
 * for stdout and a pretty-printed JSON result file under `bench/results/<name>.json`.
 * @module
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Cell = string | number | boolean | null | undefined;
export type Row = Readonly<Record<string, Cell>>;

export interface TableOptions {
  /** Printed above the table. */
  readonly title?: string;
  /** Column order (and subset); default: every key in order of first appearance. */
  readonly columns?: readonly string[];
}

/** Where result files go: `bench/results/`, next to this `lib/` folder. */
export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

function formatCell(value: Cell): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return String(value);
    return Number.isInteger(value) ? value.toLocaleString('en-US') : String(value);
  }
  return String(value);
}

/** Renders rows as an aligned table: numbers right-aligned, everything else left-aligned. */
export function formatTable(rows: readonly Row[], options: TableOptions = {}): string {
  const columns = options.columns ?? [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const cells = rows.map((row) => columns.map((column) => formatCell(row[column])));
  const numeric = columns.map((column) =>
    rows.some((row) => typeof row[column] === 'number')
      ? rows.every((row) => row[column] === undefined || typeof row[column] === 'number')
      : false,
  );
  const widths = columns.map((column, i) =>
    Math.max(column.length, ...cells.map((line) => (line[i] ?? '').length)),
  );
  const pad = (text: string, i: number) => (numeric[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  const lines = [
    columns.map((column, i) => pad(column, i)).join('  '),
    widths.map((width) => '-'.repeat(width)).join('  '),
    ...cells.map((line) => line.map((text, i) => pad(text, i)).join('  ')),
  ];
  const body = lines.map((line) => line.trimEnd()).join('\n');
  return options.title ? `${options.title}\n${body}` : body;
}

/** Prints `rows` as a table (see `formatTable`) followed by a blank line. */
export function printTable(rows: readonly Row[], options: TableOptions = {}): void {
  console.log(`${formatTable(rows, options)}\n`);
}

/**
 * Writes `data` pretty-printed to `bench/results/<name>.json` (directory created if needed)
 * and returns the path. `name` is a plain file stem: letters, digits, `.`, `_`, `-`.
 */
export function writeResults(name: string, data: unknown): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new RangeError(`bad result name: ${name}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}
