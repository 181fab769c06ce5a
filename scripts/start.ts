/**
 * `npm start`: the whole station on this machine, on embedded defaults — the cloud (SQLite
 * under ./data/station), a gateway provisioned through the cloud and running on BlueZ's
 * emulated BLE controller with the sim pile, the PWA on localhost, a demo driver with a
 * balance — and a **virtual phone**: Chromium whose Web Bluetooth is bridged to that gateway.
 * With a display the phone is a window to click through; without one it runs the driver's
 * journey headless and saves a screenshot per step. Ctrl-C stops everything.
 *
 *   npm start                 (window if $DISPLAY is set, else headless journey)
 *   npm start -- --headless   (force the headless journey)
 *   npm start -- --no-phone   (station only: cloud, gateway, pile, PWA)
 * @module
 */

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium } from './station/chromium.ts';
import { formatStep, runDriverJourney } from './station/scenario.ts';
import { buildWeb, DEMO, startWholeStation } from './station/whole-station.ts';
import { startWebBluetoothBridge } from './virtual-ble/web-bluetooth-bridge.ts';

const { values } = parseArgs({
  options: {
    headless: { type: 'boolean', default: false },
    'no-phone': { type: 'boolean', default: false },
    'cloud-port': { type: 'string', default: '8080' },
    'pwa-port': { type: 'string', default: '5173' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'Usage: npm start [-- --headless] [-- --no-phone] [-- --cloud-port N] [-- --pwa-port N]\n',
  );
  process.exit(0);
}

const dataDir = join(process.cwd(), 'data', 'station');
const say = (line: string) => process.stdout.write(`${line}\n`);

say('PilePass — starting the whole station locally (demo keys: never use them in production)');
buildWeb(true, say);
const station = await startWholeStation({
  dataDir,
  cloudPort: Number(values['cloud-port']),
  pwaPort: Number(values['pwa-port']),
  demoDriver: true,
  phones: 2,
  log: (line) => say(`  ${line}`),
});

let shuttingDown = false;
const cleanups: (() => Promise<unknown>)[] = [];
async function shutdown(code = 0): Promise<never> {
  if (!shuttingDown) {
    shuttingDown = true;
    say('\nstopping…');
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await station.stop();
  }
  process.exit(code);
}
process.once('SIGINT', () => void shutdown());
process.once('SIGTERM', () => void shutdown());

say(`
The station is up:
  PWA (driver app)   ${station.pwaUrl}
  cloud API          ${station.cloudUrl}/v1  (OpenAPI: ${station.cloudUrl}/openapi.json)
  station            ${DEMO.stationName} (${DEMO.gatewayId}), connectors 1 (7 kW) and 2 (22 kW), off-network
  demo driver        ${DEMO.driver.email} / ${DEMO.driver.password} (balance ${DEMO.driver.balance / 100} ${DEMO.currency})
  pile code          pilepass:${DEMO.gatewayId}/1`);

if (values['no-phone']) {
  say('\nNo virtual phone (--no-phone). Open the PWA in Chromium; Web Bluetooth needs a real adapter there.');
} else if (process.env.DISPLAY && !values.headless) {
  const browser = await launchChromium({ headless: false });
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 420, height: 860 } });
  const page = await context.newPage();
  const bridge = await startWebBluetoothBridge({ browser, context, page, uartPort: station.phonePtys[0]! });
  cleanups.push(() => bridge.close());
  await page.goto(station.pwaUrl);
  say(`
A virtual phone window is open (Chromium, its Bluetooth bridged to the gateway). Try:
  1. Wallet → sign in as ${DEMO.driver.email} / ${DEMO.driver.password}
  2. Stations → "Buy pre-deduction" on connector 1
  3. Charge → "Tap to charge" (the station is picked for you) → watch → "Stop charging"
  4. Receipts → the receipt, uploaded when the app is online
Ctrl-C stops everything.`);
} else {
  const browser = await launchChromium();
  cleanups.push(() => browser.close());
  const screenshots = join(dataDir, 'screenshots');
  say(`\nNo display: the virtual phone runs the driver's journey headless (screenshots in ${screenshots}):`);
  try {
    const result = await runDriverJourney({
      browser,
      station,
      account: { email: DEMO.driver.email, password: DEMO.driver.password, existing: true },
      topUp: '0',
      hold: '50',
      connector: 2,
      screenshotDir: screenshots,
      onStep: (step) => say(formatStep(step)),
    });
    say(`  charged ${result.charged}, wallet now ${result.finalBalance}`);
  } catch (err) {
    say(`  ✗ ${(err as Error).message}`);
  }
  say(`\nThe station keeps running: open ${station.pwaUrl} in a browser. Ctrl-C stops everything.`);
}
await new Promise(() => {});
