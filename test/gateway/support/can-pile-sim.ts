/**
 * A pile controller speaking the docs/can.md frame set over a CanSocket, for the CAN driver's
 * tests: connectors with contactor, plug, fault and meter; answers START/STOP/REQUEST with
 * acknowledging status frames; sends its heartbeat, status and meter frames periodically; and
 * fails safe on its own — contactors open when the gateway's heartbeat stops for the timeout the
 * gateway announced, or when the gateway says `switch-off`. Switches let a test weld a contactor,
 * ignore commands, silence or freeze the heartbeat, or speak another protocol version.
 */

import type { CanFrame, CanSocket } from '../../../gateway/src/pile/can/can-socket.ts';
import {
  type AckResult,
  CAN_ID_BASE,
  canId,
  decodeCommand,
  decodeGatewayHeartbeat,
  encodeFault,
  encodeMeter,
  encodePileHeartbeat,
  encodeStatus,
  type GatewayHeartbeat,
} from '../../../gateway/src/pile/can/frames.ts';
import { type PileTimers, repeat, type TimerHandle } from '../../../gateway/src/pile/timers.ts';

export interface SimConnector {
  contactorClosed: boolean;
  plugged: boolean | undefined;
  faulted: boolean;
  sessionActive: boolean;
  energyWh: number;
  powerW: number;
  capWh: number | undefined;
  welded: boolean;
  ackSequence: number;
  ackResult: AckResult;
}

export interface CanPileSimOptions {
  readonly pileNodeId: number;
  readonly gatewayNodeId: number;
  readonly connectors: readonly number[];
  readonly heartbeatMs: number;
  /** Periodic status + meter per connector, ms. */
  readonly statusMs?: number;
}

export class CanPileSim {
  readonly connectors = new Map<number, SimConnector>();
  readonly gatewayHeartbeats: GatewayHeartbeat[] = [];
  /** Times the pile switched off because the gateway's heartbeat stopped. */
  gatewayTimeoutTrips = 0;
  heartbeatSilenced = false;
  heartbeatFrozen = false;
  ignoreCommands = false;
  protocolVersion = 1;
  readonly #socket: CanSocket;
  readonly #timers: PileTimers;
  readonly #options: CanPileSimOptions;
  #counter = 0;
  #gatewayWatchdog: TimerHandle | undefined;
  readonly #stops: (() => void)[] = [];

