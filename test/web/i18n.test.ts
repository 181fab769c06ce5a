import { describe, expect, it } from 'vitest';
import { ERROR_MESSAGES, ErrorCode } from '../../shared/src/errors.ts';
import {
  createI18n,
  detectLanguage,
  LANGUAGES,
  type Language,
  MESSAGES,
  type MessageKey,
  STORAGE_KEY,
} from '../../web/src/i18n.ts';

function memoryStorage(initial: Record<string, string> = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (key: string) => data.get(key) ?? null,
    setItem: (key: string, value: string) => {
      data.set(key, value);
    },
  };
}

describe('i18n', () => {
  it('picks the default from the browser languages', () => {
    expect(detectLanguage(['zh-CN', 'en-US'])).toBe('zh-CN');
    expect(detectLanguage(['zh-Hans-CN'])).toBe('zh-CN');
    expect(detectLanguage(['zh'])).toBe('zh-CN');
    expect(detectLanguage(['en-GB', 'zh-CN'])).toBe('en');
    expect(detectLanguage(['fr-FR', 'zh-TW'])).toBe('zh-CN');
    expect(detectLanguage(['fr-FR', 'de'])).toBe('en');
    expect(detectLanguage([])).toBe('en');
    expect(createI18n({ storage: memoryStorage(), preferred: ['zh-CN'] }).language).toBe('zh-CN');
    expect(createI18n({ storage: undefined, preferred: ['de-DE'] }).language).toBe('en');
  });

  it('prefers a persisted choice and ignores a bad one', () => {
    expect(
      createI18n({ storage: memoryStorage({ [STORAGE_KEY]: 'zh-CN' }), preferred: ['en'] }).language,
    ).toBe('zh-CN');
    expect(createI18n({ storage: memoryStorage({ [STORAGE_KEY]: 'xx' }), preferred: ['en'] }).language).toBe(
      'en',
    );
  });

  it('switches, notifies and persists', () => {
    const storage = memoryStorage();
    const i18n = createI18n({ storage, preferred: ['en-US'] });
    const seen: Language[] = [];
    const off = i18n.subscribe((lang) => seen.push(lang));
    expect(i18n.t('tapToCharge')).toBe('Tap to charge');
    i18n.setLanguage('zh-CN');
    expect(i18n.language).toBe('zh-CN');
    expect(i18n.t('tapToCharge')).toBe('点击开始充电');
    expect(storage.data.get(STORAGE_KEY)).toBe('zh-CN');
    expect(seen).toEqual(['zh-CN']);
    off();
    i18n.setLanguage('en');
    expect(seen).toEqual(['zh-CN']);
    expect(createI18n({ storage, preferred: ['zh-CN'] }).language).toBe('en');
    expect(() => i18n.setLanguage('fr' as Language)).toThrow(RangeError);
  });

  it('survives storage that throws', () => {
    const storage = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('denied');
      },
    };
    const i18n = createI18n({ storage, preferred: ['zh'] });
    expect(i18n.language).toBe('zh-CN');
    i18n.setLanguage('en');
    expect(i18n.language).toBe('en');
  });

  it('has every key, non-empty, in both languages', () => {
    const keys = Object.keys(MESSAGES.en).sort();
    for (const lang of LANGUAGES) {
      expect(Object.keys(MESSAGES[lang]).sort()).toEqual(keys);
      for (const key of keys) expect(MESSAGES[lang][key as MessageKey].trim()).not.toBe('');
    }
    // The Chinese table is actually Chinese where the text is more than the brand name.
    for (const key of keys as MessageKey[]) {
      if (key !== 'appTitle') expect(MESSAGES['zh-CN'][key]).not.toBe(MESSAGES.en[key]);
    }
  });

  it('formats parameters and protocol errors from the shared list', () => {
    const i18n = createI18n({ storage: undefined, preferred: ['en'] });
    expect(i18n.t('connected', { name: 'GW-1' })).toBe('Connected to GW-1.');
    expect(i18n.errorMessage(ErrorCode.VOUCHER_SPENT)).toBe(
      `Error 208: ${ERROR_MESSAGES[ErrorCode.VOUCHER_SPENT].en}`,
    );
    expect(i18n.errorMessage(99_999)).toBe(MESSAGES.en.unknownError);
    i18n.setLanguage('zh-CN');
    expect(i18n.errorMessage(ErrorCode.VOUCHER_SPENT)).toBe(
      `错误 208：${ERROR_MESSAGES[ErrorCode.VOUCHER_SPENT].zh}`,
    );
    expect(i18n.t('bluetoothUnsupported')).toContain('Web Bluetooth');
    expect(i18n.t('bluetoothUnsupported')).toContain('Chrome');
  });
});
