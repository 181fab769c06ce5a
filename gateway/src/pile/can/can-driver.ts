/**
 * PileDriver for a pile controller on CAN, speaking the frame set of docs/can.md over a
 * `CanSocket` (SocketCAN in production, a fake bus or vcan in tests).
 *
 * Heartbeats both ways. The gateway sends GW_HEARTBEAT every `heartbeatMs` carrying the timeout
 * the controller must apply on its own: a controller that hears nothing from the gateway for that
 * long switches every connector off without help. The pile's heartbeat is watched with the same
 * timeout; a missing one (or one whose counter does not move, or of another protocol version) is
 * a lost link: every connector is reported `fault`, then `connection-lost`; a STOP goes to every
 * connector and the gateway's heartbeat turns to `switch-off` until the pile is heard again, so a
 * controller that still receives switches off at once.
 *
 * Commands are acknowledged through PILE_STATUS (sequence echo): `start` resolves when the pile
 * accepted (a start that is not answered is followed by a STOP), `stop` when the contactor is
 * reported open; a stop that is not confirmed in time is a fault. Pile faults (PILE_FAULT, the
 * status fault bit) and a meter register that runs backwards are faults too, each followed by a
 * STOP. Start-up sends nothing that switches: the gateway's recovery reads the connectors and
 * decides (the driver never guesses). `close()` stops every connector, then says `switch-off`.
 * @module
 */

import type { ConnectorReading, PileDriver, PileEvent } from '../../contracts.ts';
import { type PileTimers, repeat, type TimerHandle } from '../timers.ts';
import type { CanFrame, CanSocket } from './can-socket.ts';
import {
  CAN_ID_BASE,
  CAN_PROTOCOL_VERSION,
  type Command,
  canId,
  decodeFault,
  decodeMeter,
  decodePileHeartbeat,
  decodeStatus,
  encodeCommand,
  encodeGatewayHeartbeat,
  faultText,
  type GatewayState,
  type MeterFrame,
  type StatusFrame,
} from './frames.ts';

export type CanPileErrorCode =
  | 'unknown-connector'
  | 'link-lost'
  | 'timeout'
  | 'refused'
  | 'stop-unconfirmed'
  | 'no-data'
  | 'send'
  | 'closed';

/** A command the CAN pile refused, did not confirm, or could not be sent. */
export class CanPileError extends Error {
  readonly code: CanPileErrorCode;
  readonly connector: number | undefined;
  constructor(code: CanPileErrorCode, connector: number | undefined, message: string) {
    super(message);
    this.name = 'CanPileError';
    this.code = code;
    this.connector = connector;
  }
}

export interface CanPileDriverOptions {
  readonly socket: CanSocket;
  readonly connectors: readonly number[];
  readonly pileNodeId: number;
  readonly gatewayNodeId: number;
  /** Gateway heartbeat period; the pile is expected to send at the same period, ms. */
  readonly heartbeatMs: number;
  /** No heartbeat for this long is a lost link, in both directions (sent to the pile), ms. */
  readonly heartbeatTimeoutMs: number;
  /** START/REQUEST → acknowledging status, ms. */
  readonly commandTimeoutMs: number;
  /** STOP → status with the contactor open, ms. */
  readonly stopTimeoutMs: number;
  /** Status/meter older than this is refreshed with a REQUEST on `read`, ms. */
  readonly staleMs: number;
  /** How long creation waits for the pile to report every connector, ms. */
  readonly startupWaitMs: number;
  /** Meter id per connector as receipts name it (default `CAN<pile node>-<connector>`). */
  readonly meterIds?: Readonly<Record<string, string>>;
  readonly timers: PileTimers;
  /** Listener exceptions, undecodable frames, send failures (default console.error). */
  readonly onError?: (error: unknown) => void;
}

export interface CanPileDriver extends PileDriver {
  /** The pile's heartbeat is being received. */
  readonly linkUp: boolean;
}

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

interface ConnectorState {
  status: StatusFrame | undefined;
  statusAt: number;
  meter: MeterFrame | undefined;
  meterAt: number;
  /** Detail of the pile's last active PILE_FAULT for this connector. */
  faultDetail: string | undefined;
  /** A fault event went out for the present fault episode. */
  faultReported: boolean;
  /** The register ran backwards: latched until restart. */
  meterFault: string | undefined;
  readonly waiters: Set<Waiter>;
}

