/**
 * The OCPP 1.6J message shapes this driver sends and receives, as TypeScript types. They follow
 * the official OCPP 1.6 JSON schemas; every message on the wire is validated against those
 * schemas by `ocpp-rpc` in strict mode (inbound before a handler runs, outbound before it is
 * sent), so handlers can rely on these shapes. Only the fields the driver uses are listed for
 * inbound messages.
 * @module
 */

export const OCPP_SUBPROTOCOL = 'ocpp1.6';

export type ChargePointStatus =
  | 'Available'
  | 'Preparing'
  | 'Charging'
  | 'SuspendedEVSE'
  | 'SuspendedEV'
  | 'Finishing'
  | 'Reserved'
  | 'Unavailable'
  | 'Faulted';

export type ChargePointErrorCode =
  | 'ConnectorLockFailure'
  | 'EVCommunicationError'
  | 'GroundFailure'
  | 'HighTemperature'
  | 'InternalError'
  | 'LocalListConflict'
  | 'NoError'
  | 'OtherError'
  | 'OverCurrentFailure'
  | 'PowerMeterFailure'
  | 'PowerSwitchFailure'
  | 'ReaderFailure'
  | 'ResetFailure'
  | 'UnderVoltage'
  | 'OverVoltage'
  | 'WeakSignal';

export interface SampledValue {
  readonly value: string;
  readonly context?: string;
  readonly format?: 'Raw' | 'SignedData';
  readonly measurand?: string;
  readonly phase?: string;
  readonly location?: string;
  readonly unit?: string;
}

export interface MeterValue {
  readonly timestamp: string;
  readonly sampledValue: readonly SampledValue[];
}

export type AuthorizationStatus = 'Accepted' | 'Blocked' | 'Expired' | 'Invalid' | 'ConcurrentTx';

export interface IdTagInfo {
  readonly status: AuthorizationStatus;
}

// ---- charge point → central system ------------------------------------------------------------

export interface BootNotificationRequest {
  readonly chargePointVendor: string;
  readonly chargePointModel: string;
  readonly chargePointSerialNumber?: string;
  readonly chargeBoxSerialNumber?: string;
  readonly firmwareVersion?: string;
  readonly meterType?: string;
  readonly meterSerialNumber?: string;
}

export interface StatusNotificationRequest {
  readonly connectorId: number;
  readonly errorCode: ChargePointErrorCode;
  readonly status: ChargePointStatus;
  readonly info?: string;
  readonly vendorId?: string;
  readonly vendorErrorCode?: string;
  readonly timestamp?: string;
}

export interface AuthorizeRequest {
  readonly idTag: string;
}

export interface StartTransactionRequest {
  readonly connectorId: number;
  readonly idTag: string;
  readonly meterStart: number;
  readonly timestamp: string;
  readonly reservationId?: number;
}

export interface StopTransactionRequest {
  readonly transactionId: number;
  readonly meterStop: number;
  readonly timestamp: string;
  readonly idTag?: string;
  readonly reason?: string;
  readonly transactionData?: readonly MeterValue[];
}

export interface MeterValuesRequest {
  readonly connectorId: number;
  readonly transactionId?: number;
  readonly meterValue: readonly MeterValue[];
}

// ---- central system → charge point ------------------------------------------------------------

export interface ChargingProfile {
  readonly chargingProfileId: number;
  readonly stackLevel: number;
  readonly chargingProfilePurpose: 'TxProfile';
  readonly chargingProfileKind: 'Relative';
  readonly chargingSchedule: {
    readonly chargingRateUnit: 'W' | 'A';
    readonly chargingSchedulePeriod: readonly { readonly startPeriod: number; readonly limit: number }[];
  };
}

export interface RemoteStartTransactionRequest {
  readonly connectorId: number;
  readonly idTag: string;
  readonly chargingProfile?: ChargingProfile;
}

export type TriggerableMessage = 'BootNotification' | 'Heartbeat' | 'MeterValues' | 'StatusNotification';

/** What the central system calls, with its request and the charge point's answer. */
export interface CentralSystemCalls {
  RemoteStartTransaction: {
    request: RemoteStartTransactionRequest;
    response: { readonly status: 'Accepted' | 'Rejected' };
  };
  RemoteStopTransaction: {
    request: { readonly transactionId: number };
    response: { readonly status: 'Accepted' | 'Rejected' };
  };
  TriggerMessage: {
    request: { readonly requestedMessage: TriggerableMessage; readonly connectorId?: number };
    response: { readonly status: 'Accepted' | 'Rejected' | 'NotImplemented' };
  };
  ChangeAvailability: {
    request: { readonly connectorId: number; readonly type: 'Inoperative' | 'Operative' };
    response: { readonly status: 'Accepted' | 'Rejected' | 'Scheduled' };
  };
  ChangeConfiguration: {
    request: { readonly key: string; readonly value: string };
    response: { readonly status: 'Accepted' | 'Rejected' | 'RebootRequired' | 'NotSupported' };
  };
}

export type CentralSystemCall = keyof CentralSystemCalls;
