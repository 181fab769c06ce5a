/**
 * Every wrong config field gives a clear error naming the field (gateway/src/config.ts):
 *
 * - generic: every field of the schema, nested sections included, set to a value of the wrong
 *   type — the ConfigError names exactly that path (new fields are covered automatically);
 * - one wrong-but-well-typed value per top-level field (range, pattern, enum, URL, unknown
 *   key), with the message it must carry; a top-level field without a row fails the test;
 * - several wrong fields are all reported at once; the CLI exits 2 on a config error, which
 *   the systemd unit treats as "do not restart" (RestartPreventExitStatus=2).
 */

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, configSchema, loadConfig, parseConfig } from '../../gateway/src/config.ts';

const run = promisify(execFile);
const CLI = new URL('../../gateway/bin/pilepass-gateway', import.meta.url).pathname;
const BASE = { gatewayId: 'gw-0001' };
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The ConfigError message for `input` (fails the test when it parses). */
function errorOf(input: unknown): string {
  try {
    parseConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(input)}`);
}

/** The `  path: message` lines of a ConfigError. */
const issueLines = (message: string) =>
  message
    .split('\n')
    .slice(1)
    .map((l) => l.trim());

type Def = { type: string; shape?: Record<string, unknown>; innerType?: unknown };
const defOf = (s: unknown) => (s as { _zod: { def: Def } })._zod.def;

/** Every field path of the schema: sections and their fields ("ocpp", "ocpp.port", …). */
function fieldPaths(schema: unknown, prefix = ''): string[] {
  let d = defOf(schema);
  while (['optional', 'default', 'nullable', 'prefault'].includes(d.type) && d.innerType)
    d = defOf(d.innerType);
  if (d.type !== 'object' || !d.shape) return [];
  return Object.entries(d.shape).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return [path, ...fieldPaths(v, path)];
  });
}

/** BASE with `value` at `path`, creating sections on the way. */
function withValue(path: string, value: unknown): Record<string, unknown> {
  const config: Record<string, unknown> = structuredClone(BASE);
  const keys = path.split('.');
  let at = config;
  for (const k of keys.slice(0, -1)) {
    at[k] = (at[k] as Record<string, unknown> | undefined) ?? {};
    at = at[k] as Record<string, unknown>;
  }
  at[keys.at(-1)!] = value;
  return config;
}

describe('every field, of the wrong type, is named', () => {
  const paths = fieldPaths(configSchema);

  it('knows the fields (sanity)', () => {
    expect(paths).toEqual(expect.arrayContaining(['gatewayId', 'limits', 'limits.helloTtlMs', 'ble']));
  });

  it.each(paths)('%s', (path) => {
    // A nested object is never a valid value for a leaf, and a number never for a section.
    const wrongType = fieldPaths(configSchema, '').some((p) => p.startsWith(`${path}.`))
      ? 42
      : { wrong: true };
    const lines = issueLines(errorOf(withValue(path, wrongType)));
    expect(lines.some((l) => l.startsWith(`${path}: `))).toBe(true);
  });
});

/** One well-typed but wrong value per top-level field, and what the message must say. */
const WRONG: Record<string, readonly [value: unknown, path: string, message: RegExp]> = {
  gatewayId: ['gw 01!', 'gatewayId', /gateway id: 1–32 of A–Z a–z 0–9 \. _ -/],
  name: ['a name far too long for GAP', 'name', /too big|at most 20|<=20/i],
  dataDir: ['', 'dataDir', /too small|at least 1|>=1/i],
  ble: ['bluetooth', 'ble', /expected "hci", "hci:<n>", "uart:<tty path>"/],
  pile: ['modbus-magic', 'pile', /expected "sim"/],
  ocpp: [{ chargePointId: 'CP1', port: 70_000 }, 'ocpp.port', /expected 1–65535/],
  relay: [{ connectors: [] }, 'relay.connectors', /too small|at least 1|>=1/i],
  can: [{ pileNodeId: 128 }, 'can.pileNodeId', /too big|127/i],
  connectors: [[], 'connectors', /too small|at least 1|>=1/i],
  currency: ['yuan', 'currency', /ISO 4217 code, e\.g\. CNY/],
  minimumAmount: [1.5, 'minimumAmount', /int/i],
  toleranceSeconds: [86_401, 'toleranceSeconds', /too big|86400/i],
  idleTimeoutSeconds: [5, 'idleTimeoutSeconds', /too small|10/i],
  cloudUrl: ['ftp://cloud.example', 'cloudUrl', /URL|protocol/i],
  syncIntervalSeconds: [1, 'syncIntervalSeconds', /too small|5/i],
  logLevel: ['loud', 'logLevel', /"fatal"\|"error"\|"warn"\|"info"|fatal.*error.*warn.*info/],
  limits: [{ helloTtlMs: 60_000 }, 'limits.helloTtlMs', /too big|30000/i],
};

describe('a wrong value of the right type is named with what is expected', () => {
  it('every top-level field has a case here', () => {
    const topLevel = Object.keys(configSchema.shape);
    expect(topLevel.filter((k) => !(k in WRONG))).toEqual([]);
  });

  it.each(Object.entries(WRONG))('%s', (field, [value, path, message]) => {
    const lines = issueLines(errorOf({ ...BASE, [field]: value }));
    const line = lines.find((l) => l.startsWith(`${path}: `));
    expect(line, lines.join('\n')).toBeDefined();
    expect(line).toMatch(message);
  });

  it('more cases: connector range, unknown keys at both levels, a missing section, OCPP ids and keys', () => {
    expect(errorOf({ ...BASE, connectors: [1, 256] })).toMatch(/connectors\.1: /);
    expect(errorOf({ ...BASE, colour: 'blue' })).toMatch(/\(root\): .*colour/);
    expect(errorOf({ ...BASE, limits: { helloTTL: 5 } })).toMatch(/limits: .*helloTTL/);
    expect(errorOf({ ...BASE, pile: 'ocpp' })).toMatch(/ocpp: required when pile is "ocpp"/);
    const ocpp = errorOf({ ...BASE, pile: 'ocpp', ocpp: { chargePointId: 'bad id!', password: 'short' } });
    expect(ocpp).toMatch(/ocpp\.chargePointId: expected 1–48 of/);
    expect(ocpp).toMatch(/ocpp\.password: expected 16–40 characters/);
    expect(errorOf({ ...BASE, cloudUrl: 'not a url' })).toMatch(/cloudUrl: /);
    expect(errorOf('gateway.json')).toMatch(/\(root\): /);
  });

  it('reports every wrong field at once, one line each', () => {
    const message = errorOf({
      gatewayId: '',
      ble: 'x',
      currency: 'euro',
      limits: { helloTtlMs: 1 },
      extra: 1,
    });
    expect(message.split('\n')[0]).toBe('invalid gateway configuration:');
    for (const path of ['gatewayId', 'ble', 'currency', 'limits.helloTtlMs']) {
      expect(issueLines(message).some((l) => l.startsWith(`${path}: `))).toBe(true);
    }
    expect(message).toMatch(/extra/);
  });
});

describe('config files and the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilepass-config-'));
  dirs.push(dir);

  it('names the file when it is missing or not JSON', () => {
    expect(() => loadConfig(join(dir, 'absent.json'))).toThrow(/cannot read config file .*absent\.json/);
    writeFileSync(join(dir, 'broken.json'), '{ "gatewayId": "gw-1", }');
    expect(() => loadConfig(join(dir, 'broken.json'))).toThrow(
      /config file .*broken\.json is not valid JSON/,
    );
  });

  it('the CLI exits 2 with the field named (the unit does not restart on it)', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({ gatewayId: 'gw-0001', dataDir: join(dir, 'data'), toleranceSeconds: -1 }),
    );
    const result = await run(CLI, ['status', '--config', file], { timeout: 30_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/invalid gateway configuration:\n {2}toleranceSeconds: /);
  });
});
