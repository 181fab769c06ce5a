/**
 * `pilepass-gateway` — the station gateway's command line.
 *
 *   start            run the gateway (BLE peripheral, pile driver, ledger)
 *   status           gateway id, key, root, bundle, ledger head, open sessions, outbox
 *   keys show        the gateway's public key, key id and the digest vouchers must name
 *   ledger verify    recompute the hash chain and receipt links; exit 1 on any break
 *   ledger export    every ledger record as JSON lines
 *   install-root     pin the root key (provisioning without the cloud)
 *   install-bundle   install a root-signed sync bundle from a file
 * @module
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compressPublicKey, fromHex, ProtocolError, toHex } from '../../shared/src/index.ts';
import { ConfigError, type GatewayConfig, loadConfig } from './config.ts';
import { loadOrCreateGatewayKey, loadRootKey, pinRootKey } from './keys.ts';
import { Ledger } from './ledger/ledger.ts';

const HELP = `Usage: pilepass-gateway <command> [options]

Commands:
  start                      run the gateway
  status                     print the gateway's state as JSON
  keys show                  print the gateway public key, kid and key digest
  ledger verify              verify the ledger's hash chain (exit 1 on a break)
  ledger export              print every ledger record as JSON lines
  install-root --kid HEX --public-key HEX [--force]
                             pin the root key that signs sync bundles
    install-bundle FILE        install a root-signed sync bundle (binary COSE) from FILE
  provision --cloud URL --code CODE [--force]
                             register with the cloud, pin its root key, install the first bundle

Options (override the config file):
  --config FILE              JSON config file
  --gateway-id ID            e.g. gw-0001
  --data-dir DIR             state directory (keys, ledger); default ./data/gateway
  --ble hci|hci:N|uart:TTY   BLE controller (default hci)
  --ble socket:PATH          local socket instead of BLE (crash and soak tests)
  --pile sim|sim:SOCKET      pile driver (default sim, socket in the data dir)
  --pile ocpp                OCPP 1.6J charge point (needs an "ocpp" section in the config file)
  --pile relay|can           relay-enabled EVSE / CAN pile controller (need a "relay" / "can" section)
  --connectors 1,2           connector ids
    --cloud URL                sync with this cloud when online (start)
  --log-level LEVEL          fatal|error|warn|info|debug|trace|silent
  -h, --help                 this help
`;

function configFrom(values: Record<string, string | boolean | undefined>): GatewayConfig {
  return loadConfig(values.config as string | undefined, {
    gatewayId: values['gateway-id'] ?? (values.config ? undefined : 'gw-local-01'),
    dataDir: values['data-dir'],
    ble: values.ble,
    pile: values.pile,
    connectors: typeof values.connectors === 'string' ? values.connectors.split(',').map(Number) : undefined,
    logLevel: values['log-level'],
    cloudUrl: values.cloud,
  });
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      'gateway-id': { type: 'string' },
      'data-dir': { type: 'string' },
      ble: { type: 'string' },
      pile: { type: 'string' },
      connectors: { type: 'string' },
      'log-level': { type: 'string' },
      cloud: { type: 'string' },
      code: { type: 'string' },
      kid: { type: 'string' },
      'public-key': { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, sub, arg] = positionals;
  if (values.help || !command) {
    process.stdout.write(HELP);
    return command || values.help ? 0 : 2;
  }
  const config = configFrom(values);
  const ledgerPath = join(config.dataDir, 'ledger.sqlite');
  switch (`${command}${sub && command !== 'install-bundle' ? ` ${sub}` : ''}`) {
    case 'start': {
      // systemd readiness/watchdog, BLE adapter recovery, signals: service.ts.
      const { runGatewayService } = await import('./service.ts');
      await runGatewayService(config);
      return -1; // keep running
    }
    case 'status': {
      const identity = await loadOrCreateGatewayKey(config.dataDir);
      const root = loadRootKey(config.dataDir);
      const ledger = Ledger.open(ledgerPath);
      try {
        const head = ledger.head();
        const status = {
          gatewayId: config.gatewayId,
          publicKey: toHex(identity.key.publicKey),
          keyDigest: toHex(identity.keyDigest),
          root: root ? { kid: toHex(root.kid), publicKey: toHex(root.publicKey) } : null,
          bundleVersion: ledger.installedBundle()?.version ?? null,
          ledger: { sequence: head.sequence, head: toHex(head.hash) },
          openSessions: ledger
            .openSessions()
            .map((s) => ({ connector: s.connector, session: toHex(s.sessionId) })),
          pendingReceipts: ledger.pendingReceiptCount(),
          timeFloor: ledger.timeFloor(),
        };
        process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      } finally {
        ledger.close();
      }
      return 0;
    }
    case 'keys show': {
      const identity = await loadOrCreateGatewayKey(config.dataDir);
      const keys = {
        publicKey: toHex(identity.key.publicKey),
        kid: toHex(identity.kid),
        keyDigest: toHex(identity.keyDigest),
      };
      process.stdout.write(`${JSON.stringify(keys, null, 2)}\n`);
      return 0;
    }
    case 'ledger verify': {
      const ledger = Ledger.open(ledgerPath);
      try {
        const result = ledger.verify();
        process.stdout.write(
          `${JSON.stringify(result, (_k, v) => (v instanceof Uint8Array ? toHex(v) : v))}\n`,
        );
        return result.ok ? 0 : 1;
      } finally {
        ledger.close();
      }
    }
    case 'ledger export': {
      const ledger = Ledger.open(ledgerPath);
      try {
        for (const record of ledger.export()) process.stdout.write(`${JSON.stringify(record)}\n`);
      } finally {
        ledger.close();
      }
      return 0;
    }
    case 'install-root': {
      if (!values.kid || !values['public-key'])
        throw new UsageError('install-root needs --kid HEX and --public-key HEX');
      pinRootKey(
        config.dataDir,
        { kid: fromHex(values.kid), publicKey: compressPublicKey(fromHex(values['public-key'])) },
        values.force ?? false,
      );
      process.stdout.write(`root key pinned in ${config.dataDir}\n`);
      return 0;
    }
    case 'provision': {
      if (!values.cloud || !values.code) throw new UsageError('provision needs --cloud URL and --code CODE');
      const { provisionWithCloud } = await import('./provision.ts');
      const result = await provisionWithCloud(config.dataDir, values.cloud, values.code, {
        force: values.force ?? false,
      });
      const ledger = Ledger.open(ledgerPath);
      try {
        const { GatewaySync } = await import('./sync.ts');
        const { GatewayClock } = await import('./clock.ts');
        const { nodeCrypto } = await import('../../shared/src/crypto/node.ts');
        const identity = await loadOrCreateGatewayKey(config.dataDir);
        const sync = new GatewaySync({
          crypto: nodeCrypto,
          ledger,
          clock: new GatewayClock(ledger),
          root: loadRootKey(config.dataDir),
          gatewayId: result.gatewayId,
          gatewayKey: identity.key,
          gatewayKid: identity.kid,
        });
        await sync.load();
        await sync.installBundle(result.bundle);
      } finally {
        ledger.close();
      }
      process.stdout.write(
        `provisioned as ${result.gatewayId}: root key ${toHex(result.rootKid)} pinned, first bundle installed\n` +
          `start it with: pilepass-gateway start --gateway-id ${result.gatewayId} --cloud ${values.cloud}\n`,
      );
      return 0;
    }
    case 'install-bundle': {
      const file = sub ?? arg;
      if (!file) throw new UsageError('install-bundle needs a FILE');
      const { GatewaySync } = await import('./sync.ts');
      const { GatewayClock } = await import('./clock.ts');
      const { nodeCrypto } = await import('../../shared/src/crypto/node.ts');
      const identity = await loadOrCreateGatewayKey(config.dataDir);
      const ledger = Ledger.open(ledgerPath);
      try {
        const sync = new GatewaySync({
          crypto: nodeCrypto,
          ledger,
          clock: new GatewayClock(ledger),
          root: loadRootKey(config.dataDir),
          gatewayId: config.gatewayId,
          gatewayKey: identity.key,
          gatewayKid: identity.kid,
        });
        await sync.load();
        const bundle = await sync.installBundle(new Uint8Array(readFileSync(file)));
        process.stdout.write(
          `bundle version ${bundle.body.version} installed (${bundle.body.issuers.length} issuer keys)\n`,
        );
      } finally {
        ledger.close();
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command: ${positionals.join(' ')}`);
  }
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`pilepass-gateway: ${err.message}\n\n${err instanceof UsageError ? HELP : ''}`);
      process.exitCode = 2;
    } else if (err instanceof ProtocolError) {
      process.stderr.write(`pilepass-gateway: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`pilepass-gateway: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
