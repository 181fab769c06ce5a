/**
 * The PWA's view logic without a browser: money and energy display (integer minor units
 * in, never a float), pile codes, the driver's message for every tap failure in both
 * languages, and the persistent-storage request.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/src/errors.ts';
import type { TapFailure } from '../../web/src/charging/charging-controller.ts';
import {
  formatDuration,
  formatEnergy,
  formatMoney,
  parseMoney,
  pricePerKwh,
} from '../../web/src/format/money.ts';
import { createI18n, LANGUAGES } from '../../web/src/i18n.ts';
import { formatPileCode, PileCodeError, parsePileCode } from '../../web/src/scan/pile-code.ts';
import { requestPersistentStorage } from '../../web/src/storage/persist.ts';
import { failureText, statusKey, stopReasonKey } from '../../web/src/views/view-text.ts';

describe('money and energy display', () => {
  it('formats minor units exactly, with the currency’s own minor digits', () => {
    expect(formatMoney(1234, 'CNY', 'en')).toBe('CN¥12.34');
    expect(formatMoney(5, 'EUR', 'en')).toBe('€0.05');
    expect(formatMoney(-250, 'CNY', 'en')).toBe('-CN¥2.50');
    expect(formatMoney(1234, 'JPY', 'en')).toBe('¥1,234');
    expect(formatMoney(123456789012, 'CNY', 'zh-CN')).toBe('¥1,234,567,890.12');
  });

  it('parses what a person types and round-trips every amount', () => {
    expect(parseMoney('12', 'CNY')).toBe(1200);
    expect(parseMoney('12.5', 'CNY')).toBe(1250);
    expect(parseMoney('12,05', 'EUR')).toBe(1205);
    expect(parseMoney('12.345', 'CNY')).toBeUndefined();
    expect(parseMoney('-1', 'CNY')).toBeUndefined();
    expect(parseMoney('1e3', 'CNY')).toBeUndefined();
    expect(parseMoney('12.5', 'JPY')).toBeUndefined();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99_999_999_999 }), (minor) => {
        const text = formatMoney(minor, 'EUR', 'en').replace(/[€,]/g, '');
        expect(parseMoney(text, 'EUR')).toBe(minor);
      }),
    );
  });

  it('energy in kWh from integer Wh, durations, price per kWh from the tariff scale', () => {
    expect(formatEnergy(12_345)).toBe('12.345 kWh');
    expect(formatEnergy(7)).toBe('0.007 kWh');
    expect(formatDuration(3_723)).toBe('1:02:03');
    expect(formatDuration(65)).toBe('1:05');
    expect(pricePerKwh({ energyPrice: 1_200_000, serviceFee: 400_000 })).toBe(160);
  });
});

describe('pile codes', () => {
  it('reads the QR URL form and the short form', () => {
    expect(parsePileCode('https://app.pilepass.example/#/pile/gw-demo-01/2')).toEqual({
      gatewayId: 'gw-demo-01',
      connector: 2,
    });
    expect(parsePileCode(' pilepass:gw.A_1/0 ')).toEqual({ gatewayId: 'gw.A_1', connector: 0 });
    const code = { gatewayId: 'station-7', connector: 1 };
    expect(parsePileCode(formatPileCode('https://x.example/', code))).toEqual(code);
  });

  it.each([
    'pilepass:gw/256',
    'pilepass:/1',
    `pilepass:${'a'.repeat(33)}/1`,
    'javascript:alert(1)//#/pile/gw/1',
    'https://x.example/#/pile/gw',
    'hello',
    '',
  ])('refuses %j with a typed error', (text) => {
    expect(() => parsePileCode(text)).toThrow(PileCodeError);
  });
});

describe('tap failures shown to the driver', () => {
  const failures: TapFailure[] = [
    { kind: 'bluetooth', failure: 'unsupported' },
    { kind: 'bluetooth', failure: 'unavailable' },
    { kind: 'bluetooth', failure: 'location-off' },
    { kind: 'bluetooth', failure: 'permission-denied' },
    { kind: 'bluetooth', failure: 'cancelled' },
    { kind: 'bluetooth', failure: 'connect-failed' },
    { kind: 'wrong-device' },
    { kind: 'wrong-station' },
    { kind: 'voucher-expired' },
    { kind: 'voucher-unusable', state: 'cancelled' },
    { kind: 'link-lost' },
    ...Object.values(ErrorCode).map((code): TapFailure => ({ kind: 'gateway', code })),
  ];

  it.each(LANGUAGES)('every failure has its own specific text in %s', (language) => {
    const i18n = createI18n({ storage: undefined, preferred: [language] });
    const texts = failures.map((f) => failureText(f, i18n.t, i18n.errorMessage).text);
    for (const text of texts) {
      expect(text).not.toBe('');
      expect(text).not.toBe(i18n.t('unknownError'));
    }
    expect(new Set(texts).size).toBe(texts.length);
  });

  it('wrong device and a cancelled chooser offer "pick again"; an expired voucher does not', () => {
    const i18n = createI18n({ storage: undefined, preferred: ['en'] });
    expect(failureText({ kind: 'wrong-device' }, i18n.t, i18n.errorMessage)).toEqual({
      text: 'That is not the station your voucher is for (a different or fake device). Pick again.',
      pickAgain: true,
    });
    expect(
      failureText({ kind: 'bluetooth', failure: 'cancelled' }, i18n.t, i18n.errorMessage).pickAgain,
    ).toBe(true);
    expect(failureText({ kind: 'voucher-expired' }, i18n.t, i18n.errorMessage).pickAgain).toBe(false);
    expect(
      failureText({ kind: 'gateway', code: ErrorCode.VOUCHER_SPENT }, i18n.t, i18n.errorMessage).text,
    ).toContain('208');
  });

  it('status and stop-reason labels exist in both languages', () => {
    for (const language of LANGUAGES) {
      const i18n = createI18n({ storage: undefined, preferred: [language] });
      for (const s of ['ready', 'charging', 'used', 'expired', 'refunded', 'cancelled'] as const)
        expect(i18n.t(statusKey(s))).not.toBe('');
      for (let r = 1; r <= 7; r++) expect(i18n.t(stopReasonKey(r)!)).not.toBe('');
      expect(stopReasonKey(99)).toBeUndefined();
    }
  });
});

describe('persistent storage request', () => {
  it('reports persisted, refused and unsupported', async () => {
    expect(await requestPersistentStorage({ persisted: async () => true, persist: async () => false })).toBe(
      'persisted',
    );
    expect(await requestPersistentStorage({ persisted: async () => false, persist: async () => true })).toBe(
      'persisted',
    );
    expect(await requestPersistentStorage({ persisted: async () => false, persist: async () => false })).toBe(
      'refused',
    );
    expect(
      await requestPersistentStorage({
        persisted: async () => false,
        persist: async () => {
          throw new Error('denied');
        },
      }),
    ).toBe('refused');
    expect(await requestPersistentStorage(undefined)).toBe('unsupported');
  });
});
