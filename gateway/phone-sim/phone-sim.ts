/**
 * `pilepass-phone-sim` — a phone simulator on @stoprocent/noble for tests, load tests and
 * station technicians. It does over real BLE what the PWA does: scan for the gateway, connect,
 * exchange the MTU, read and check the hello against the voucher, write the sealed token (or an
 * attach), follow the encrypted status frames, optionally hand over a sync bundle, stop with a
 * device-signed request, verify the receipt and fetch the gateway report — printing every step
 * with its timing (one JSON object per line with `--json`).
 *
 * The voucher file format is in voucher-file.ts. Exit codes:
 *   0  success
 *   1  failure: BLE error, timeout, link lost, receipt that does not verify
 *   2  usage error
 *   3  refused by the gateway: in-band rejection or error, or a carried bundle not installed
 *   4  the phone refused the gateway: its hello does not match the voucher (wrong station)
 * @module
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { nodeCrypto } from '../../shared/src/crypto/node.ts';
import {
  ERROR_MESSAGES,
  equalBytes,
  errorName,
  isErrorCode,
  type PhoneEvent,
  type PhoneLink,
  PhoneSession,
  ProtocolError,
  parseBundle,
  parseReport,
  type Receipt,
  SessionMessageType,
  SessionState,
  type Status,
  StopReason,
  toHex,
  verifyPresentationProof,
  verifyReceipt,
  verifyReport,
} from '../../shared/src/index.ts';
import type { HciPort } from '../src/ble/bleno-transport.ts';
import { connectToGateway, type GatewayConnection } from '../src/ble/noble-central.ts';
import { readVoucherFile } from './voucher-file.ts';

const HELP = `Usage: pilepass-phone-sim --voucher FILE [options]

Presents a voucher to a PilePass gateway over BLE, as a phone would, and prints each step.

Options:
  --ble uart:TTY|hci|hci:N   HCI controller (default hci = hci0); uart:TTY for an HCI UART
                             (e.g. a btvirt pty)
  --voucher FILE             voucher file (JSON: voucher hex + device private key hex)
  --connector N              connector to charge at (default: the voucher's, else 1)
  --attach                   re-attach to the voucher's running session instead of a token
  --mtu 23|256               ATT MTU to ask for (default 256)
  --gateway-id ID            gateway to scan for (default: the voucher's gateway id)
  --stop-after-ms N          send a signed stop N ms after the session is charging
  --leave                    disconnect after the other actions, leaving the session running
  --bundle FILE              hand this sync bundle (binary COSE) to the gateway once authorized
  --report FILE              request the gateway report at the end and save it (binary COSE)
  --scan-timeout-ms N        how long to scan (default 15000)
  --timeout-ms N             timeout of every other wait (default 30000)
  --connect-attempts N       connection attempts (scan + connect) before giving up (default 3)
  --json                     one JSON object per step on stdout
  -h, --help                 this help

Without --stop-after-ms or --leave the simulator follows the session until it ends (receipt),
the link drops, or Ctrl-C.

Exit codes: 0 success; 1 failure (BLE, timeout, link lost, bad receipt); 2 usage;
3 refused by the gateway (prints the error name, code and message); 4 the hello does not
match the voucher (wrong station).
`;

const EXIT = { OK: 0, FAILED: 1, USAGE: 2, REFUSED: 3, WRONG_STATION: 4 } as const;

const STATE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(SessionState).map(([name, value]) => [value, name]),
);
const STOP_REASON_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(StopReason).map(([name, value]) => [value, name]),
);

class UsageError extends Error {}

/** A step the simulator tells the world about: printed as text, or as one JSON line. */
type Step = { readonly step: string } & Record<string, unknown>;

class Printer {
  readonly #json: boolean;
  readonly #t0: number;

  constructor(json: boolean, t0: number) {
    this.#json = json;
    this.#t0 = t0;
  }

