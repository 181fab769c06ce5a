/**
 * The whole station on one machine, as separate processes: the cloud (SQLite), a gateway
 * provisioned through the cloud's one-time code and running on the emulated BLE radio
 * (`--ble uart:<pty>`, btvirt), the sim pile, and the PWA server (web/dist + `/v1` proxy).
 * By default the gateway has **no cloud link** — an off-network station whose data only
 * travels home in phones. Each part can be stopped and started again (the offline scenario
 * stops the cloud and the PWA server). Used by `npm start`, `npm run demo` and the browser
 * scenario test. Node only.
 * @module
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSimPileControl, type SimPileControl } from '../../gateway/src/pile/sim-driver.ts';
import { type SimPileProcess, startSimPileProcess } from '../../gateway/src/pile/sim-pile-process.ts';
import { type GatewayProcess, startGatewayProcess } from '../virtual-ble/gateway-process.ts';
import { startVirtualRadio, type VirtualRadio } from '../virtual-ble/radio.ts';
import { type CloudProcess, freePort, startCloudProcess } from './cloud-process.ts';
import { type PwaServer, startPwaServer } from './pwa-server.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const GATEWAY_BIN = join(REPO_ROOT, 'gateway/bin/pilepass-gateway');
export const WEB_DIST = join(REPO_ROOT, 'web/dist');

/** Embedded defaults for a local station. Never use these keys or tokens in production. */
export const DEMO = {
  masterKeyHex: 'dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0dea0',
  operatorToken: 'pilepass-demo-operator-token',
  gatewayId: 'gw-demo-01',
  stationName: 'PilePass Demo Station',
  location: 'Demo car park, bay 1–2',
  connectors: [
    { id: 1, powerW: 7_000 },
    { id: 2, powerW: 22_000 },
  ],
  /** 1.20 + 0.40 CNY per kWh, in 1/10,000 minor unit per kWh. */
  tariff: { energyPrice: 1_200_000, serviceFee: 400_000, timeFee: 0 },
  currency: 'CNY',
  driver: { email: 'driver@pilepass.demo', password: 'pilepass-demo', balance: 20_000 },
} as const;

export interface WholeStationOptions {
  /** Everything the station writes (cloud DB, gateway ledger, pile state); wiped at start. */
  readonly dataDir: string;
  readonly cloudPort?: number;
  readonly pwaPort?: number;
  /**
   * Simulated-time multiplier of the pile (default 1). Faster piles deliver energy the cloud
   * rightly rejects as implausible for the connector's power over the receipt's wall-clock time.
   */
  readonly pileSpeed?: number;
  /** Give the gateway a cloud link (an online station). Default false: off-network. */
  readonly gatewayOnline?: boolean;
  /** BLE devices besides the gateway: one per virtual phone (default 2). */
  readonly phones?: number;
  /** Also register the demo driver with a balance (npm start). */
  readonly demoDriver?: boolean;
  readonly log?: (line: string) => void;
  readonly gatewayLogLevel?: string;
}