  constructor(
    socket: CanSocket,
    timers: PileTimers,
    options: CanPileSimOptions,
    initial: Partial<SimConnector> = {},
  ) {
    this.#socket = socket;
    this.#timers = timers;
    this.#options = options;
    for (const c of options.connectors) {
      this.connectors.set(c, {
        contactorClosed: false,
        plugged: true,
        faulted: false,
        sessionActive: false,
        energyWh: 2_000_000 + c * 1_000,
        powerW: 0,
        capWh: undefined,
        welded: false,
        ackSequence: 0,
        ackResult: 'none',
        ...initial,
      });
    }
    socket.onFrame((frame) => this.#receive(frame));
    const beat = () => {
      if (this.heartbeatSilenced) return;
      if (!this.heartbeatFrozen) this.#counter = (this.#counter + 1) & 0xff;
      this.#send(
        canId(CAN_ID_BASE.heartbeat, options.pileNodeId),
        encodePileHeartbeat({
          counter: this.#counter,
          state: 'operational',
          protocolVersion: this.protocolVersion,
          connectorCount: options.connectors.length,
        }),
      );
    };
    beat();
    this.#stops.push(repeat(timers, options.heartbeatMs, beat, () => {}));
    this.#stops.push(
      repeat(
        timers,
        options.statusMs ?? 1_000,
        () => {
          for (const c of this.connectors.keys()) this.report(c);
        },
        () => {},
      ),
    );
  }

  connector(c: number): SimConnector {
    const s = this.connectors.get(c);
    if (!s) throw new Error(`sim has no connector ${c}`);
    return s;
  }

  stop(): void {
    for (const stop of this.#stops) stop();
    if (this.#gatewayWatchdog !== undefined) this.#timers.clearTimeout(this.#gatewayWatchdog);
  }

  #send(id: number, data: Uint8Array): void {
    this.#socket.send({ id, data });
  }

  sendStatus(c: number): void {
    const s = this.connector(c);
    this.#send(
      canId(CAN_ID_BASE.pileStatus, this.#options.pileNodeId),
      encodeStatus({
        connector: c,
        contactorClosed: s.contactorClosed,
        plugged: s.plugged,
        faulted: s.faulted,
        sessionActive: s.sessionActive,
        ackSequence: s.ackSequence,
        ackResult: s.ackResult,
      }),
    );
  }

  sendMeter(c: number): void {
    const s = this.connector(c);
    this.#send(
      canId(CAN_ID_BASE.pileMeter, this.#options.pileNodeId),
      encodeMeter({
        connector: c,
        energyWh: s.energyWh,
        powerW: s.contactorClosed ? s.powerW : 0,
      }),
    );
  }

  report(c: number): void {
    this.sendStatus(c);
    this.sendMeter(c);
  }

  #open(c: number): void {
    const s = this.connector(c);
    s.sessionActive = false;
    s.capWh = undefined;
    if (!s.welded) s.contactorClosed = false;
  }

  switchOffAll(): void {
    for (const c of this.connectors.keys()) {
      this.#open(c);
      this.sendStatus(c);
    }
  }

  // ---- the vehicle and the hardware ----------------------------------------------------------

  unplug(c: number): void {
    this.connector(c).plugged = false;
    this.#open(c);
    this.sendStatus(c);
  }

  raiseFault(c: number, code: number, vendorCode = 0): void {
    const s = this.connector(c);
    s.faulted = true;
    this.#open(c);
    this.#send(
      canId(CAN_ID_BASE.pileFault, this.#options.pileNodeId),
      encodeFault({ connector: c, code, active: true, vendorCode }),
    );
    this.sendStatus(c);
  }

  /** Energy flows while the contactor is closed; the pile opens at its cap. */
  deliver(c: number, wh: number, powerW = 7_000): void {
    const s = this.connector(c);
    if (!s.contactorClosed) return;
    s.energyWh += wh;
    s.powerW = powerW;
    if (s.capWh !== undefined && s.energyWh >= s.capWh) this.#open(c);
    this.report(c);
  }

  // ---- frames from the gateway ---------------------------------------------------------------

  #receive(frame: CanFrame): void {
    if (frame.id === canId(CAN_ID_BASE.heartbeat, this.#options.gatewayNodeId)) {
      const heartbeat = decodeGatewayHeartbeat(frame.data);
      this.gatewayHeartbeats.push(heartbeat);
      if (this.#gatewayWatchdog !== undefined) this.#timers.clearTimeout(this.#gatewayWatchdog);
      this.#gatewayWatchdog = this.#timers.setTimeout(() => {
        this.gatewayTimeoutTrips += 1;
        this.switchOffAll();
      }, heartbeat.timeoutMs);
      if (
        heartbeat.state === 'switch-off' &&
        [...this.connectors.values()].some((s) => s.contactorClosed || s.sessionActive)
      ) {
        this.switchOffAll();
      }
      return;
    }
    if (frame.id !== canId(CAN_ID_BASE.gatewayCommand, this.#options.pileNodeId) || this.ignoreCommands)
      return;
    const command = decodeCommand(frame.data);
    const s = this.connectors.get(command.connector);
    if (!s) return;
    s.ackSequence = command.sequence;
    if (command.command === 'request') {
      this.report(command.connector);
      return;
    }
    if (command.command === 'stop') {
      this.#open(command.connector);
      s.ackResult = 'accepted';
      this.sendStatus(command.connector);
      return;
    }
    if (s.faulted) s.ackResult = 'refused-faulted';
    else if (s.plugged === false) s.ackResult = 'refused-unplugged';
    else {
      s.ackResult = 'accepted';
      s.sessionActive = true;
      s.contactorClosed = true;
      s.capWh = command.maxEnergyWh === 0 ? undefined : s.energyWh + command.maxEnergyWh;
    }
    this.sendStatus(command.connector);
  }
}