export async function createCanPileDriver(options: CanPileDriverOptions): Promise<CanPileDriver> {
  const { socket, timers, pileNodeId } = options;
  const onError = options.onError ?? ((error) => console.error('can pile:', error));
  if (options.connectors.length === 0) throw new RangeError('createCanPileDriver: at least one connector');
  const connectors = Object.freeze([...options.connectors]);
  const ids = {
    fault: canId(CAN_ID_BASE.pileFault, pileNodeId),
    status: canId(CAN_ID_BASE.pileStatus, pileNodeId),
    command: canId(CAN_ID_BASE.gatewayCommand, pileNodeId),
    meter: canId(CAN_ID_BASE.pileMeter, pileNodeId),
    pileHeartbeat: canId(CAN_ID_BASE.heartbeat, pileNodeId),
    gatewayHeartbeat: canId(CAN_ID_BASE.heartbeat, options.gatewayNodeId),
  };
  if (ids.pileHeartbeat === ids.gatewayHeartbeat)
    throw new RangeError('pile and gateway node ids must differ');

  const states = new Map<number, ConnectorState>();
  for (const c of connectors) {
    states.set(c, {
      status: undefined,
      statusAt: -Infinity,
      meter: undefined,
      meterAt: -Infinity,
      faultDetail: undefined,
      faultReported: false,
      meterFault: undefined,
      waiters: new Set(),
    });
  }
  const listeners = new Set<(event: PileEvent) => void>();
  const emit = (event: PileEvent) => {
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (error) {
        onError(error);
      }
    }
  };

  let closed = false;
  let linkUp = false;
  let linkWasUp = false;
  let linkProblem: string | undefined;
  let lastPileCounter: number | undefined;
  let sequence = 0;
  let gatewayCounter = 0;
  let watchdog: TimerHandle | undefined;

  const meterIdOf = (c: number) => options.meterIds?.[String(c)] ?? `CAN${pileNodeId}-${c}`;

  function send(frame: CanFrame, connector?: number): void {
    try {
      socket.send(frame);
    } catch (error) {
      throw new CanPileError('send', connector, `CAN send failed: ${(error as Error).message}`);
    }
  }

  function sendCommand(connector: number, command: Command, maxEnergyWh = 0): number {
    sequence = (sequence + 1) & 0xff;
    send({ id: ids.command, data: encodeCommand({ connector, command, sequence, maxEnergyWh }) }, connector);
    return sequence;
  }

  /** STOP without waiting (faults, lost link): best effort, failures only logged. */
  function stopNow(connector: number): void {
    try {
      sendCommand(connector, 'stop');
    } catch (error) {
      onError(error);
    }
  }

  function sendHeartbeat(state: GatewayState): void {
    gatewayCounter = (gatewayCounter + 1) & 0xff;
    send({
      id: ids.gatewayHeartbeat,
      data: encodeGatewayHeartbeat({ counter: gatewayCounter, state, timeoutMs: options.heartbeatTimeoutMs }),
    });
  }

  function stateOf(connector: number): ConnectorState {
    const state = states.get(connector);
    if (!state)
      throw new CanPileError('unknown-connector', connector, `this driver has no connector ${connector}`);
    if (closed) throw new CanPileError('closed', connector, 'CAN pile driver is closed');
    return state;
  }

  function readingOf(connector: number, state: ConnectorState): ConnectorReading | undefined {
    const { status, meter } = state;
    if (!status || !meter) return undefined;
    return {
      connector,
      contactorOn: status.contactorClosed,
      plugged: status.plugged,
      faulted: !linkUp || status.faulted || state.meterFault !== undefined,
      meterWh: meter.energyWh,
      meterId: meterIdOf(connector),
      powerW: meter.powerW,
    };
  }

  function reportFault(connector: number, state: ConnectorState, detail: string): void {
    if (state.faultReported) return;
    state.faultReported = true;
    emit({ kind: 'fault', connector, detail });
  }

  function settleWaiters(state: ConnectorState): void {
    for (const waiter of [...state.waiters]) {
      if (waiter.check()) {
        state.waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  function rejectAllWaiters(error: (connector: number) => Error): void {
    for (const [connector, state] of states) {
      for (const waiter of [...state.waiters]) waiter.reject(error(connector));
      state.waiters.clear();
    }
  }

  /** Resolves when `check` holds after a frame for `connector` arrives (not on present state). */
  function waitFor(connector: number, check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const state = stateOf(connector);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        check,
        resolve: () => {
          timers.clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          timers.clearTimeout(timer);
          reject(error);
        },
      };
      const timer = timers.setTimeout(() => {
        state.waiters.delete(waiter);
        reject(
          new CanPileError(
            'timeout',
            connector,
            `connector ${connector}: ${what} not answered within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      state.waiters.add(waiter);
    });
  }

  function armWatchdog(): void {
    if (watchdog !== undefined) timers.clearTimeout(watchdog);
    watchdog = timers.setTimeout(linkLost, options.heartbeatTimeoutMs);
  }

  function linkLost(): void {
    watchdog = undefined;
    if (closed) return;
    if (!linkUp && linkProblem === undefined) {
      if (!linkWasUp) armWatchdog(); // never heard yet: keep watching quietly, nothing is on
      return;
    }
    linkUp = false;
    const detail = `pile heartbeat lost: none for ${options.heartbeatTimeoutMs} ms${linkProblem ? ` (${linkProblem})` : ''}`;
    linkProblem = undefined;
    for (const [connector, state] of states) {
      reportFault(connector, state, detail);
      stopNow(connector);
    }
    rejectAllWaiters((c) => new CanPileError('link-lost', c, `connector ${c}: ${detail}`));
    emit({ kind: 'connection-lost' });
  }

  function onPileHeartbeat(data: Uint8Array): void {
    const heartbeat = decodePileHeartbeat(data);
    if (heartbeat.protocolVersion !== CAN_PROTOCOL_VERSION) {
      linkProblem = `protocol version ${heartbeat.protocolVersion}, gateway speaks ${CAN_PROTOCOL_VERSION}`;
      return;
    }
    if (heartbeat.counter === lastPileCounter) return; // a frozen sender repeating itself is not alive
    lastPileCounter = heartbeat.counter;
    linkProblem = undefined;
    armWatchdog();
    if (linkUp) return;
    linkUp = true;
    linkWasUp = true;
    for (const [connector, state] of states) {
      state.faultReported = state.status?.faulted === true || state.meterFault !== undefined;
      try {
        sendCommand(connector, 'request');
      } catch (error) {
        onError(error);
      }
    }
  }

  function onStatus(data: Uint8Array): void {
    const status = decodeStatus(data);
    const state = states.get(status.connector);
    if (!state) return;
    const previous = state.status;
    state.status = status;
    state.statusAt = timers.now();
    if (previous?.plugged === true && status.plugged === false)
      emit({ kind: 'unplugged', connector: status.connector });
    if (status.faulted) {
      reportFault(status.connector, state, state.faultDetail ?? 'pile controller reports a fault');
      if (previous?.faulted !== true && status.contactorClosed) stopNow(status.connector);
    } else if (linkUp && state.meterFault === undefined) state.faultReported = false;
    const reading = readingOf(status.connector, state);
    if (reading) emit({ kind: 'reading', reading });
    settleWaiters(state);
  }

  function onMeter(data: Uint8Array): void {
    const meter = decodeMeter(data);
    const state = states.get(meter.connector);
    if (!state) return;
    if (state.meter && meter.energyWh < state.meter.energyWh) {
      if (state.meterFault === undefined) {
        state.meterFault = `meter register went backwards (${state.meter.energyWh} Wh → ${meter.energyWh} Wh)`;
        state.faultReported = false;
        reportFault(meter.connector, state, state.meterFault);
        stopNow(meter.connector);
      }
      return;
    }
    state.meter = meter;
    state.meterAt = timers.now();
    const reading = readingOf(meter.connector, state);
    if (reading) emit({ kind: 'reading', reading });
    settleWaiters(state);
  }

  function onFault(data: Uint8Array): void {
    const fault = decodeFault(data);
    const affected = fault.connector === 0 ? connectors : connectors.filter((c) => c === fault.connector);
    for (const connector of affected) {
      const state = states.get(connector) as ConnectorState;
      if (!fault.active) {
        state.faultDetail = undefined;
        continue;
      }
      const vendor = fault.vendorCode ? ` (vendor code 0x${fault.vendorCode.toString(16)})` : '';
      state.faultDetail = `pile fault: ${faultText(fault.code)}${vendor}`;
      const wasReported = state.faultReported;
      reportFault(connector, state, state.faultDetail);
      if (!wasReported) stopNow(connector);
    }
  }

  const unsubscribe = socket.onFrame((frame) => {
    if (closed || frame.ext || frame.rtr) return;
    try {
      if (frame.id === ids.pileHeartbeat) onPileHeartbeat(frame.data);
      else if (frame.id === ids.status) onStatus(frame.data);
      else if (frame.id === ids.meter) onMeter(frame.data);
      else if (frame.id === ids.fault) onFault(frame.data);
    } catch (error) {
      onError(error); // an undecodable frame is dropped; the heartbeat rule catches a pile gone mad
    }
  });

  const beat = () => sendHeartbeat(linkUp || !linkWasUp ? 'operational' : 'switch-off');
  try {
    beat();
  } catch (error) {
    unsubscribe();
    throw error;
  }
  const stopBeating = repeat(timers, options.heartbeatMs, beat, onError);
  armWatchdog();

  // Start-up: ask every connector to report; the recovery reads them and decides.
  await Promise.allSettled(
    connectors.map(async (connector) => {
      const state = states.get(connector) as ConnectorState;
      const reported = waitFor(
        connector,
        () => !!state.status && !!state.meter,
        options.startupWaitMs,
        'start-up status',
      );
      try {
        sendCommand(connector, 'request');
      } catch (error) {
        onError(error);
      }
      await reported;
    }),
  );

  async function stop(connector: number): Promise<void> {
    const state = stateOf(connector);
    if (!linkUp) {
      throw new CanPileError(
        'link-lost',
        connector,
        `connector ${connector}: pile not heard; it switches off on its own heartbeat timeout`,
      );
    }
    const seq = sendCommand(connector, 'stop');
    const acked = () => state.status?.ackSequence === seq && state.status.ackResult !== 'none';
    try {
      await waitFor(
        connector,
        () => acked() && state.status?.contactorClosed === false,
        options.stopTimeoutMs,
        'STOP',
      );
    } catch (error) {
      if (!(error instanceof CanPileError) || error.code !== 'timeout') throw error;
      const detail = acked()
        ? `contactor still closed ${options.stopTimeoutMs} ms after STOP (welded?)`
        : `STOP not acknowledged within ${options.stopTimeoutMs} ms`;
      state.faultReported = false;
      reportFault(connector, state, detail);
      throw new CanPileError('stop-unconfirmed', connector, `connector ${connector}: ${detail}`);
    }
  }

  return {
    connectors,
    get linkUp() {
      return linkUp;
    },
    async read(connector) {
      const state = stateOf(connector);
      const now = timers.now();
      const fresh = now - state.statusAt <= options.staleMs && now - state.meterAt <= options.staleMs;
      if (!fresh && linkUp) {
        const asked = timers.now();
        const answered = waitFor(
          connector,
          () => state.statusAt >= asked && state.meterAt >= asked,
          options.commandTimeoutMs,
          'REQUEST',
        );
        sendCommand(connector, 'request');
        await answered;
      }
      const reading = readingOf(connector, state);
      if (!reading)
        throw new CanPileError(
          'no-data',
          connector,
          `connector ${connector}: pile has not reported status and meter`,
        );
      return reading;
    },
    async start(connector, limits) {
      const { maxEnergyWh } = limits;
      if (
        maxEnergyWh !== undefined &&
        (!Number.isSafeInteger(maxEnergyWh) || maxEnergyWh <= 0 || maxEnergyWh > 0xffff_ffff)
      ) {
        throw new RangeError('maxEnergyWh must be a positive integer (Wh) below 2^32');
      }
      const state = stateOf(connector);
      if (!linkUp) throw new CanPileError('link-lost', connector, `connector ${connector}: pile not heard`);
      const seq = sendCommand(connector, 'start', maxEnergyWh ?? 0);
      try {
        await waitFor(
          connector,
          () => state.status?.ackSequence === seq && state.status.ackResult !== 'none',
          options.commandTimeoutMs,
          'START',
        );
      } catch (error) {
        stopNow(connector); // it may have started after all: fail closed
        throw error;
      }
      const status = state.status as StatusFrame;
      if (status.ackResult !== 'accepted' || !status.sessionActive) {
        throw new CanPileError(
          'refused',
          connector,
          `connector ${connector}: pile refused START (${status.ackResult})`,
        );
      }
    },
    stop,
    onEvent(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    /** Stops every connector (if the pile is heard), then tells it to switch off and stops the heartbeat. */
    async close() {
      if (closed) return;
      const results = linkUp ? await Promise.allSettled(connectors.map((c) => stop(c))) : [];
      closed = true;
      stopBeating();
      if (watchdog !== undefined) timers.clearTimeout(watchdog);
      try {
        sendHeartbeat('switch-off');
      } catch (error) {
        onError(error);
      }
      rejectAllWaiters((c) => new CanPileError('closed', c, 'CAN pile driver closed'));
      listeners.clear();
      unsubscribe();
      socket.close();
      for (const result of results) if (result.status === 'rejected') onError(result.reason);
    },
  };
}
