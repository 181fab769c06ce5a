/**
 * The app's two languages — English and Simplified Chinese — with plain functions (no
 * framework): the default comes from the browser's languages, a choice is persisted in
 * localStorage, and protocol errors use the shared numbered list (ERROR_MESSAGES).
 * @module
 */

import { ERROR_MESSAGES, type ErrorCode, isErrorCode } from '../../shared/src/errors.ts';
import { BLUETOOTH_FAILURE_TEXT, type BluetoothFailure } from './ble/web-bluetooth-link.ts';

export const LANGUAGES = ['en', 'zh-CN'] as const;
export type Language = (typeof LANGUAGES)[number];

/** Each language's own name, for the switch. */
export const LANGUAGE_NAMES: Readonly<Record<Language, string>> = { en: 'English', 'zh-CN': '简体中文' };

export const STORAGE_KEY = 'pilepass.lang';

const EN = {
  appTitle: 'PilePass',
  tagline: 'Pay and charge, even when the station is offline.',
  language: 'Language',
  tapToCharge: 'Tap to charge',
  tapHint: 'Stand by the charging pile and tap the button to connect over Bluetooth.',
  connecting: 'Connecting to the station…',
  connected: 'Connected to {name}.',
  unknownStation: 'the station',
  tryAgain: 'Try again',
  unknownError: 'Something went wrong. Please try again.',
  protocolError: 'Error {code}: {message}',
  updateAvailable: 'A new version of PilePass is available.',
  reload: 'Reload',
  offlineReady: 'PilePass now works offline.',
  bluetoothUnsupported: BLUETOOTH_FAILURE_TEXT.unsupported.en,
  bluetoothUnavailable: BLUETOOTH_FAILURE_TEXT.unavailable.en,
  bluetoothCancelled: BLUETOOTH_FAILURE_TEXT.cancelled.en,
  bluetoothConnectFailed: BLUETOOTH_FAILURE_TEXT['connect-failed'].en,
} as const;

export type MessageKey = keyof typeof EN;

const ZH_CN: Readonly<Record<MessageKey, string>> = {
  appTitle: 'PilePass',
  tagline: '充电站离线时也能支付并充电。',
  language: '语言',
  tapToCharge: '点击开始充电',
  tapHint: '请站在充电桩旁，点击按钮通过蓝牙连接。',
  connecting: '正在连接充电站…',
  connected: '已连接 {name}。',
  unknownStation: '充电站',
  tryAgain: '重试',
  unknownError: '出现问题，请重试。',
  protocolError: '错误 {code}：{message}',
  updateAvailable: 'PilePass 有新版本。',
  reload: '重新加载',
  offlineReady: 'PilePass 现在可以离线使用。',
  bluetoothUnsupported: BLUETOOTH_FAILURE_TEXT.unsupported.zh,
  bluetoothUnavailable: BLUETOOTH_FAILURE_TEXT.unavailable.zh,
  bluetoothCancelled: BLUETOOTH_FAILURE_TEXT.cancelled.zh,
  bluetoothConnectFailed: BLUETOOTH_FAILURE_TEXT['connect-failed'].zh,
};

export const MESSAGES: Readonly<Record<Language, Readonly<Record<MessageKey, string>>>> = {
  en: EN,
  'zh-CN': ZH_CN,
};

const FAILURE_KEYS: Readonly<Record<BluetoothFailure, MessageKey>> = {
  unsupported: 'bluetoothUnsupported',
  unavailable: 'bluetoothUnavailable',
  cancelled: 'bluetoothCancelled',
  'connect-failed': 'bluetoothConnectFailed',
};

export function bluetoothFailureKey(failure: BluetoothFailure): MessageKey {
  return FAILURE_KEYS[failure];
}

/** Maps a BCP 47 tag to one of ours: any Chinese tag → zh-CN, any English tag → en. */
export function matchLanguage(tag: string): Language | undefined {
  const lower = tag.trim().toLowerCase();
  if (lower === 'zh' || lower.startsWith('zh-')) return 'zh-CN';
  if (lower === 'en' || lower.startsWith('en-')) return 'en';
  return undefined;
}

/** The first of the browser's preferred languages we have; English otherwise. */
export function detectLanguage(preferred: readonly string[]): Language {
  for (const tag of preferred) {
    const match = matchLanguage(tag);
    if (match) return match;
  }
  return 'en';
}

export function isLanguage(value: unknown): value is Language {
  return typeof value === 'string' && (LANGUAGES as readonly string[]).includes(value);
}

type Params = Readonly<Record<string, string | number>>;

function format(template: string, params?: Params): string {
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole,
  );
}

export interface I18nOptions {
  /** Where the choice persists; default localStorage when available. */
  readonly storage?: Pick<Storage, 'getItem' | 'setItem'> | undefined;
  /** The browser's preferred languages; default navigator.languages / navigator.language. */
  readonly preferred?: readonly string[];
}

export interface I18n {
  readonly language: Language;
  setLanguage(language: Language): void;
  t(key: MessageKey, params?: Params): string;
  /** A protocol error's message from the shared numbered list (unknown codes: generic text). */
  errorMessage(code: ErrorCode | number): string;
  /** Called on every change of language; returns the unsubscribe function. */
  subscribe(listener: (language: Language) => void): () => void;
}

function defaultStorage(): Pick<Storage, 'getItem' | 'setItem'> | undefined {
  try {
    return typeof localStorage === 'undefined' ? undefined : localStorage;
  } catch {
    return undefined; // storage disabled (e.g. blocked cookies)
  }
}

function defaultPreferred(): readonly string[] {
  if (typeof navigator === 'undefined') return [];
  if (navigator.languages && navigator.languages.length > 0) return navigator.languages;
  return navigator.language ? [navigator.language] : [];
}

export function createI18n(options: I18nOptions = {}): I18n {
  const storage = 'storage' in options ? options.storage : defaultStorage();
  const listeners = new Set<(language: Language) => void>();
  let stored: string | null = null;
  try {
    stored = storage?.getItem(STORAGE_KEY) ?? null;
  } catch {
    stored = null;
  }
  let language: Language = isLanguage(stored)
    ? stored
    : detectLanguage(options.preferred ?? defaultPreferred());

  return {
    get language() {
      return language;
    },
    setLanguage(next) {
      if (!isLanguage(next)) throw new RangeError(`unsupported language ${String(next)}`);
      try {
        storage?.setItem(STORAGE_KEY, next);
      } catch {
        // Not persisted (quota, private mode): the choice still holds for this page.
      }
      if (next === language) return;
      language = next;
      for (const listener of listeners) listener(next);
    },
    t(key, params) {
      return format(MESSAGES[language][key], params);
    },
    errorMessage(code) {
      if (!isErrorCode(code)) return MESSAGES[language].unknownError;
      const text = ERROR_MESSAGES[code];
      return format(MESSAGES[language].protocolError, {
        code,
        message: language === 'en' ? text.en : text.zh,
      });
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}
