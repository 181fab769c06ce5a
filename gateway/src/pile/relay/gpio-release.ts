/**
 * What the kernel does with a GPIO output when the process holding it ends. Upstream Linux
 * returns a released line to input, so the hardware pull decides its level — the relay driver's
 * fail-safe. Raspberry Pi kernels instead **keep outputs driven** after release by default (so
 * that `gpioset` settings persist), which would leave the EVSE enabled after a crash; with
 * `dtparam=strict_gpiod` in /boot/firmware/config.txt (or
 * `pinctrl_bcm2835.persist_gpio_outputs=n` / `pinctrl_rp1.persist_gpio_outputs=n` on the kernel
 * command line) they revert to input like upstream. The module parameter is visible in sysfs.
 * @module
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type GpioReleaseBehaviour = 'keeps-output' | 'reverts-to-input' | 'unknown';

/** The pinctrl drivers of Raspberry Pi boards (Pi 1–4: bcm2835; Pi 5: RP1). */
const PARAMETER_FILES = [
  'module/pinctrl_bcm2835/parameters/persist_gpio_outputs',
  'module/pinctrl_rp1/parameters/persist_gpio_outputs',
];

/** Reads the kernel's `persist_gpio_outputs` parameter under `sysfsRoot` (default /sys). */
export function gpioReleaseBehaviour(sysfsRoot = '/sys'): GpioReleaseBehaviour {
  let found: GpioReleaseBehaviour = 'unknown';
  for (const file of PARAMETER_FILES) {
    let value: string;
    try {
      value = readFileSync(join(sysfsRoot, file), 'utf8').trim();
    } catch {
      continue;
    }
    if (value === 'Y' || value === '1') return 'keeps-output';
    if (value === 'N' || value === '0') found = 'reverts-to-input';
  }
  return found;
}

export const STRICT_GPIOD_ADVICE =
  'add "dtparam=strict_gpiod" to /boot/firmware/config.txt and reboot, so that a released GPIO ' +
  'returns to input and the hardware pull switches the EVSE off when the gateway process dies';
