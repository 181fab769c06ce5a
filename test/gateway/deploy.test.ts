/**
 * Deployment on Raspberry Pi OS (gateway/deploy/, docs/raspberry-pi.md):
 *
 * - install.sh: --help, bad options, refuses to run unprivileged without --dry-run; --dry-run
 *   names every action (packages, user and groups, directories with their modes, app and npm
 *   dependencies, CLI wrapper, config template, unit, watchdog drop-in, bluetoothd, enable)
 *   and changes nothing; a too-old Node is reported; shellcheck-clean.
 * - re-run safety: the installer's own helpers, sourced, run twice on a scratch tree — the
 *   second run changes nothing, drift (content, mode) is repaired.
 * - the systemd unit: `systemd-analyze verify` in a scratch root (clean output; a broken
 *   copy is caught), `systemd-analyze security` exposure, and the hardening keys themselves.
 * - the app runs on plain Node ESM resolution with types stripped (what the unit's Node
 *   ≥ 22.18 does), without tsx.
 * - docs/raspberry-pi.md's config reference names every config field and its default.
 */

import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema, parseConfig } from '../../gateway/src/config.ts';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(REPO, 'gateway/deploy');
const INSTALL = join(DEPLOY, 'install.sh');
const UNIT = join(DEPLOY, 'pilepass-gateway.service');
const WRAPPER = join(DEPLOY, 'pilepass-gateway.sh');
const STRIP_TYPES = join(REPO, 'test/support/strip-types/register.mjs');

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'pilepass-deploy-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const has = (binary: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const isRoot = process.getuid?.() === 0;

