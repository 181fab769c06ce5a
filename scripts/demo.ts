/**
 * `npm run demo`: the driver's journey headless against a fresh local station, each step
 * printed with its time; exits non-zero if a step fails. Screenshots in data/demo/screenshots.
 * @module
 */

import { join } from 'node:path';
import { launchChromium } from './station/chromium.ts';
import { formatStep, runDriverJourney } from './station/scenario.ts';
import { buildWeb, startWholeStation } from './station/whole-station.ts';

const say = (line: string) => process.stdout.write(`${line}\n`);
const dataDir = join(process.cwd(), 'data', 'demo');
const t0 = performance.now();
buildWeb(true, say);
const station = await startWholeStation({ dataDir, log: (line) => say(`  ${line}`) });
say(`station up in ${Math.round(performance.now() - t0)} ms`);
const browser = await launchChromium();
let code = 0;
try {
  const result = await runDriverJourney({
    browser,
    station,
    connector: 2,
    screenshotDir: join(dataDir, 'screenshots'),
    onStep: (step) => say(formatStep(step)),
  });
  say(`charged ${result.charged}; wallet after settlement ${result.finalBalance}`);
  say(`screenshots: ${join(dataDir, 'screenshots')}`);
} catch (err) {
  say(`  ✗ ${(err as Error).message}`);
  code = 1;
} finally {
  await browser.close();
  await station.stop();
}
process.exit(code);
