/**
 * The one error type of the OCPP pile driver. Its `code` says what went wrong in terms the
 * charging logic and an installer can act on; the message names the connector, the OCPP
 * message and the charge point's answer where there is one.
 * @module
 */

export type OcppPileErrorCode =
  /** No charge point is connected to the gateway's OCPP endpoint. */
  | 'not-connected'
  /** The WebSocket dropped (or was replaced) while the operation waited for the charge point. */
  | 'link-lost'
  /** The charge point did not answer, or did not send the expected message, in time. */
  | 'timeout'
  /** The charge point answered with a refusal or a CALLERROR. */
  | 'rejected'
  /** The connector is faulted, unavailable, or its state is not known on this connection. */
  | 'faulted'
  /** A transaction is already open or being started on the connector. */
  | 'busy'
  /** The driver does not serve that connector. */
  | 'unknown-connector'
  /** No meter register is known for the connector and the charge point did not send one. */
  | 'no-meter-value'
  /** The register is stale while energy may be flowing, and the charge point did not refresh it. */
  | 'stale-meter'
  /** A stop was refused or not confirmed by a StopTransaction in time: treat the connector as faulted. */
  | 'stop-unconfirmed'
  /** The driver was closed. */
  | 'closed';

export class OcppPileError extends Error {
  readonly code: OcppPileErrorCode;
  constructor(code: OcppPileErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options);
    this.name = 'OcppPileError';
    this.code = code;
  }
}
