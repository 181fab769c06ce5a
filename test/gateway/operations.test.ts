/**
 * Gateway operations: config validation names every wrong field, the gateway key is created
 * once with mode 0600, the root key is never replaced silently, and the CLI's commands and
 * exit codes (help, keys show, status, ledger verify on a good and a tampered ledger).
 */

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../gateway/src/config.ts';
import { keyPaths, loadOrCreateGatewayKey, loadRootKey, pinRootKey } from '../../gateway/src/keys.ts';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import { toHex } from '../../shared/src/index.ts';
import { startTestGateway } from './support/harness.ts';

const run = promisify(execFile);
const CLI = new URL('../../gateway/bin/pilepass-gateway', import.meta.url).pathname;
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'pilepass-ops-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(CLI, args, { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('config', () => {
  it('fills defaults for a minimal config', () => {
    const c = parseConfig({ gatewayId: 'gw-0001' });
    expect(c).toMatchObject({
      ble: 'hci',
      pile: 'sim',
      connectors: [1, 2],
      currency: 'CNY',
      toleranceSeconds: 300,
    });
    expect(c.limits.helloTtlMs).toBeLessThanOrEqual(30_000);
  });

  it('names every wrong field in one clear error', () => {
    let message = '';
    try {
      parseConfig({
        gatewayId: 'gw 01!',
        ble: 'bluetooth',
        currency: 'yuan',
        connectors: [],
        limits: { helloTtlMs: 60_000 },
        colour: 'blue',
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    for (const field of ['gatewayId', 'ble', 'currency', 'connectors', 'limits.helloTtlMs', 'colour']) {
      expect(message).toContain(field);
    }
  });

  it('reports an unreadable or invalid JSON file by name', () => {
    const dir = tempDir();
    expect(() => loadConfig(join(dir, 'missing.json'))).toThrow(/cannot read config file/);
  });
});

describe('keys', () => {
  it('creates the gateway key once, mode 0600, and loads the same key again', async () => {
    const dir = tempDir();
    const first = await loadOrCreateGatewayKey(dir);
    expect(statSync(keyPaths(dir).gatewayKey).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateGatewayKey(dir);
    expect(toHex(again.key.publicKey)).toBe(toHex(first.key.publicKey));
    expect(toHex(first.keyDigest)).toBe(toHex(await nodeCrypto.sha256(first.key.publicKey)));
  });

  it('pins a root key and refuses to replace it with another unless forced', async () => {
    const dir = tempDir();
    const a = await nodeCrypto.generateSigningKey();
    const b = await nodeCrypto.generateSigningKey();
    pinRootKey(dir, { kid: Uint8Array.of(1), publicKey: a.publicKey });
    pinRootKey(dir, { kid: Uint8Array.of(1), publicKey: a.publicKey }); // same key again is fine
    expect(() => pinRootKey(dir, { kid: Uint8Array.of(2), publicKey: b.publicKey })).toThrow(
      /already pinned/,
    );
    pinRootKey(dir, { kid: Uint8Array.of(2), publicKey: b.publicKey }, true);
    expect(toHex(loadRootKey(dir)!.publicKey)).toBe(toHex(b.publicKey));
  });
});

describe('pilepass-gateway CLI', () => {
  it('prints help, and refuses an unknown command with exit code 2', async () => {
    const help = await cli('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('ledger verify');
    const bad = await cli('frobnicate');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown command');
  });

  it('keys show, status and ledger verify on a used ledger; verify fails after tampering', async () => {
    const g = await startTestGateway();
    const dataDir = g.dataDir;
    await g.stop();
    const keys = JSON.parse((await cli('keys', 'show', '--data-dir', dataDir)).stdout) as {
      keyDigest: string;
    };
    expect(keys.keyDigest).toBe(toHex(g.world.gateway.keyDigest));
    const status = JSON.parse(
      (await cli('status', '--data-dir', dataDir, '--gateway-id', g.world.gateway.id)).stdout,
    ) as {
      bundleVersion: number;
      root: { kid: string };
    };
    expect(status.bundleVersion).toBe(1);
    expect(status.root.kid).toBe(toHex(g.world.root.kid));
    const ok = await cli('ledger', 'verify', '--data-dir', dataDir);
    expect(ok.code).toBe(0);
    const db = new Database(join(dataDir, 'ledger.sqlite'));
    db.prepare("UPDATE records SET payload = X'00' WHERE seq = 1").run();
    db.close();
    const broken = await cli('ledger', 'verify', '--data-dir', dataDir);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain('"ok":false');
    rmSync(dataDir, { recursive: true, force: true });
  });
});