export interface WholeStation {
  readonly dataDir: string;
  readonly cloudUrl: string;
  readonly pwaUrl: string;
  readonly gatewayId: string;
  /** HCI UART ptys free for phones (noble in the Web Bluetooth bridge or the phone simulator). */
  readonly phonePtys: readonly string[];
  readonly radio: VirtualRadio;
  readonly pile: SimPileControl;
  readonly gateway: GatewayProcess;
  stopCloud(): Promise<void>;
  startCloud(): Promise<void>;
  stopPwa(): Promise<void>;
  startPwa(): Promise<void>;
  /** Calls the cloud's API directly (operator calls carry the operator token). */
  api(path: string, body?: unknown, headers?: Record<string, string>): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Builds the PWA when web/dist is missing (or when `force`). */
export function buildWeb(force = false, log: (line: string) => void = () => {}): void {
  if (!force && existsSync(join(WEB_DIST, 'index.html'))) return;
  log('building the PWA (vite build)…');
  const r = spawnSync('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: REPO_ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('vite build failed');
}

export async function startWholeStation(options: WholeStationOptions): Promise<WholeStation> {
  const log = options.log ?? (() => {});
  const dataDir = resolve(options.dataDir);
  // A fresh station each run: the demo's ids and keys are fixed, so old state would clash.
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const cloudPort = options.cloudPort ?? (await freePort());
  const pwaPort = options.pwaPort ?? (await freePort());
  const cleanups: (() => Promise<void>)[] = [];
  // Children that do not watch this process themselves die with it, even on a crash.
  const children = new Set<number>();
  const killChildren = () => {
    for (const pid of children) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', killChildren);
  const stop = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
    process.removeListener('exit', killChildren);
  };
  try {
    let cloud: CloudProcess | undefined;
    const startCloud = async () => {
      cloud = await startCloudProcess({
        port: cloudPort,
        dataDir: join(dataDir, 'cloud'),
        masterKeyHex: DEMO.masterKeyHex,
        operatorToken: DEMO.operatorToken,
      });
      if (cloud.child.pid) children.add(cloud.child.pid);
      log(`cloud        ${cloud.url} (pid ${cloud.child.pid})`);
    };
    const stopCloud = async () => {
      if (cloud?.child.pid) children.delete(cloud.child.pid);
      await cloud?.stop();
      cloud = undefined;
    };
    await startCloud();
    cleanups.push(stopCloud);
    const cloudUrl = `http://127.0.0.1:${cloudPort}`;
    const api = async (path: string, body?: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(new URL(path, cloudUrl), {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(path.startsWith('/v1/operator/') ? { authorization: `Bearer ${DEMO.operatorToken}` } : {}),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    };

    // The operator registers the station; the installer provisions the gateway with the code.
    const registered = await api('/v1/operator/gateways', {
      id: DEMO.gatewayId,
      operatorId: 'demo-operator',
      name: DEMO.stationName,
      location: DEMO.location,
      connectors: DEMO.connectors,
      tariff: DEMO.tariff,
      currency: DEMO.currency,
    });
    const gatewayDir = join(dataDir, 'gateway');
    const provision = spawnSync(
      GATEWAY_BIN,
      [
        'provision',
        '--cloud',
        cloudUrl,
        '--code',
        String(registered.provisioningCode),
        '--data-dir',
        gatewayDir,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    if (provision.status !== 0) throw new Error(`provisioning failed: ${provision.stderr}`);
    log(`gateway      ${DEMO.gatewayId} provisioned (root key pinned, first bundle installed)`);

    const radio = await startVirtualRadio({ devices: 1 + (options.phones ?? 2) });
    cleanups.push(() => radio.stop());
    const pileProcess: SimPileProcess = await startSimPileProcess({
      dir: dataDir,
      connectors: DEMO.connectors.map((c) => c.id),
      speed: options.pileSpeed ?? 1,
      watchPid: process.pid,
    });
    cleanups.push(() => pileProcess.stop());
    const pile = await createSimPileControl(pileProcess.socketPath);
    cleanups.push(() => pile.close());
    log(`sim pile     ${pileProcess.socketPath} (pid ${pileProcess.pid})`);

    const gateway = await startGatewayProcess({
      blePty: radio.ptys[0] as string,
      pile: `sim:${pileProcess.socketPath}`,
      gatewayId: DEMO.gatewayId,
      dataDir: gatewayDir,
      connectors: DEMO.connectors.map((c) => c.id),
      // 'info' at least: the launcher waits for the "gateway started" line.
      logLevel: options.gatewayLogLevel ?? 'info',
      extraArgs: options.gatewayOnline ? ['--cloud', cloudUrl] : [],
    });
    children.add(gateway.pid);
    cleanups.push(async () => {
      await gateway.stop();
    });
    log(`gateway      BLE on ${radio.ptys[0]} (emulated controller), pid ${gateway.pid}`);

    let pwa: PwaServer | undefined;
    const startPwa = async () => {
      pwa = await startPwaServer({ root: WEB_DIST, cloudUrl, port: pwaPort });
    };
    const stopPwa = async () => {
      await pwa?.close();
      pwa = undefined;
    };
    await startPwa();
    cleanups.push(stopPwa);
    const pwaUrl = `http://127.0.0.1:${pwaPort}/`;
    log(`PWA          ${pwaUrl}`);

    if (options.demoDriver) {
      const d = DEMO.driver;
      await api('/v1/drivers', { email: d.email, password: d.password, currency: DEMO.currency });
      const { token } = await api('/v1/sessions', { email: d.email, password: d.password });
      await api(
        '/v1/wallet/top-ups',
        { amount: d.balance },
        { authorization: `Bearer ${String(token)}`, 'idempotency-key': 'demo-initial-balance' },
      );
      log(`demo driver  ${d.email} / ${d.password} with ${d.balance / 100} ${DEMO.currency}`);
    }

    return {
      dataDir,
      cloudUrl,
      pwaUrl,
      gatewayId: DEMO.gatewayId,
      phonePtys: radio.ptys.slice(1),
      radio,
      pile,
      gateway,
      stopCloud,
      startCloud,
      stopPwa,
      startPwa,
      api,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
