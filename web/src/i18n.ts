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
  bluetoothLocationOff: BLUETOOTH_FAILURE_TEXT['location-off'].en,
  bluetoothPermissionDenied: BLUETOOTH_FAILURE_TEXT['permission-denied'].en,
  navCharge: 'Charge',
  navStations: 'Stations',
  navVouchers: 'Vouchers',
  navWallet: 'Wallet',
  navReceipts: 'Receipts',
  online: 'Online',
  offline: 'Offline',
  syncPending: '{count} waiting to upload',
  syncDone: 'Everything uploaded',
  lastSync: 'Last sync {time}',
  syncNow: 'Sync now',
  storageRefused:
    'This browser may delete PilePass data when space runs low, including unused vouchers and receipts. Install the app or allow persistent storage to keep them safe.',
  storagePersisted: 'Vouchers and receipts are kept in persistent storage.',
  signIn: 'Sign in',
  signOut: 'Sign out',
  register: 'Create account',
  email: 'Email',
  password: 'Password (at least 8 characters)',
  signedInAs: 'Signed in as {email}',
  needSignIn:
    'Sign in while you are online to buy pre-deductions. Vouchers you already hold work without it.',
  balance: 'Balance',
  held: 'Held for vouchers',
  topUp: 'Top up (sandbox)',
  topUpAmount: 'Top-up amount',
  negativeBalance:
    'Your balance is negative because a late receipt was charged after its hold had been refunded.',
  stationsTitle: 'Charging stations',
  stationOffline: 'Offline station — buy a pre-deduction before you go.',
  stationOnline: 'Online',
  connectorLabel: 'Connector {id} · {kw} kW',
  pricePerKwh: '{price} per kWh',
  buy: 'Buy pre-deduction',
  buyTitle: 'Pre-deduction for {station}, connector {connector}',
  amount: 'Amount to hold',
  amountInvalid: 'Enter an amount like 50 or 50.00.',
  buyExplain:
    'The amount is held in your wallet. You pay only for the energy you charge; the rest is returned after the session is settled.',
  validFor: 'Valid until {date}',
  bought: 'Pre-deduction ready: {amount} held, valid until {date}.',
  vouchersTitle: 'My vouchers',
  noVouchers: 'No vouchers yet. Buy a pre-deduction for a station while you are online.',
  statusReady: 'Ready',
  statusCharging: 'Charging',
  statusUsed: 'Used',
  statusExpired: 'Expired',
  statusRefunded: 'Refunded',
  statusCancelled: 'Cancelled',
  cancelVoucher: 'Cancel (lost phone)',
  cancelConfirm: 'Cancel this voucher? It can no longer start charging. The held amount is returned.',
  captured: 'Charged {amount}',
  refunded: 'Returned {amount}',
  chooseVoucher: 'Voucher',
  pile: 'Pile',
  scanCode: 'Scan the code on the pile',
  enterCode: 'Or type the code printed on the pile',
  codePlaceholder: 'e.g. pilepass:station-id/1',
  useCode: 'Use code',
  codeInvalid: 'That is not a PilePass pile code.',
  scanUnavailable: 'The camera is not available. Type the code printed on the pile instead.',
  stopScan: 'Stop camera',
  selectedPile: 'Pile {station}, connector {connector}',
  noReadyVoucher: 'You have no voucher ready for charging. Buy one while you are online.',
  presenting: 'Checking your voucher with the station…',
  charging: 'Charging',
  stopping: 'Stopping…',
  energy: 'Energy',
  cost: 'Cost',
  holdOf: 'of {hold} held',
  elapsed: 'Time',
  stop: 'Stop charging',
  detached:
    'The Bluetooth link was lost. Charging continues at the station. Reconnect to see it, stop it or get the receipt.',
  reconnect: 'Reconnect',
  finished: 'Charging finished',
  receiptKept: 'The receipt is saved on this phone and will be uploaded when you are online.',
  done: 'Done',
  wrongDevice: 'That is not the station your voucher is for (a different or fake device). Pick again.',
  pickAgain: 'Pick again',
  wrongStation: 'This voucher is for another station. Choose a voucher for this pile or buy a new one.',
  voucherExpired: 'This voucher has expired. Its hold will be returned; buy a new pre-deduction.',
  voucherUnusable: 'This voucher was {state} and cannot start charging.',
  linkLost: 'The Bluetooth link dropped before the station answered. Try again.',
  receiptsTitle: 'Receipts',
  noReceipts: 'No receipts yet.',
  uploaded: 'Uploaded',
  notUploaded: 'Waiting to upload',
  receiptRefused: 'Uploaded, but the cloud refused it: the operator has been alerted and will check it.',
  stopReason: 'Stopped: {reason}',
  offlineNotice: 'You are offline. Vouchers, tap to charge and receipts still work.',
  cloudError: 'The cloud said: {message}',
  cloudOffline: 'The cloud cannot be reached. Try again when you are online.',
  stop1: 'you stopped it',
  stop2: 'the held amount was reached',
  stop3: 'the vehicle was unplugged',
  stop4: 'a fault at the pile',
  stop5: 'no vehicle started charging',
  stop6: 'the station restarted',
  stop7: 'the vehicle is full',
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
  bluetoothLocationOff: BLUETOOTH_FAILURE_TEXT['location-off'].zh,
  bluetoothPermissionDenied: BLUETOOTH_FAILURE_TEXT['permission-denied'].zh,
  navCharge: '充电',
  navStations: '充电站',
  navVouchers: '凭证',
  navWallet: '钱包',
  navReceipts: '收据',
  online: '在线',
  offline: '离线',
  syncPending: '{count} 项待上传',
  syncDone: '已全部上传',
  lastSync: '上次同步 {time}',
  syncNow: '立即同步',
  storageRefused:
    '此浏览器可能在空间不足时删除 PilePass 数据（包括未使用的凭证和收据）。请安装应用或允许持久存储以确保安全。',
  storagePersisted: '凭证和收据已保存在持久存储中。',
  signIn: '登录',
  signOut: '退出登录',
  register: '注册账户',
  email: '电子邮箱',
  password: '密码（至少 8 个字符）',
  signedInAs: '已登录：{email}',
  needSignIn: '请在联网时登录以购买预扣。已持有的凭证无需登录即可使用。',
  balance: '余额',
  held: '凭证冻结金额',
  topUp: '充值（沙盒）',
  topUpAmount: '充值金额',
  negativeBalance: '由于一张迟到的收据在其冻结金额退回后才结算，您的余额为负。',
  stationsTitle: '充电站',
  stationOffline: '离线充电站——出发前请先购买预扣。',
  stationOnline: '在线',
  connectorLabel: '充电枪 {id} · {kw} kW',
  pricePerKwh: '每千瓦时 {price}',
  buy: '购买预扣',
  buyTitle: '{station} 充电枪 {connector} 的预扣',
  amount: '冻结金额',
  amountInvalid: '请输入金额，例如 50 或 50.00。',
  buyExplain: '该金额将在钱包中冻结。您只需为实际充电量付费，结算后余额将退回。',
  validFor: '有效期至 {date}',
  bought: '预扣已就绪：已冻结 {amount}，有效期至 {date}。',
  vouchersTitle: '我的凭证',
  noVouchers: '暂无凭证。请在联网时为充电站购买预扣。',
  statusReady: '可用',
  statusCharging: '充电中',
  statusUsed: '已使用',
  statusExpired: '已过期',
  statusRefunded: '已退款',
  statusCancelled: '已取消',
  cancelVoucher: '取消（手机丢失）',
  cancelConfirm: '取消此凭证？它将无法再启动充电，冻结金额将退回。',
  captured: '已扣款 {amount}',
  refunded: '已退回 {amount}',
  chooseVoucher: '凭证',
  pile: '充电桩',
  scanCode: '扫描充电桩上的二维码',
  enterCode: '或输入充电桩上印的编码',
  codePlaceholder: '例如 pilepass:station-id/1',
  useCode: '使用编码',
  codeInvalid: '这不是 PilePass 充电桩编码。',
  scanUnavailable: '无法使用相机。请输入充电桩上印的编码。',
  stopScan: '关闭相机',
  selectedPile: '充电桩 {station}，充电枪 {connector}',
  noReadyVoucher: '您没有可用于充电的凭证。请在联网时购买。',
  presenting: '正在与充电站核验凭证…',
  charging: '充电中',
  stopping: '正在停止…',
  energy: '电量',
  cost: '费用',
  holdOf: '冻结 {hold}',
  elapsed: '时长',
  stop: '停止充电',
  detached: '蓝牙连接已断开，充电站仍在继续充电。请重新连接以查看、停止充电或获取收据。',
  reconnect: '重新连接',
  finished: '充电完成',
  receiptKept: '收据已保存在本机，联网后将自动上传。',
  done: '完成',
  wrongDevice: '这不是您凭证对应的充电站（可能是其他或伪造的设备）。请重新选择。',
  pickAgain: '重新选择',
  wrongStation: '此凭证属于其他充电站。请选择此充电桩的凭证或购买新的预扣。',
  voucherExpired: '此凭证已过期，冻结金额将退回。请购买新的预扣。',
  voucherUnusable: '此凭证已{state}，无法启动充电。',
  linkLost: '充电站应答前蓝牙连接已断开。请重试。',
  receiptsTitle: '收据',
  noReceipts: '暂无收据。',
  uploaded: '已上传',
  notUploaded: '等待上传',
  receiptRefused: '已上传，但云端拒绝了此收据：运营方已收到警报并将核查。',
  stopReason: '停止原因：{reason}',
  offlineNotice: '您已离线。凭证、点击充电和收据仍可使用。',
  cloudError: '云端返回：{message}',
  cloudOffline: '无法连接云端。请在联网后重试。',
  stop1: '您已停止',
  stop2: '已达到冻结金额',
  stop3: '车辆已拔枪',
  stop4: '充电桩故障',
  stop5: '车辆未开始充电',
  stop6: '充电站已重启',
  stop7: '车辆已充满',
};

export const MESSAGES: Readonly<Record<Language, Readonly<Record<MessageKey, string>>>> = {
  en: EN,
  'zh-CN': ZH_CN,
};

const FAILURE_KEYS: Readonly<Record<BluetoothFailure, MessageKey>> = {
  unsupported: 'bluetoothUnsupported',
  unavailable: 'bluetoothUnavailable',
  'location-off': 'bluetoothLocationOff',
  'permission-denied': 'bluetoothPermissionDenied',
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
