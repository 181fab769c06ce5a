/**
 * Messages inside the secure channel, each CBOR [type, ...]:
 *
 *   1 status   g→p  [1, sid, state, connector, energyWh, amount, hold, elapsedS]
 *   2 stop     p→g  [2, device signature over CBOR["PilePass stop", transcript digest]]
 *   3 receipt  g→p  [3, receipt COSE bytes]
 *   4 error    g→p  [4, code]
 *   5 bundle   p→g  [5, sync bundle COSE bytes]          (phone as courier, cloud → gateway)
 *   6 report?  p→g  [6]                                  (ask for the pending gateway report)
 *   7 report   g→p  [7, report COSE bytes]               (phone as courier, gateway → cloud)
 *   8 ack      g→p  [8, acknowledged type, code]         (0 = done)
 *
 * The stop request is device-signed over this connection's transcript, so the receipt can
 * show who stopped, and an old stop cannot be replayed on another connection.
 * @module
 */

import { asArray, asBytes, asUint, decodeCbor, encodeCbor } from '../cbor.ts';
import { ErrorCode, type ErrorCode as ErrorCodeT, isErrorCode, ProtocolError } from '../errors.ts';
import { MAX_BUNDLE_BYTES } from '../messages/bundle.ts';
import { MAX_AMOUNT, MAX_CONNECTOR } from '../messages/fields.ts';
import { MAX_RECEIPT_BYTES } from '../messages/receipt.ts';
import { MAX_REPORT_BYTES } from '../messages/report.ts';

export const SessionMessageType = {
  STATUS: 1,
  STOP: 2,
  RECEIPT: 3,
  ERROR: 4,
  BUNDLE: 5,
  REPORT_REQUEST: 6,
  REPORT: 7,
  ACK: 8,
} as const;

/** Charging session states shown to the driver. */
export const SessionState = {
  AUTHORIZED: 0,
  CHARGING: 1,
  STOPPING: 2,
  FINISHED: 3,
  FAILED: 4,
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

export interface Status {
  readonly sessionId: Uint8Array;
  readonly state: SessionState;
  readonly connector: number;
  readonly energyWh: number;
  /** Amount so far, minor units. */
  readonly amount: number;
  readonly hold: number;
  readonly elapsedSeconds: number;
}

export type SessionMessage =
  | { readonly type: typeof SessionMessageType.STATUS; readonly status: Status }
  | { readonly type: typeof SessionMessageType.STOP; readonly deviceSignature: Uint8Array }
  | { readonly type: typeof SessionMessageType.RECEIPT; readonly receipt: Uint8Array }
  | { readonly type: typeof SessionMessageType.ERROR; readonly code: ErrorCodeT }
  | { readonly type: typeof SessionMessageType.BUNDLE; readonly bundle: Uint8Array }
  | { readonly type: typeof SessionMessageType.REPORT_REQUEST }
  | { readonly type: typeof SessionMessageType.REPORT; readonly report: Uint8Array }
  /** code 0 = done, otherwise an ErrorCode. */
  | { readonly type: typeof SessionMessageType.ACK; readonly acknowledged: number; readonly code: number };

export function encodeSessionMessage(msg: SessionMessage): Uint8Array {
  switch (msg.type) {
    case SessionMessageType.STATUS: {
      const s = msg.status;
      return encodeCbor([
        msg.type,
        s.sessionId,
        s.state,
        s.connector,
        s.energyWh,
        s.amount,
        s.hold,
        s.elapsedSeconds,
      ]);
    }
    case SessionMessageType.STOP:
      return encodeCbor([msg.type, msg.deviceSignature]);
    case SessionMessageType.RECEIPT:
      return encodeCbor([msg.type, msg.receipt]);
    case SessionMessageType.ERROR:
      return encodeCbor([msg.type, msg.code]);
    case SessionMessageType.BUNDLE:
      return encodeCbor([msg.type, msg.bundle]);
    case SessionMessageType.REPORT_REQUEST:
      return encodeCbor([msg.type]);
    case SessionMessageType.REPORT:
      return encodeCbor([msg.type, msg.report]);
    case SessionMessageType.ACK:
      return encodeCbor([msg.type, msg.acknowledged, msg.code]);
  }
}

export function decodeSessionMessage(bytes: Uint8Array): SessionMessage {
  const limits = { maxBytes: MAX_BUNDLE_BYTES + 16, maxDepth: 1, maxItems: 10 };
  const arr = asArray(decodeCbor(bytes, limits), 'session message', 1, 8);
  const type = asUint(arr[0], 'message type', 255);
  switch (type) {
    case SessionMessageType.STATUS: {
      asArray(arr, 'status', 8);
      return {
        type,
        status: {
          sessionId: asBytes(arr[1], 'session id', 16),
          state: asUint(arr[2], 'state', SessionState.FAILED) as SessionState,
          connector: asUint(arr[3], 'connector', MAX_CONNECTOR),
          energyWh: asUint(arr[4], 'energy'),
          amount: asUint(arr[5], 'amount', MAX_AMOUNT),
          hold: asUint(arr[6], 'hold', MAX_AMOUNT),
          elapsedSeconds: asUint(arr[7], 'elapsed'),
        },
      };
    }
    case SessionMessageType.STOP:
      asArray(arr, 'stop', 2);
      return { type, deviceSignature: asBytes(arr[1], 'device signature', 64) };
    case SessionMessageType.RECEIPT:
      asArray(arr, 'receipt', 2);
      return { type, receipt: asBytes(arr[1], 'receipt', 1, MAX_RECEIPT_BYTES) };
    case SessionMessageType.ERROR: {
      asArray(arr, 'error', 2);
      const code = asUint(arr[1], 'error code', 999);
      if (!isErrorCode(code))
        throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `unknown error code ${code}`);
      return { type, code };
    }
    case SessionMessageType.BUNDLE:
      asArray(arr, 'bundle', 2);
      return { type, bundle: asBytes(arr[1], 'bundle', 1, MAX_BUNDLE_BYTES) };
    case SessionMessageType.REPORT_REQUEST:
      asArray(arr, 'report request', 1);
      return { type };
    case SessionMessageType.REPORT:
      asArray(arr, 'report', 2);
      return { type, report: asBytes(arr[1], 'report', 1, MAX_REPORT_BYTES) };
    case SessionMessageType.ACK: {
      asArray(arr, 'ack', 3);
      const code = asUint(arr[2], 'ack code', 999);
      if (code !== 0 && !isErrorCode(code))
        throw new ProtocolError(ErrorCode.UNEXPECTED_TYPE, `unknown ack code ${code}`);
      return { type, acknowledged: asUint(arr[1], 'acknowledged type', 255), code };
    }
    default:
      throw new ProtocolError(ErrorCode.UNEXPECTED_MESSAGE, `session message type ${type}`);
  }
}
