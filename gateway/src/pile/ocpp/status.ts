/**
 * What an OCPP 1.6 `StatusNotification` means for the gateway's `ConnectorReading`. Pure.
 *
 * | status                                  | plugged   | energy may flow | available for a new session |
 * | --------------------------------------- | --------- | --------------- | --------------------------- |
 * | Available                               | false     | no              | yes                         |
 * | Preparing, Finishing                    | true      | no              | yes                         |
 * | Charging, SuspendedEV, SuspendedEVSE    | true      | yes             | no (busy)                   |
 * | Reserved, Unavailable                   | unknown   | no              | no → reads as faulted       |
 * | Faulted                                 | unknown   | no              | no → faulted, `fault` event |
 *
 * Reserved and Unavailable read as faulted so the gateway never sells a session on a
 * connector the pile will not start (the gateway never reserves, so a reservation is someone
 * else's). Two error codes also fault a connector whatever its status, because the gateway can
 * then neither bill (`PowerMeterFailure`) nor trust it to switch off (`PowerSwitchFailure`);
 * other error codes with a non-Faulted status are warnings in OCPP and are only logged.
 * Connector 0 is the charge point as a whole: Faulted or Unavailable there applies to every
 * connector.
 * @module
 */

import type { ChargePointErrorCode, ChargePointStatus } from './messages.ts';

const ENERGY_STATES: ReadonlySet<ChargePointStatus> = new Set(['Charging', 'SuspendedEV', 'SuspendedEVSE']);
const PLUGGED_STATES: ReadonlySet<ChargePointStatus> = new Set([
  'Preparing',
  'Charging',
  'SuspendedEV',
  'SuspendedEVSE',
  'Finishing',
]);
const NOT_AVAILABLE: ReadonlySet<ChargePointStatus> = new Set(['Reserved', 'Unavailable', 'Faulted']);
const FATAL_ERRORS: ReadonlySet<ChargePointErrorCode> = new Set(['PowerMeterFailure', 'PowerSwitchFailure']);

/** The last StatusNotification of one connector (or of connector 0). */
export interface ReportedStatus {
  readonly status: ChargePointStatus;
  readonly errorCode: ChargePointErrorCode;
  readonly info?: string | undefined;
  readonly vendorErrorCode?: string | undefined;
}

/** Whether a vehicle is plugged in; undefined when the status does not tell. */
export function pluggedOf(status: ChargePointStatus): boolean | undefined {
  if (status === 'Available') return false;
  return PLUGGED_STATES.has(status) ? true : undefined;
}

/** The pile is in a transaction state where it delivers energy when the vehicle asks. */
export function energyMayFlow(status: ChargePointStatus): boolean {
  return ENERGY_STATES.has(status);
}

/** The status (with its error code) is a fault the charging logic must act on. */
export function isFault(reported: ReportedStatus): boolean {
  return reported.status === 'Faulted' || FATAL_ERRORS.has(reported.errorCode);
}

/** The connector cannot take a new session (fault, unavailable, reserved). */
export function isUnavailable(reported: ReportedStatus): boolean {
  return NOT_AVAILABLE.has(reported.status) || isFault(reported);
}

/** Connector 0's status makes every connector unavailable. */
export function chargePointBlocksAll(reported: ReportedStatus | undefined): boolean {
  return reported !== undefined && (reported.status === 'Unavailable' || isFault(reported));
}

/** A human-readable fault detail: "Faulted GroundFailure (vendor E12): RCD tripped". */
export function faultDetail(reported: ReportedStatus): string {
  const vendor = reported.vendorErrorCode ? ` (vendor ${reported.vendorErrorCode})` : '';
  const info = reported.info ? `: ${reported.info}` : '';
  return `${reported.status} ${reported.errorCode}${vendor}${info}`;
}
