/**
 * `pilepass-gateway start` as a long-running service: the gateway plus what an unattended
 * station needs around it — systemd readiness and watchdog (systemd.ts), a BLE transport that
 * takes the Pi's adapter and recovers from losing it (ble/adapter-recovery.ts, ble/hci-adapter.ts),
 * and the escalation when the adapter does not come back: stop once no session is open and exit
 * with EXIT_ADAPTER_LOST, so systemd restarts the process (Restart=on-failure).
 * @module
 */

import { createBleTransport, isBleHardware } from './ble/station-transport.ts';
import type { GatewayConfig } from './config.ts';
import { createLogger, type RunningGateway, startGateway } from './gateway.ts';
import { createSystemdNotifier, type SystemdNotifier } from './systemd.ts';

/** Exit status after the BLE adapter could not be recovered (EX_TEMPFAIL: try again). */
export const EXIT_ADAPTER_LOST = 75;
/** How often a gateway waiting to restart checks for open sessions, ms. */
const IDLE_POLL_MS = 5_000;

export interface ServiceOptions {
  /** Called instead of process.exit (tests). */
  readonly exit?: (code: number) => void;
  /** Environment with NOTIFY_SOCKET / WATCHDOG_USEC (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunningService {
  readonly gateway: RunningGateway;
  readonly notifier: SystemdNotifier | undefined;
  /** Graceful stop (what SIGTERM does), then exit with `code`. */
  shutdown(reason: string, code: number): Promise<void>;
}

/** Starts the gateway as a service; resolves once it is ready (READY=1 sent). */
export async function runGatewayService(
  config: GatewayConfig,
  options: ServiceOptions = {},
): Promise<RunningService> {
  const logger = createLogger(config);
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const notifier = createSystemdNotifier({ env: options.env ?? process.env, log: logger });
  let gateway: RunningGateway | undefined;
  let adapterState = 'starting';

  const statusLine = () => {
    if (!gateway) return `starting (BLE ${adapterState})`;
    return (
      `serving ${config.gatewayId}: BLE ${adapterState}, ` +
      `${gateway.ledger.openSessions().length} open session(s), ` +
      `${gateway.ledger.pendingReceiptCount()} receipt(s) to send`
    );
  };

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason: string, code: number): Promise<void> => {
    shuttingDown ??= (async () => {
      logger.info({ reason, code }, 'shutting down');
      await notifier?.stopping();
      await gateway?.stop();
      exit(code);
    })();
    return shuttingDown;
  };

  /** The adapter is gone for good: restart the process, but never in the middle of a session. */
  const onAdapterGivenUp = (error: Error) => {
    logger.error(
      { err: error.message },
      'BLE adapter unrecoverable: restarting the gateway once no session is open',
    );
    whenIdle(
      () => gateway?.ledger.openSessions().length ?? 0,
      () => void shutdown('BLE adapter lost', EXIT_ADAPTER_LOST),
    );
  };

  const transport = isBleHardware(config.ble)
    ? await createBleTransport(config, logger, {
        onGiveUp: onAdapterGivenUp,
        onStateChange: (state) => {
          adapterState = state;
          if (gateway) void notifier?.status(statusLine());
        },
      })
    : undefined;
  if (!transport) adapterState = config.ble; // socket / in-process: no adapter
  gateway = await startGateway(config, { logger, ...(transport ? { transport } : {}) });

  const running = gateway;
  let lastSequence = running.ledger.head().sequence;
  await notifier?.ready(statusLine());
  notifier?.startWatchdog({
    // A real query on the ledger's connection: an I/O error or a closed database throws.
    ledger: () => {
      const { sequence } = running.ledger.head();
      if (sequence < lastSequence) return `ledger head went back from ${lastSequence} to ${sequence}`;
      lastSequence = sequence;
      return undefined;
    },
  });
  if (notifier?.watchdogIntervalMs !== undefined) {
    logger.info({ intervalMs: notifier.watchdogIntervalMs }, 'systemd watchdog armed');
  }
  process.once('SIGINT', () => void shutdown('SIGINT', 0));
  process.once('SIGTERM', () => void shutdown('SIGTERM', 0));
  return { gateway: running, notifier, shutdown };
}

/**
 * Calls `then` once `openSessions()` is 0 — now, or at the first poll that finds it so.
 * Returns a cancel function.
 */
export function whenIdle(openSessions: () => number, then: () => void, pollMs = IDLE_POLL_MS): () => void {
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const check = () => {
    if (cancelled) return;
    if (openSessions() === 0) then();
    else timer = setTimeout(check, pollMs);
  };
  check();
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}