  step(step: Step): void {
    const t = Math.round(performance.now() - this.#t0);
    if (this.#json) {
      process.stdout.write(`${JSON.stringify({ ...step, t }, jsonReplacer)}\n`);
      return;
    }
    const { step: name, ...fields } = step;
    const text = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, jsonReplacer)}`)
      .join(' ');
    process.stdout.write(`[${String(t).padStart(6)} ms] ${name.padEnd(10)} ${text}\n`);
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? toHex(value) : value;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** What a refusal looks like on screen and in JSON. */
function describeCode(code: number): { code: number; name: string; message: string } {
  return isErrorCode(code)
    ? { code, name: errorName(code), message: ERROR_MESSAGES[code].en }
    : { code, name: 'UNKNOWN', message: `unknown error code ${code}` };
}

function parsePort(value: string): HciPort {
  if (value.startsWith('uart:') && value.length > 5) return { port: 'uart', path: value.slice(5) };
  const m = /^hci(?::(\d+))?$/.exec(value);
  if (m) return { port: 'hci', deviceId: m[1] === undefined ? 0 : Number(m[1]) };
  throw new UsageError(`--ble: expected uart:<tty>, hci or hci:<n>, got ${JSON.stringify(value)}`);
}

function parseInteger(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name}: an integer ${min}–${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Phone events kept in arrival order, so a wait never misses one that came before it. */
class EventLog {
  readonly events: PhoneEvent[] = [];
  readonly #waiters = new Set<() => void>();

  push(event: PhoneEvent): void {
    this.events.push(event);
    for (const wake of [...this.#waiters]) wake();
  }

  /**
   * The first event from index `from` on that matches, or that ends the conversation
   * (rejected, error, disconnected). Rejects after `timeoutMs`.
   */
  async next(
    from: number,
    match: (e: PhoneEvent) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<{ event: PhoneEvent; index: number }> {
    const terminal = (e: PhoneEvent) =>
      e.kind === 'rejected' || e.kind === 'error' || e.kind === 'disconnected';
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = from; i < this.events.length; i++) {
          const event = this.events[i]!;
          if (match(event) || terminal(event)) {
            resolve({ event, index: i });
            return true;
          }
        }
        return false;
      };
      if (check()) return;
      const timer =
        timeoutMs === Number.POSITIVE_INFINITY
          ? undefined
          : setTimeout(() => {
              this.#waiters.delete(wake);
              reject(new Error(`${what}: nothing within ${timeoutMs} ms`));
            }, timeoutMs);
      const wake = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      this.#waiters.add(wake);
    });
  }
}

/** Thrown to end the run with a specific exit code after the step was printed. */
class Exit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`exit ${code}`);
    this.code = code;
  }
}

async function run(argv: string[], t0: number): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ble: { type: 'string', default: 'hci' },
      voucher: { type: 'string' },
      connector: { type: 'string' },
      attach: { type: 'boolean', default: false },
      mtu: { type: 'string', default: '256' },
      'gateway-id': { type: 'string' },
      'stop-after-ms': { type: 'string' },
      leave: { type: 'boolean', default: false },
      bundle: { type: 'string' },
      report: { type: 'string' },
      'scan-timeout-ms': { type: 'string', default: '15000' },
      'timeout-ms': { type: 'string', default: '30000' },
      'connect-attempts': { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals.join(' ')}`);
  if (!values.voucher) throw new UsageError('--voucher FILE is required');
  const port = parsePort(values.ble);
  const mtu = parseInteger(values.mtu, '--mtu', 23, 517)!;
  const connectorArg = parseInteger(values.connector, '--connector', 0, 255);
  const stopAfterMs = parseInteger(values['stop-after-ms'], '--stop-after-ms', 0, 86_400_000);
  const scanTimeoutMs = parseInteger(values['scan-timeout-ms'], '--scan-timeout-ms', 100, 600_000)!;
  const timeoutMs = parseInteger(values['timeout-ms'], '--timeout-ms', 100, 600_000)!;
  const connectAttempts = parseInteger(values['connect-attempts'], '--connect-attempts', 1, 100)!;
  if (values.attach && connectorArg !== undefined) throw new UsageError('--attach takes no --connector');
  if (values.leave && stopAfterMs !== undefined)
    throw new UsageError('--leave and --stop-after-ms exclude each other');
  const bundleBytes = values.bundle ? new Uint8Array(readFileSync(values.bundle)) : undefined;

  const out = new Printer(values.json, t0);
  const crypto = nodeCrypto;
  let held: Awaited<ReturnType<typeof readVoucherFile>>;
  try {
    held = await readVoucherFile(values.voucher);
  } catch (err) {
    out.step({ step: 'error', during: 'voucher file', message: (err as Error).message });
    return EXIT.FAILED;
  }
  const { voucher, deviceKey } = held;
  const claims = voucher.claims;
  const connector = values.attach ? undefined : (connectorArg ?? claims.connector ?? 1);
  const gatewayId = values['gateway-id'] ?? claims.gatewayId;
  out.step({
    step: 'start',
    ble: values.ble,
    mode: values.attach ? 'attach' : 'token',
    ...(connector === undefined ? {} : { connector }),
    gatewayId,
    mtu,
    voucher: {
      cti: toHex(claims.cti),
      gatewayId: claims.gatewayId,
      connector: claims.connector ?? null,
      hold: claims.hold.amount,
      currency: claims.hold.currency,
      notBefore: claims.notBefore,
      expiresAt: claims.expiresAt,
    },
    deviceKeyMatches: equalBytes(deviceKey.publicKey, claims.deviceKey),
  });

  let t = performance.now();
  let connection: GatewayConnection | undefined;
  for (let attempt = 1; !connection; attempt++) {
    try {
      connection = await connectToGateway(port, {
        gatewayId,
        mtu,
        scanTimeoutMs,
        operationTimeoutMs: Math.min(timeoutMs, 15_000),
      });
    } catch (err) {
      const message = (err as Error).message;
      // A gateway that just accepted another phone pauses advertising for a moment, and a
      // connect aimed at it then fails at once (as a phone would, try again); no gateway in
      // range (scan timeout) or no controller (power-on) is final.
      if (attempt >= connectAttempts || /^scan for|powered on/.test(message)) {
        out.step({ step: 'error', during: 'connect', attempts: attempt, message });
        return EXIT.FAILED;
      }
      out.step({ step: 'retry', during: 'connect', attempt, message });
      await new Promise((r) => setTimeout(r, 100 * attempt + Math.floor(Math.random() * 100)));
    }
  }
  out.step({ step: 'connect', address: connection.address, ms: round(performance.now() - t) });
  out.step({ step: 'mtu', mtu: connection.mtu, requested: mtu, maxNotify: connection.mtu - 3 });

  // Ctrl-C: leave the link cleanly (registered after noble's own handler, which then stands back).
  const onSignal = () => {
    out.step({ step: 'interrupted' });
    void connection.disconnect().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // Time each phase by watching the link: hello read, then (after the check) the writes.
  const timing = {
    helloStart: 0,
    helloEnd: 0,
    helloBytes: 0,
    firstWrite: 0,
    lastWrite: 0,
    writes: 0,
    written: 0,
  };
  const link: PhoneLink = {
    async readHello() {
      timing.helloStart = performance.now();
      const bytes = await connection.readHello();
      timing.helloEnd = performance.now();
      timing.helloBytes = bytes.length;
      return bytes;
    },
    async write(unit) {
      if (timing.writes === 0) timing.firstWrite = performance.now();
      timing.writes++;
      timing.written += unit.length;
      await connection.write(unit);
      timing.lastWrite = performance.now();
    },
    onNotify: (listener) => connection.onNotify(listener),
    onDisconnect: (listener) => connection.onDisconnect(() => listener()),
  };
  const session = new PhoneSession({ crypto, link, voucherBytes: voucher.bytes, deviceKey });
  const log = new EventLog();
  let gatewayKey: Uint8Array | undefined;
  let exitCode: number = EXIT.OK;

  // Statuses are printed as they come once the result is out (the first ones usually arrive
  // before the token write is acknowledged); everything else where the flow waits for it.
  let firstEventAt: number | undefined;
  let statusesHeld: Status[] | undefined = [];
  session.onEvent((event) => {
    firstEventAt ??= performance.now();
    log.push(event);
    if (event.kind !== 'status') return;
    if (statusesHeld) statusesHeld.push(event.status);
    else out.step(statusStep(event.status));
  });
  const releaseStatuses = () => {
    const held = statusesHeld ?? [];
    statusesHeld = undefined;
    for (const status of held) out.step(statusStep(status));
  };

  /**
   * Prints why the conversation ended early; the caller throws the result. The gateway notifies
   * a rejection and then drops the link, so a disconnect may be seen (and a write may fail)
   * while the rejection is still in the session's inbound queue: give it a moment.
   */
  const fail = async (seen: PhoneEvent, during: string): Promise<Exit> => {
    let event = seen;
    if (event.kind === 'disconnected') {
      await new Promise((r) => setTimeout(r, 100));
      event = log.events.find((e) => e.kind === 'rejected' || e.kind === 'error') ?? event;
    }
    const result =
      during === 'presentation'
        ? { step: 'result', ok: false, ms: round((firstEventAt ?? performance.now()) - timing.firstWrite) }
        : { step: 'refused', during };
    releaseStatuses();
    if (event.kind === 'rejected' || event.kind === 'error') {
      out.step({ ...result, kind: event.kind, ...describeCode(event.code) });
      return new Exit(EXIT.REFUSED);
    }
    out.step({ ...result, kind: 'disconnected', message: 'the gateway dropped the link' });
    return new Exit(EXIT.FAILED);
  };

  /** The hello, check and presentation steps, once the presentation was written (or tried). */
  const presented = () => {
    const hello = session.hello;
    if (!hello) return;
    out.step({
      step: 'hello',
      bytes: timing.helloBytes,
      ms: round(timing.helloEnd - timing.helloStart),
      gatewayId: hello.body.gatewayId,
      version: hello.body.version,
      gatewayTime: hello.body.gatewayTime,
      connectors: hello.body.connectors.map((c) => ({ id: c.id, state: c.state })),
    });
    out.step({ step: 'check', ok: true, ms: round(timing.firstWrite - timing.helloEnd) });
    out.step({
      step: values.attach ? 'attach' : 'token',
      bytes: timing.written,
      writes: timing.writes,
      // Until the write was acknowledged (or failed).
      ms: round((timing.lastWrite || performance.now()) - timing.firstWrite),
    });
  };

  try {
    // ---- hello, check, presentation -------------------------------------------------------
    try {
      await session.present(connector);
    } catch (err) {
      if (timing.helloEnd === 0) {
        out.step({ step: 'error', during: 'hello read', message: (err as Error).message });
        throw new Exit(EXIT.FAILED);
      }
      if (err instanceof ProtocolError && timing.writes === 0) {
        out.step({ step: 'hello', bytes: timing.helloBytes, ms: round(timing.helloEnd - timing.helloStart) });
        out.step({ step: 'check', ok: false, ...describeCode(err.code), detail: err.message });
        throw new Exit(EXIT.WRONG_STATION);
      }
      presented();
      // The write failed: usually because the gateway refused it and dropped the link at once.
      const ended = await log.next(0, () => false, 2_000, 'rejection').catch(() => undefined);
      if (ended) throw await fail(ended.event, 'presentation');
      out.step({ step: 'error', during: 'presentation', message: (err as Error).message });
      throw new Exit(EXIT.FAILED);
    }
    gatewayKey = session.hello!.body.gatewayKey;
    presented();

    // ---- result ----------------------------------------------------------------------------
    const first = await log.next(0, (e) => e.kind === 'status' || e.kind === 'receipt', timeoutMs, 'result');
    if (first.event.kind !== 'status' && first.event.kind !== 'receipt')
      throw await fail(first.event, 'presentation');
    const firstStatus = first.event.kind === 'status' ? first.event.status : undefined;
    out.step({
      step: 'result',
      ok: true,
      // From the start of the token (attach) write to the gateway's first answer.
      ms: round((firstEventAt ?? performance.now()) - timing.firstWrite),
      ...(firstStatus
        ? {
            state: STATE_NAMES[firstStatus.state],
            session: toHex(firstStatus.sessionId),
            connector: firstStatus.connector,
          }
        : {}),
    });
    releaseStatuses();
    let cursor = first.index + 1;

    // ---- carried bundle ------------------------------------------------------------------
    if (bundleBytes) {
      let version: number | undefined;
      try {
        version = parseBundle(bundleBytes).body.version;
      } catch {
        // the gateway judges it; the simulator only reports what it could read
      }
      t = performance.now();
      await session.sendBundle(bundleBytes);
      const ack = await log.next(
        cursor,
        (e) => e.kind === 'ack' && e.acknowledged === SessionMessageType.BUNDLE,
        timeoutMs,
        'bundle ack',
      );
      if (ack.event.kind !== 'ack') throw await fail(ack.event, 'bundle');
      const code = ack.event.code;
      out.step({
        step: 'bundle',
        ok: code === 0,
        ...(version === undefined ? {} : { version }),
        bytes: bundleBytes.length,
        ms: round(performance.now() - t),
        ...(code === 0 ? { code } : describeCode(code)),
      });
      if (code !== 0) exitCode = EXIT.REFUSED;
    }

    // ---- stop, follow or leave -----------------------------------------------------------
    const isReceipt = (e: PhoneEvent) => e.kind === 'receipt';
    let receipt = log.events.find(isReceipt);
    if (!receipt && stopAfterMs !== undefined) {
      const charging = await log.next(
        0,
        (e) => isReceipt(e) || (e.kind === 'status' && e.status.state === SessionState.CHARGING),
        timeoutMs,
        'charging',
      );
      if (charging.event.kind !== 'status' && charging.event.kind !== 'receipt')
        throw await fail(charging.event, 'charging');
      if (charging.event.kind === 'status') {
        // Wait, but a session that ends (or a link that drops) meanwhile ends the wait.
        const early = await log
          .next(cursor, isReceipt, stopAfterMs, 'stop delay')
          .then((r) => r.event)
          .catch(() => undefined);
        if (early && early.kind !== 'receipt') throw await fail(early, 'charging');
        if (!early) {
          t = performance.now();
          const from = log.events.length;
          await session.stop();
          const sent = round(performance.now() - t);
          const got = await log.next(from, isReceipt, timeoutMs, 'receipt after stop');
          if (got.event.kind !== 'receipt') throw await fail(got.event, 'stop');
          out.step({ step: 'stop', sent, ms: round(performance.now() - t) });
        }
      }
      receipt = log.events.find(isReceipt);
    } else if (!receipt && !values.leave) {
      out.step({ step: 'follow', until: 'receipt or link loss' });
      const got = await log.next(cursor, isReceipt, Number.POSITIVE_INFINITY, 'receipt');
      if (got.event.kind !== 'receipt') throw await fail(got.event, 'charging');
      receipt = got.event;
    }
    if (receipt?.kind === 'receipt') {
      const ok = await receiptStep(out, receipt.receipt, gatewayKey, claims);
      if (!ok && exitCode === EXIT.OK) exitCode = EXIT.FAILED;
    }
    cursor = log.events.length;

    // ---- report --------------------------------------------------------------------------
    if (values.report) {
      t = performance.now();
      await session.requestReport();
      const got = await log.next(
        cursor,
        (e) =>
          e.kind === 'report' || (e.kind === 'ack' && e.acknowledged === SessionMessageType.REPORT_REQUEST),
        timeoutMs,
        'report',
      );
      if (got.event.kind === 'report') {
        writeFileSync(values.report, got.event.report);
        const ok = await reportStep(out, got.event.report, gatewayKey, values.report, performance.now() - t);
        if (!ok && exitCode === EXIT.OK) exitCode = EXIT.FAILED;
      } else if (got.event.kind === 'ack') {
        out.step({ step: 'report', none: true, ms: round(performance.now() - t) });
      } else {
        throw await fail(got.event, 'report');
      }
    }
  } catch (err) {
    if (err instanceof Exit) exitCode = err.code;
    else {
      out.step({ step: 'error', message: (err as Error).message });
      exitCode = EXIT.FAILED;
    }
  } finally {
    session.close();
    t = performance.now();
    await connection.disconnect();
    out.step({ step: 'disconnect', ms: round(performance.now() - t) });
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  out.step({ step: 'done', exitCode, totalMs: round(performance.now() - t0) });
  return exitCode;
}

function statusStep(s: Status): Step {
  return {
    step: 'status',
    state: STATE_NAMES[s.state] ?? String(s.state),
    connector: s.connector,
    energyWh: s.energyWh,
    amount: s.amount,
    hold: s.hold,
    elapsedS: s.elapsedSeconds,
  };
}

/** Prints the receipt summary; true when its signature and presentation proof verify. */
async function receiptStep(
  out: Printer,
  receipt: Receipt,
  gatewayKey: Uint8Array | undefined,
  claims: { readonly cti: Uint8Array; readonly deviceKey: Uint8Array; readonly gatewayId: string },
): Promise<boolean> {
  const b = receipt.body;
  let signature = false;
  let proof = false;
  if (gatewayKey) {
    signature = await verifyReceipt(nodeCrypto, receipt, gatewayKey).then(
      () => true,
      () => false,
    );
    proof = await verifyPresentationProof(nodeCrypto, b.proof, {
      deviceKey: claims.deviceKey,
      cti: claims.cti,
      gatewayKey,
      gatewayId: claims.gatewayId,
    });
  }
  const forVoucher = equalBytes(b.cti, claims.cti);
  out.step({
    step: 'receipt',
    verified: signature && proof && forVoucher,
    signature,
    proof,
    forVoucher,
    bytes: receipt.bytes.length,
    sequence: b.sequence,
    session: toHex(b.sessionId),
    connector: b.connector,
    energyWh: b.energyWh,
    computedAmount: b.computedAmount,
    chargedAmount: b.chargedAmount,
    currency: b.currency,
    stopReason: STOP_REASON_NAMES[b.stopReason] ?? String(b.stopReason),
    startedAt: b.startedAt,
    stoppedAt: b.stoppedAt,
  });
  return signature && proof && forVoucher;
}

/** Prints the report summary; true when its signature verifies. */
async function reportStep(
  out: Printer,
  bytes: Uint8Array,
  gatewayKey: Uint8Array | undefined,
  file: string,
  ms: number,
): Promise<boolean> {
  const report = parseReport(bytes);
  const verified = gatewayKey
    ? await verifyReport(nodeCrypto, report, gatewayKey).then(
        () => true,
        () => false,
      )
    : false;
  out.step({
    step: 'report',
    verified,
    file,
    bytes: bytes.length,
    ms: round(ms),
    gatewayId: report.body.gatewayId,
    receipts: report.body.receipts.length,
    checkpoint: report.body.checkpoint.sequence,
    revocations: report.body.revocations.map((r) => ({
      bundleVersion: r.bundleVersion,
      ledgerSequence: r.ledgerSequence,
      spentBeforeInstall: r.spentBeforeInstall.length,
    })),
  });
  return verified;
}

const t0 = performance.now();
run(process.argv.slice(2), t0).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`pilepass-phone-sim: ${(err as Error).message}\n\n${HELP}`);
      process.exitCode = EXIT.USAGE;
    } else {
      process.stderr.write(`pilepass-phone-sim: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = EXIT.FAILED;
    }
  },
);
