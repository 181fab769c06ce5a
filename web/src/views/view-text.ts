/**
 * View logic shared by the screens, kept out of .svelte files so it is unit-tested: which
 * message a tap failure shows, and the label of a voucher status.
 * @module
 */

import { ErrorCode } from '../../../shared/src/errors.ts';
import type { TapFailure } from '../charging/charging-controller.ts';
import { bluetoothFailureKey, type MessageKey } from '../i18n.ts';
import type { VoucherStatus } from '../vouchers/voucher-service.ts';

export type Translate = (key: MessageKey, params?: Record<string, string | number>) => string;

export interface FailureText {
  readonly text: string;
  /** "Pick again" (the chooser) is the way out, not a dead end. */
  readonly pickAgain: boolean;
}

/** The driver's message for a failed tap, in the current language. */
export function failureText(
  failure: TapFailure,
  t: Translate,
  errorMessage: (code: number) => string,
): FailureText {
  switch (failure.kind) {
    case 'bluetooth':
      return { text: t(bluetoothFailureKey(failure.failure)), pickAgain: failure.failure === 'cancelled' };
    case 'wrong-device':
      return { text: t('wrongDevice'), pickAgain: true };
    case 'wrong-station':
      return { text: t('wrongStation'), pickAgain: false };
    case 'voucher-expired':
      return { text: t('voucherExpired'), pickAgain: false };
    case 'voucher-unusable':
      return {
        text: t('voucherUnusable', {
          state: t(failure.state === 'cancelled' ? 'statusCancelled' : 'statusRefunded'),
        }),
        pickAgain: false,
      };
    case 'link-lost':
      return { text: t('linkLost'), pickAgain: true };
    case 'gateway':
      return {
        text: errorMessage(failure.code),
        // Busy or faulted connectors and stale hellos are worth another try.
        pickAgain:
          failure.code === ErrorCode.HELLO_EXPIRED ||
          failure.code === ErrorCode.DEADLINE_EXCEEDED ||
          failure.code === ErrorCode.STATION_BUSY,
      };
  }
}

const STATUS_KEYS: Readonly<Record<VoucherStatus, MessageKey>> = {
  ready: 'statusReady',
  charging: 'statusCharging',
  used: 'statusUsed',
  expired: 'statusExpired',
  refunded: 'statusRefunded',
  cancelled: 'statusCancelled',
};

export function statusKey(status: VoucherStatus): MessageKey {
  return STATUS_KEYS[status];
}

export function stopReasonKey(reason: number): MessageKey | undefined {
  return reason >= 1 && reason <= 7 ? (`stop${reason}` as MessageKey) : undefined;
}

/** A Unix-seconds time as the driver's local date and time. */
export function formatTime(unixSeconds: number, locale: string): string {
  return new Date(unixSeconds * 1000).toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' });
}
