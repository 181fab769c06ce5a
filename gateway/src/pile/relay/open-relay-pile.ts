/**
 * Builds the relay PileDriver from its validated config: refuses a kernel that keeps GPIO
 * outputs driven after the process ends (gpio-release.ts), opens the GPIO chip (node-libgpiod,
 * loaded lazily, unless a line layer is injected), requests every enable output first — each
 * driven inactive in its request — then the inputs, opens the Modbus bus and the meters, and
 * polls once so the gateway's start-up recovery can read every connector. On any failure it
 * gives back what it already took.
 * @module
 */

import { join } from 'node:path';
import { type PileTimers, systemTimers } from '../timers.ts';
import type { RelayPileConfig } from './config.ts';
import { GpioError, type GpioLines, type InputLine, type OutputLine } from './gpio.ts';
import { gpioReleaseBehaviour, STRICT_GPIOD_ADVICE } from './gpio-release.ts';
import { openLibgpiodLines } from './libgpiod-lines.ts';
import type { EnergyMeter } from './meter.ts';
import { type ModbusBus, openModbusBus } from './modbus-bus.ts';
import { createModbusMeter } from './modbus-meter.ts';
import type { RelayConnectorHardware } from './relay-connector.ts';
import { createRelayPileDriver, type RelayPileDriver } from './relay-driver.ts';
import { createFileS0Store, createS0Meter } from './s0-meter.ts';

export interface RelayPileDeps {
  /** Where S0 counts are persisted (`s0-connector-<n>.json`). */
  readonly dataDir: string;
  /** The line layer; default libgpiod on `config.gpioChip`. */
  readonly gpio?: GpioLines;
  readonly timers?: PileTimers;
  /** Where the kernel's GPIO parameters are read (default /sys); checked only for the libgpiod layer. */
  readonly sysfsRoot?: string;
  /** Overrides `config.pollMs`; 0 = no background polling (tests call `poll()`). */
  readonly pollMs?: number;
  /** Failed background polls, listener exceptions, S0 persist errors (default console.error). */
  readonly onError?: (error: unknown) => void;
}

/** How often `stop` looks at the feedback while it waits for the contactor to open, ms. */
const FEEDBACK_POLL_MS = 20;

export async function openRelayPile(config: RelayPileConfig, deps: RelayPileDeps): Promise<RelayPileDriver> {
  const timers = deps.timers ?? systemTimers;
  const onError = deps.onError ?? ((error: unknown) => console.error('relay pile:', error));
  if (!deps.gpio) {
    // Fail closed: with outputs that stay driven after a crash, "dead process = off" is false.
    const behaviour = gpioReleaseBehaviour(deps.sysfsRoot);
    if (behaviour === 'keeps-output') {
      throw new GpioError(
        'persist',
        `this kernel keeps GPIO outputs driven after the process ends (persist_gpio_outputs=Y): ${STRICT_GPIOD_ADVICE}`,
      );
    }
    if (behaviour === 'unknown') {
      onError(
        new GpioError(
          'persist',
          `cannot tell whether released GPIO outputs return to input (no persist_gpio_outputs parameter); on a Raspberry Pi ${STRICT_GPIOD_ADVICE}`,
        ),
      );
    }
  }
  const gpio = deps.gpio ?? (await openLibgpiodLines(config.gpioChip));
  const lines: (OutputLine | InputLine)[] = [];
  const meters: EnergyMeter[] = [];
  let bus: ModbusBus | undefined;
  const release = async () => {
    for (const meter of meters) await meter.close().catch(onError);
    await bus?.close().catch(onError);
    for (const line of lines.reverse()) {
      try {
        line.release();
      } catch (error) {
        onError(error);
      }
    }
    gpio.close();
  };

  try {
    const take = <L extends OutputLine | InputLine>(line: L): L => {
      lines.push(line);
      return line;
    };
    // Outputs first: every enable is held inactive before anything else can fail or take time.
    const enables = config.connectors.map((c) =>
      take(gpio.requestOutput(c.enable, `pilepass c${c.connector} enable`)),
    );
    if (config.modbus) bus = openModbusBus(config.modbus);
    const hardware: RelayConnectorHardware[] = config.connectors.map((c, i) => {
      const feedback = take(gpio.requestInput(c.feedback, `pilepass c${c.connector} feedback`));
      const plug = c.plug && take(gpio.requestInput(c.plug, `pilepass c${c.connector} plug`));
      const evseError = c.evseError && take(gpio.requestInput(c.evseError, `pilepass c${c.connector} error`));
      let meter: EnergyMeter;
      if (c.meter.type === 'modbus') {
        if (!bus) throw new RangeError(`connector ${c.connector}: Modbus meter without a Modbus bus`);
        meter = createModbusMeter(bus, c.meter);
      } else {
        meter = createS0Meter({
          input: take(gpio.requestInput(c.meter.input, `pilepass c${c.connector} s0`)),
          meterId: c.meter.meterId,
          pulsesPerKwh: c.meter.pulsesPerKwh,
          initialWh: c.meter.initialWh,
          reserveStepWh: c.meter.reserveStepWh,
          store: createFileS0Store(join(deps.dataDir, `s0-connector-${c.connector}.json`)),
          timers,
          sampleMs: config.s0SampleMs,
          onError,
        });
      }
      meters.push(meter);
      return {
        connector: c.connector,
        enable: enables[i] as OutputLine,
        feedback,
        plug,
        evseError,
        meter,
        meterCanFallSilent: c.meter.type === 'modbus',
      };
    });
    const driver = createRelayPileDriver({
      connectors: hardware,
      timers,
      timing: {
        contactorOpenMs: config.contactorOpenMs,
        meterSilentMs: config.meterSilentMs,
        mismatchPowerW: config.mismatchPowerW,
        mismatchGraceMs: config.mismatchGraceMs,
        feedbackPollMs: FEEDBACK_POLL_MS,
      },
      pollMs: deps.pollMs ?? config.pollMs,
      release,
      onError,
    });
    await driver.poll();
    return driver;
  } catch (error) {
    await release();
    throw error;
  }
}