async function sh(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { timeout: 60_000, env: options.env ?? process.env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A directory with `node` and `npm` stand-ins reporting the given versions. */
function fakeNode(version: string): string {
  const dir = tempDir();
  writeFileSync(join(dir, 'node'), `#!/bin/sh\necho v${version}\n`);
  writeFileSync(join(dir, 'npm'), '#!/bin/sh\necho 11.6.2\n');
  chmodSync(join(dir, 'node'), 0o755);
  chmodSync(join(dir, 'npm'), 0o755);
  return join(dir, 'node');
}

/** What a dry run must leave alone. */
function systemSnapshot(): Record<string, boolean> {
  const paths = [
    '/opt/pilepass',
    '/var/lib/pilepass',
    '/etc/pilepass',
    '/usr/local/bin/pilepass-gateway',
    '/etc/systemd/system/pilepass-gateway.service',
    '/etc/systemd/system.conf.d/pilepass-watchdog.conf',
  ];
  const snapshot: Record<string, boolean> = Object.fromEntries(paths.map((p) => [p, existsSync(p)]));
  let user = true;
  try {
    execFileSync('id', ['-u', 'pilepass'], { stdio: 'ignore' });
  } catch {
    user = false;
  }
  snapshot['user pilepass'] = user;
  return snapshot;
}

/** The installer's PACKAGES array, read from the script. */
function installerPackages(): string[] {
  const match = /^readonly PACKAGES=\(([^)]*)\)/m.exec(readFileSync(INSTALL, 'utf8'));
  if (!match?.[1]) throw new Error('PACKAGES not found in install.sh');
  return match[1].trim().split(/\s+/);
}

describe('install.sh', () => {
  it('prints its help, and refuses an unknown option with exit 2', async () => {
    const help = await sh('bash', [INSTALL, '--help']);
    expect(help.code).toBe(0);
    for (const option of ['--dry-run', '--source DIR', '--node PATH', '--help'])
      expect(help.stdout).toContain(option);
    const bad = await sh('bash', [INSTALL, '--frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown option: --frobnicate');
  });

  it('needs root unless --dry-run', async () => {
    // As root, run it as nobody; otherwise as ourselves (not root either).
    const result = isRoot
      ? await sh('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'bash', INSTALL])
      : await sh('bash', [INSTALL]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/must run as root .*or with --dry-run/);
  });

  it('--dry-run names every action and changes nothing', async () => {
    const before = systemSnapshot();
    const { code, stdout, stderr } = await sh('bash', [INSTALL, '--dry-run', '--node', fakeNode('24.11.1')]);
    expect(stderr).not.toMatch(/error/);
    expect(code).toBe(0);
    expect(systemSnapshot()).toEqual(before);

    const lines = stdout.trimEnd().split('\n');
    // Every line is a planned action, a step already in place, or a message: nothing ran.
    for (const line of lines) expect(line).toMatch(/^(\[dry-run\] |= |pilepass-install: )/);
    expect(stdout).toContain('pilepass-install: dry run: printing the actions, changing nothing');
    expect(stdout).toMatch(/node: 24\.11\.1 at /);

    // Packages: each one either planned for apt-get or already installed.
    const planned =
      /^\[dry-run\] env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends (.*)$/m.exec(
        stdout,
      );
    const present = /^= packages (.*)$/m.exec(stdout);
    const packages = installerPackages();
    expect(packages).toEqual(
      expect.arrayContaining(['bluez', 'libgpiod2', 'libgpiod-dev', 'build-essential']),
    );
    const named = new Set([...(planned?.[1]?.split(' ') ?? []), ...(present?.[1]?.split(' ') ?? [])]);
    for (const p of packages) {
      if (!named.has(p)) {
        // Already installed ones are not listed when others are missing: check dpkg agrees.
        expect(execFileSync('sh', ['-c', `dpkg-query -W -f='\${Status}' ${p}`]).toString()).toContain(
          'install ok installed',
        );
      }
    }
    if (planned) expect(stdout).toContain('[dry-run] apt-get update');

    // The user: a system user without login, in gpio and dialout.
    expect(stdout).toMatch(
      /^(\[dry-run\] useradd --system --user-group --groups gpio,dialout --home-dir \/var\/lib\/pilepass --no-create-home --shell \/usr\/sbin\/nologin .*pilepass|= user pilepass \(groups gpio,dialout\)|\[dry-run\] usermod --append --groups \S+ pilepass)$/m,
    );
    for (const group of ['gpio', 'dialout']) {
      expect(stdout).toMatch(
        new RegExp(`^(\\[dry-run\\] groupadd --system ${group}|= group ${group})$`, 'm'),
      );
    }

    // Directories with owner and mode.
    const dir = (path: string, mode: string, owner: string, group: string) =>
      expect(stdout).toMatch(
        new RegExp(
          `^(\\[dry-run\\] install -d -m ${mode} -o ${owner} -g ${group} ${path}|= directory ${path} \\(${mode} ${owner}:${group}\\))$`,
          'm',
        ),
      );
    dir('/opt/pilepass', '0755', 'root', 'root');
    dir('/var/lib/pilepass', '0700', 'pilepass', 'pilepass');
    dir('/etc/pilepass', '0750', 'root', 'pilepass');
    dir('/etc/systemd/system.conf.d', '0755', 'root', 'root');

    // The app, root-owned; its dependencies without dev tools.
    for (const part of ['gateway/src', 'shared/src']) {
      expect(stdout).toMatch(
        new RegExp(
          `^(\\[dry-run\\] cp -r \\S+/${part} /opt/pilepass/${part}|= app /opt/pilepass/${part})$`,
          'm',
        ),
      );
    }
    expect(stdout).toMatch(/^\[dry-run\] chown -R root:root \/opt\/pilepass\/gateway\/src$/m);
    expect(stdout).toMatch(
      /^\[dry-run\] env -C \/opt\/pilepass \S+ \S+\/npm ci --omit=dev --no-audit --no-fund$/m,
    );

    // Files: wrapper, config (only when absent, never overwritten), unit, watchdog drop-in.
    expect(stdout).toMatch(
      /^\[dry-run\] install -m 0755 -o root -g root \S+ \/usr\/local\/bin\/pilepass-gateway$/m,
    );
    expect(stdout).toMatch(
      /^(\[dry-run\] install -m 0640 -o root -g pilepass \S+\/gateway\.example\.json \/etc\/pilepass\/gateway\.json|= config \/etc\/pilepass\/gateway\.json \(kept as it is\))$/m,
    );
    expect(stdout).toMatch(
      /^\[dry-run\] install -m 0644 -o root -g root \S+\/pilepass-gateway\.service \/etc\/systemd\/system\/pilepass-gateway\.service$/m,
    );
    expect(stdout).toMatch(
      /^\[dry-run\] install -m 0644 -o root -g root \S+\/pilepass-watchdog\.conf \/etc\/systemd\/system\.conf\.d\/pilepass-watchdog\.conf$/m,
    );

    // bluetoothd off for good; systemd reloaded; the unit enabled; config checked before a start.
    expect(stdout).toMatch(
      /(\[dry-run\] systemctl disable --now bluetooth\.service\n\[dry-run\] systemctl mask bluetooth\.service|= bluetooth\.service (masked|not installed))/,
    );
    expect(stdout).toContain('[dry-run] systemctl daemon-reload');
    expect(stdout).toMatch(
      /^(\[dry-run\] systemctl enable pilepass-gateway\.service|= pilepass-gateway\.service enabled)$/m,
    );
    expect(stdout).toMatch(
      /^\[dry-run\] runuser -u pilepass -- \S+ .*\/opt\/pilepass\/gateway\/src\/cli\.ts keys show --config \/etc\/pilepass\/gateway\.json$/m,
    );
    const actions = lines.filter((l) => l.startsWith('[dry-run] ')).length;
    expect(stdout).toContain(`dry run: ${actions} action(s) would run; nothing was changed`);
  });

  it('--dry-run reports a Node older than 22.18 and exits 1, after printing the whole plan', async () => {
    const { code, stdout, stderr } = await sh('bash', [INSTALL, '--dry-run', '--node', fakeNode('20.19.5')]);
    expect(code).toBe(1);
    expect(stderr).toContain('Node 20.19.5 at');
    expect(stderr).toContain('is too old: the service needs >= 22.18.0');
    expect(stdout).toContain('/etc/systemd/system/pilepass-gateway.service');
    expect(stdout).toMatch(/a real run would stop at: Node 20\.19\.5/);
  });

  it('puts a Node other than /usr/bin/node into the unit and the wrapper', async () => {
    const dir = tempDir();
    const script = [
      `source ${INSTALL}`,
      `TMP_DIR=${dir}`,
      'NODE_BIN=/opt/node-v24/bin/node',
      `cat "$(with_node_path ${UNIT})"`,
      'echo ---',
      `cat "$(with_node_path ${WRAPPER})"`,
      'echo ---',
      'NODE_BIN=/usr/bin/node',
      `with_node_path ${UNIT}`,
    ].join('\n');
    const { stdout } = await sh('bash', ['-c', script]);
    const [unit, wrapper, unchanged] = stdout.split('---\n');
    expect(unit).toMatch(
      /^ExecStart=\/opt\/node-v24\/bin\/node --disable-warning=ExperimentalWarning \/opt\/pilepass\//m,
    );
    expect(unit).not.toContain('/usr/bin/node');
    expect(wrapper).toMatch(/^NODE=\/opt\/node-v24\/bin\/node$/m);
    expect(unchanged?.trim()).toBe(UNIT); // the default Node: the file as shipped
  });

  it.skipIf(!has('shellcheck'))('is shellcheck-clean, and so is the CLI wrapper', async () => {
    const { code, stdout } = await sh('shellcheck', ['--severity=style', INSTALL, WRAPPER]);
    expect(stdout).toBe('');
    expect(code).toBe(0);
  });
});

describe('install.sh re-run safety (its helpers, on a scratch tree)', () => {
  const user = execFileSync('id', ['-un']).toString().trim();
  const group = execFileSync('id', ['-gn']).toString().trim();

  async function helpers(body: string): Promise<string[]> {
    const { code, stdout, stderr } = await sh('bash', [
      '-c',
      `set -euo pipefail\nsource ${INSTALL}\n${body}`,
    ]);
    if (code !== 0) throw new Error(`helper script failed (${code}): ${stderr}`);
    return stdout.trimEnd().split('\n');
  }

  it('a second run changes nothing; content and mode drift are repaired', async () => {
    const root = tempDir();
    const src = join(root, 'unit.src');
    writeFileSync(src, '[Unit]\nDescription=x\n');
    const once = `ensure_dir ${root}/state 0700 ${user} ${group}\nensure_file ${src} ${root}/state/unit 0640 ${user} ${group} || true`;
    expect(await helpers(once)).toEqual([
      `+ install -d -m 0700 -o ${user} -g ${group} ${root}/state`,
      `+ install -m 0640 -o ${user} -g ${group} ${src} ${root}/state/unit`,
    ]);
    expect(await helpers(once)).toEqual([
      `= directory ${root}/state (0700 ${user}:${group})`,
      `= file ${root}/state/unit (0640 ${user}:${group})`,
    ]);
    chmodSync(join(root, 'state'), 0o755);
    chmodSync(join(root, 'state/unit'), 0o644);
    expect(await helpers(once)).toEqual([
      `+ install -d -m 0700 -o ${user} -g ${group} ${root}/state`,
      `+ install -m 0640 -o ${user} -g ${group} ${src} ${root}/state/unit`,
    ]);
    writeFileSync(src, '[Unit]\nDescription=y\n');
    expect((await helpers(once))[1]).toBe(
      `+ install -m 0640 -o ${user} -g ${group} ${src} ${root}/state/unit`,
    );
    expect(readFileSync(join(root, 'state/unit'), 'utf8')).toContain('Description=y');
    // ensure_file says whether it acted (the installer reloads systemd only then).
    expect(
      await helpers(
        `if ensure_file ${src} ${root}/state/unit 0640 ${user} ${group}; then echo acted; else echo kept; fi`,
      ),
    ).toEqual([`= file ${root}/state/unit (0640 ${user}:${group})`, 'kept']);
  });

  it.skipIf(!isRoot)(
    'copies the app once, then only the part that changed (root: it chowns to root)',
    async () => {
      const root = tempDir();
      const checkout = join(root, 'checkout');
      for (const part of ['gateway/src', 'gateway/deploy', 'shared/src', 'docs']) {
        mkdirSync(join(checkout, part), { recursive: true });
        writeFileSync(join(checkout, part, 'a.ts'), `// ${part}\n`);
      }
      writeFileSync(join(checkout, 'package.json'), '{}\n');
      writeFileSync(join(checkout, 'package-lock.json'), '{}\n');
      const app = join(root, 'opt-pilepass');
      const first = await helpers(`install_app ${checkout} ${app}`);
      expect(first.filter((l) => l.startsWith('+ cp -r '))).toHaveLength(4);
      expect(first.filter((l) => l.startsWith('+ install -m 0644 '))).toHaveLength(2);
      expect(readFileSync(join(app, 'shared/src/a.ts'), 'utf8')).toBe('// shared/src\n');
      expect(await helpers(`install_app ${checkout} ${app}`)).toEqual(
        ['gateway/src', 'gateway/deploy', 'shared/src', 'docs', 'package.json', 'package-lock.json'].map(
          (p) => `= app ${app}/${p}`,
        ),
      );
      writeFileSync(join(checkout, 'shared/src/b.ts'), '// new\n');
      rmSync(join(checkout, 'shared/src/a.ts'));
      const third = await helpers(`install_app ${checkout} ${app}`);
      expect(third.filter((l) => l.startsWith('+ '))).toEqual([
        `+ rm -rf ${app}/shared/src`,
        `+ cp -r ${checkout}/shared/src ${app}/shared/src`,
        `+ chown -R root:root ${app}/shared/src`,
        `+ chmod -R u=rwX,go=rX ${app}/shared/src`,
      ]);
      expect(existsSync(join(app, 'shared/src/a.ts'))).toBe(false); // deleted upstream, gone here
      // Run from the installed copy itself: nothing to copy.
      expect(await helpers(`install_app ${app} ${app}`)).toEqual([
        `= app: running from the installed copy ${app} (to update, run install.sh from a newer checkout)`,
      ]);
    },
  );
});

// ---- the unit ---------------------------------------------------------------------------------

/** Key → values (a key may repeat) of one section of a unit file. */
function unitSection(text: string, section: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    keys.set(key, [...(keys.get(key) ?? []), line.slice(eq + 1)]);
  }
  return keys;
}

/** A scratch root with the host's systemd units and a /usr/bin/node, for offline verification. */
function verifyRoot(unitText: string): string {
  const root = tempDir();
  const hostUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => existsSync(d));
  if (!hostUnits) throw new Error('no systemd unit directory on this machine');
  cpSync(hostUnits, join(root, 'usr/lib/systemd/system'), { recursive: true, dereference: false });
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  writeFileSync(join(root, 'usr/bin/node'), '#!/bin/sh\n');
  chmodSync(join(root, 'usr/bin/node'), 0o755);
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
  writeFileSync(join(root, 'etc/systemd/system/pilepass-gateway.service'), unitText);
  return root;
}

const hasAnalyze = has('systemd-analyze');
const analyzeSkip = 'systemd-analyze not installed: run scripts/system-deps.sh deploy';

describe('pilepass-gateway.service', () => {
  const text = readFileSync(UNIT, 'utf8');
  const service = unitSection(text, 'Service');
  const unit = unitSection(text, 'Unit');
  const one = (key: string) => {
    const values = service.get(key);
    expect(values, key).toHaveLength(1);
    return values![0]!;
  };

  it.skipIf(!hasAnalyze)(
    `passes systemd-analyze verify with no warning${hasAnalyze ? '' : ` (${analyzeSkip})`}`,
    async () => {
      const root = verifyRoot(text);
      const ok = await sh('systemd-analyze', ['verify', `--root=${root}`, 'pilepass-gateway.service']);
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      // The check can fail: a typo'd key, bad device rights and a missing executable are reported.
      const broken = text
        .replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes')
        .replace('DeviceAllow=char-gpiochip rw', 'DeviceAllow=char-gpiochip rwx')
        .replace('ExecStart=/usr/bin/node', 'ExecStart=/usr/bin/nodejs');
      const bad = await sh('systemd-analyze', [
        'verify',
        `--root=${verifyRoot(broken)}`,
        'pilepass-gateway.service',
      ]);
      expect(bad.stderr).toMatch(/Unknown key 'NoNewPrivilege'/);
      expect(bad.stderr).toMatch(/Invalid device rights 'rwx'/);
      expect(bad.stderr).toMatch(/\/usr\/bin\/nodejs is not executable/);
    },
  );

  it.skipIf(!hasAnalyze)(
    `has a low exposure in systemd-analyze security${hasAnalyze ? '' : ` (${analyzeSkip})`}`,
    async () => {
      const root = verifyRoot(text);
      const { stdout } = await sh('systemd-analyze', [
        'security',
        '--offline=true',
        `--root=${root}`,
        'pilepass-gateway.service',
      ]);
      const exposure = /Overall exposure level for pilepass-gateway\.service: ([0-9.]+)/.exec(stdout);
      expect(exposure, stdout.slice(-500)).not.toBeNull();
      // 0 = fully locked down, 10 = unprotected; Bluetooth and GPIO need some access.
      expect(Number(exposure![1])).toBeLessThanOrEqual(3.5);
    },
  );

  it('starts the installed CLI with the installed config, as pilepass, logging to journald', () => {
    const exec = one('ExecStart').split(' ');
    expect(exec[0]).toBe('/usr/bin/node');
    const cli = exec.find((a) => a.startsWith('/opt/pilepass/'))!;
    expect(existsSync(join(REPO, cli.slice('/opt/pilepass/'.length)))).toBe(true);
    expect(exec.slice(exec.indexOf(cli) + 1)).toEqual(['start', '--config', '/etc/pilepass/gateway.json']);
    expect(one('User')).toBe('pilepass');
    expect(one('Group')).toBe('pilepass');
    expect(one('SupplementaryGroups').split(' ')).toEqual(['gpio', 'dialout']);
    expect(one('StandardError')).toBe('journal');
    expect(one('StandardOutput')).toBe('journal');
  });

  it('is a notify service with a watchdog, restarted on failure but not on a config error', () => {
    expect(one('Type')).toBe('notify');
    expect(one('NotifyAccess')).toBe('all'); // systemd-notify children send the messages
    const watchdog = Number(one('WatchdogSec'));
    expect(watchdog).toBeGreaterThanOrEqual(10);
    expect(Number(one('TimeoutStartSec'))).toBeGreaterThan(watchdog);
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartPreventExitStatus')).toBe('2'); // ConfigError / UsageError exit code in cli.ts
    expect(readFileSync(join(REPO, 'gateway/src/cli.ts'), 'utf8')).toMatch(
      /err instanceof UsageError \|\| err instanceof ConfigError[\s\S]{0,200}process\.exitCode = 2/,
    );
    expect(unit.get('StartLimitAction')).toEqual(['reboot']);
    expect(unit.get('Conflicts')).toEqual(['bluetooth.service']);
    expect(unit.get('RequiresMountsFor')).toEqual(['/var/lib/pilepass']);
  });

  it('is hardened: read-only system, state only in /var/lib/pilepass, two capabilities, few address families and devices', () => {
    for (const [key, value] of [
      ['ProtectSystem', 'strict'],
      ['ReadWritePaths', '/var/lib/pilepass'],
      ['StateDirectory', 'pilepass'],
      ['StateDirectoryMode', '0700'],
      ['NoNewPrivileges', 'yes'],
      ['PrivateTmp', 'yes'],
      ['ProtectHome', 'yes'],
      ['ProtectKernelTunables', 'yes'],
      ['ProtectKernelModules', 'yes'],
      ['ProtectKernelLogs', 'yes'],
      ['ProtectControlGroups', 'yes'],
      ['RestrictNamespaces', 'yes'],
      ['RestrictSUIDSGID', 'yes'],
      ['LockPersonality', 'yes'],
      ['DevicePolicy', 'closed'],
      ['UMask', '0077'],
      ['LimitCORE', '0'],
    ] as const) {
      expect(one(key), key).toBe(value);
    }
    expect(one('CapabilityBoundingSet').split(' ').sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    expect(one('AmbientCapabilities').split(' ').sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    expect(one('RestrictAddressFamilies').split(' ').sort()).toEqual(
      ['AF_BLUETOOTH', 'AF_CAN', 'AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'].sort(),
    );
    const devices = service.get('DeviceAllow') ?? [];
    for (const d of ['char-gpiochip rw', 'char-ttyAMA rw', 'char-ttyUSB rw']) expect(devices).toContain(d);
    for (const d of devices) expect(d).toMatch(/^char-tty[A-Z]*|^char-gpiochip /);
    expect(service.has('MemoryDenyWriteExecute')).toBe(false); // V8's JIT
  });

  it('agrees with install.sh and the CLI wrapper on user, paths and Node', () => {
    const installer = readFileSync(INSTALL, 'utf8');
    const wrapper = readFileSync(WRAPPER, 'utf8');
    for (const [name, value] of [
      ['STATE_DIR', '/var/lib/pilepass'],
      ['CONFIG_DIR', '/etc/pilepass'],
      ['APP_DIR', '/opt/pilepass'],
      ['SERVICE_USER', 'pilepass'],
      ['DEFAULT_NODE', '/usr/bin/node'],
    ]) {
      expect(installer).toMatch(new RegExp(`^readonly ${name}=${value}$`, 'm'));
    }
    expect(wrapper).toMatch(/^NODE=\/usr\/bin\/node$/m);
    expect(wrapper).toMatch(/^CLI=\/opt\/pilepass\/gateway\/src\/cli\.ts$/m);
    expect(wrapper).toMatch(/^CONFIG=\/etc\/pilepass\/gateway\.json$/m);
    expect(wrapper).toMatch(/^STATE=\/var\/lib\/pilepass$/m);
    // The config template keeps the state where the unit lets the service write.
    const template = JSON.parse(readFileSync(join(DEPLOY, 'gateway.example.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(template.dataDir).toBe('/var/lib/pilepass');
    expect(template.gatewayId).toBeUndefined(); // set after provisioning; until then the unit will not start
    expect(() => parseConfig({ ...template, gatewayId: 'gw-0001' })).not.toThrow();
  });
});

// ---- the app on the station's Node ------------------------------------------------------------

describe('the app without tsx (Node type stripping, plain ESM resolution)', () => {
  it('the CLI runs', async () => {
    const { code, stdout, stderr } = await sh(process.execPath, [
      '--import',
      STRIP_TYPES,
      join(REPO, 'gateway/src/cli.ts'),
      '--help',
    ]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: pilepass-gateway');
  });

  it('every gateway and shared module loads', async () => {
    const script = `
      import { readdirSync, statSync } from 'node:fs';
      import { join } from 'node:path';
      import { pathToFileURL } from 'node:url';
      const walk = (d) => readdirSync(d).flatMap((n) => {
        const p = join(d, n);
        return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
      });
      const failed = [];
      for (const file of [...walk(${JSON.stringify(join(REPO, 'gateway/src'))}), ...walk(${JSON.stringify(join(REPO, 'shared/src'))})]) {
        // Entry points that act on import: the CLI (runs above) and the sim pile process.
        if (file.endsWith('/cli.ts') || file.endsWith('/sim-pile.ts')) continue;
        try { await import(pathToFileURL(file).href); }
        catch (err) { failed.push(file + ': ' + String(err.message).split('\\n')[0]); }
      }
      console.log(JSON.stringify(failed));
    `;
    const dir = tempDir();
    const entry = join(dir, 'load-all.mjs');
    writeFileSync(entry, script);
    const { stdout, stderr, code } = await sh(process.execPath, ['--import', STRIP_TYPES, entry]);
    expect(code, stderr).toBe(0);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual([]);
  });
});

// ---- docs ---------------------------------------------------------------------------------------

/** Leaf paths of a zod object schema (nested objects flattened with dots). */
function configLeaves(schema: unknown, prefix = ''): string[] {
  type Def = { type: string; shape?: Record<string, unknown>; innerType?: unknown };
  const def = (s: unknown) => (s as { _zod: { def: Def } })._zod.def;
  let d = def(schema);
  while (['optional', 'default', 'nullable', 'prefault'].includes(d.type) && d.innerType)
    d = def(d.innerType);
  if (d.type !== 'object' || !d.shape) return [prefix];
  return Object.entries(d.shape).flatMap(([k, v]) => configLeaves(v, prefix ? `${prefix}.${k}` : k));
}

describe('docs/raspberry-pi.md', () => {
  const doc = readFileSync(join(REPO, 'docs/raspberry-pi.md'), 'utf8');
  const reference = doc.slice(doc.indexOf('## Configuration reference'));
  const row = (path: string) => reference.split('\n').find((l) => l.startsWith(`| \`${path}\``));

  it('the config reference has a row for every field of gateway/src/config.ts', () => {
    const leaves = configLeaves(configSchema);
    expect(leaves).toEqual(expect.arrayContaining(['gatewayId', 'ble', 'limits.helloTtlMs']));
    const missing = leaves.filter((path) => !row(path));
    expect(missing, 'add these to the table in docs/raspberry-pi.md').toEqual([]);
  });

  it('the config reference states every default as the schema applies it', () => {
    // The top level's defaults, and each optional section's, filled from its smallest valid
    // form (a section added without an entry here fails: its defaults would go unchecked).
    const top = parseConfig({ gatewayId: 'gw-0001' }) as Record<string, unknown>;
    const smallest: Record<string, unknown> = {
      ocpp: { chargePointId: 'CP1' },
      relay: {
        connectors: [
          {
            connector: 1,
            enable: { line: 17 },
            feedback: { line: 27 },
            meter: { type: 'modbus', unitId: 1, model: 'sdm630', meterId: 'm1' },
          },
        ],
        modbus: { port: '/dev/ttyAMA0' },
      },
      can: {},
    };
    const shape = configSchema.shape as Record<string, { parse(v: unknown): unknown }>;
    const sections = Object.keys(shape).filter((k) => configLeaves(shape[k]).some((p) => p !== ''));
    expect(sections.filter((k) => k !== 'limits' && !(k in smallest))).toEqual([]);
    const filled: Record<string, unknown> = { ...top };
    for (const [name, input] of Object.entries(smallest)) filled[name] = shape[name]!.parse(input);
    const given = new Set(['gatewayId', 'ocpp.chargePointId', 'relay.connectors', 'relay.modbus.port']);
    const valueAt = (path: string) =>
      path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], filled);
    const wrong: string[] = [];
    for (const path of configLeaves(configSchema)) {
      const value = valueAt(path);
      if (value === undefined || given.has(path)) continue;
      if (!row(path)?.includes(`\`${JSON.stringify(value)}\``))
        wrong.push(`${path}: default ${JSON.stringify(value)}`);
    }
    expect(wrong).toEqual([]);
    // And the check sees the sections' defaults at all.
    expect(valueAt('can.interface')).toBe('can0');
    expect(valueAt('relay.modbus.baudRate')).toBe(9600);
  });

  it('is linked from the README and docs/gateway.md; the wiring diagram exists', () => {
    expect(readFileSync(join(REPO, 'README.md'), 'utf8')).toContain('docs/raspberry-pi.md');
    expect(readFileSync(join(REPO, 'docs/gateway.md'), 'utf8')).toContain('raspberry-pi.md');
    expect(doc).toContain('img/relay-evse-wiring.svg');
    const svg = readFileSync(join(REPO, 'docs/img/relay-evse-wiring.svg'), 'utf8');
    expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    for (const label of ['GPIO', 'relay', 'enable', 'contactor', 'RS-485', 'S0'])
      expect(svg).toContain(label);
  });
});
