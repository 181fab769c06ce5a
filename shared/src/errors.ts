/**
 * The one closed, numbered list of protocol error codes shared by gateway, phone and cloud.
 *
 * Codes travel in-band (ATT error codes never reach a web page intact), so every failure a
 * peer can see has a number here, an English and a Chinese message. Numbers never change
 * meaning; new ones are only appended. Ranges: 1xx encoding, 2xx voucher, 3xx presentation
 * and device, 4xx secure session and framing, 5xx station state, 6xx sync bundle and report,
 * 9xx internal.
 * @module
 */

export const ErrorCode = {
  // 1xx — encoding
  MALFORMED: 100,
  NON_CANONICAL: 101,
  TOO_LARGE: 102,
  TOO_DEEP: 103,
  UNEXPECTED_TYPE: 104,
  // 2xx — voucher (pre-deduction information)
  ISSUER_SIGNATURE_INVALID: 200,
  UNKNOWN_KID: 201,
  ALGORITHM_MISMATCH: 202,
  SIGNATURE_HIGH_S: 203,
  VOUCHER_EXPIRED: 204,
  VOUCHER_NOT_YET_VALID: 205,
  WRONG_GATEWAY: 206,
  WRONG_CONNECTOR: 207,
  VOUCHER_SPENT: 208,
  VOUCHER_REVOKED: 209,
  ISSUER_KEY_REVOKED: 210,
  ISSUER_KEY_NOT_VALID: 211,
  AMOUNT_TOO_LOW: 212,
  CURRENCY_MISMATCH: 213,
  // 3xx — presentation (token / attach) and device proof
  UNSUPPORTED_VERSION: 300,
  VERSION_DOWNGRADE: 301,
  DEVICE_SIGNATURE_INVALID: 302,
  HELLO_EXPIRED: 303,
  HELLO_REUSED: 304,
  HELLO_SIGNATURE_INVALID: 305,
  WRONG_DEVICE: 306,
  DECRYPT_FAILED: 307,
  NO_SUCH_SESSION: 308,
  // 4xx — secure session and framing
  FRAME_REPLAYED: 400,
  FRAME_OUT_OF_ORDER: 401,
  FRAME_TOO_LARGE: 402,
  REASSEMBLY_TIMEOUT: 403,
  UNEXPECTED_MESSAGE: 404,
  SESSION_CLOSED: 405,
  RATE_LIMITED: 406,
  DEADLINE_EXCEEDED: 407,
  // 5xx — station state
  CONNECTOR_BUSY: 500,
  CONNECTOR_FAULTED: 501,
  VEHICLE_NOT_PLUGGED: 502,
  PILE_START_FAILED: 503,
  STATION_BUSY: 504,
  // 6xx — sync bundle and gateway report
  BUNDLE_SIGNATURE_INVALID: 600,
  BUNDLE_OUTDATED: 601,
  BUNDLE_WRONG_AUDIENCE: 602,
  BUNDLE_NONCE_MISMATCH: 603,
  RECEIPT_SIGNATURE_INVALID: 604,
  REPORT_SIGNATURE_INVALID: 605,
  // 9xx — internal
  INTERNAL: 900,
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorText {
  readonly en: string;
  readonly zh: string;
}

export const ERROR_MESSAGES: Readonly<Record<ErrorCode, ErrorText>> = {
  100: { en: 'The message is malformed.', zh: '消息格式错误。' },
  101: { en: 'The message is not in canonical encoding.', zh: '消息编码不规范。' },
  102: { en: 'The message is too large.', zh: '消息过大。' },
  103: { en: 'The message is nested too deeply.', zh: '消息嵌套层级过深。' },
  104: { en: 'A field has the wrong type or value.', zh: '字段类型或取值错误。' },
  200: { en: 'The voucher signature is not valid.', zh: '预扣凭证签名无效。' },
  201: { en: 'The voucher was signed by an unknown key.', zh: '预扣凭证的签名密钥未知。' },
  202: { en: "The signature algorithm is not the key's algorithm.", zh: '签名算法与密钥不匹配。' },
  203: { en: 'The signature is not in low-S form.', zh: '签名不是 low-S 形式。' },
  204: { en: 'The voucher has expired.', zh: '预扣凭证已过期。' },
  205: { en: 'The voucher is not valid yet.', zh: '预扣凭证尚未生效。' },
  206: { en: 'The voucher is for a different station.', zh: '该预扣凭证不属于此充电站。' },
  207: { en: 'The voucher is for a different connector.', zh: '该预扣凭证不属于此充电枪。' },
  208: { en: 'The voucher has already been used.', zh: '该预扣凭证已被使用。' },
  209: { en: 'The voucher has been cancelled.', zh: '该预扣凭证已被取消。' },
  210: { en: 'The issuer key has been revoked.', zh: '签发密钥已被吊销。' },
  211: { en: 'The issuer key is not valid at this time.', zh: '签发密钥当前无效。' },
  212: { en: "The pre-deducted amount is below this station's minimum.", zh: '预扣金额低于本站最低金额。' },
  213: { en: "The voucher is in another currency than this station's.", zh: '预扣凭证的币种与本站不符。' },
  300: { en: 'The protocol version is not supported.', zh: '不支持该协议版本。' },
  301: { en: 'The protocol version is older than the voucher allows.', zh: '协议版本低于凭证要求。' },
  302: { en: 'The device signature is not valid.', zh: '设备签名无效。' },
  303: { en: 'The station greeting has expired; reconnect.', zh: '充电站握手已过期，请重新连接。' },
  304: { en: 'The station greeting was already used; reconnect.', zh: '充电站握手已被使用，请重新连接。' },
  305: {
    en: 'This device is not the station the voucher is for; pick again.',
    zh: '该设备不是凭证对应的充电站，请重新选择。',
  },
  306: { en: 'This phone did not start the session.', zh: '该会话不是由本手机发起的。' },
  307: { en: 'The message could not be decrypted.', zh: '消息无法解密。' },
  308: { en: 'There is no such charging session.', zh: '不存在该充电会话。' },
  400: { en: 'A message was replayed; the session ended.', zh: '检测到重放消息，会话已结束。' },
  401: { en: 'Messages arrived out of order; the session ended.', zh: '消息顺序错误，会话已结束。' },
  402: { en: 'The message exceeds the size limit.', zh: '消息超出大小限制。' },
  403: { en: 'The message did not arrive in time.', zh: '消息未能按时到达。' },
  404: { en: 'This message was not expected now.', zh: '当前不应收到此消息。' },
  405: { en: 'The session has ended.', zh: '会话已结束。' },
  406: { en: 'Too many requests; try again shortly.', zh: '请求过多，请稍后再试。' },
  407: { en: 'The step took too long; reconnect.', zh: '操作超时，请重新连接。' },
  500: { en: 'The connector is in use.', zh: '充电枪正在使用中。' },
  501: { en: 'The connector is out of order.', zh: '充电枪故障。' },
  502: { en: 'Plug the vehicle in first.', zh: '请先连接车辆。' },
  503: { en: 'The charger did not start.', zh: '充电桩未能启动。' },
  504: { en: 'The station is busy; try again shortly.', zh: '充电站繁忙，请稍后再试。' },
  600: { en: 'The update is not signed by the trusted root.', zh: '更新包未经可信根密钥签名。' },
  601: { en: 'The update is older than the one installed.', zh: '更新包版本旧于已安装版本。' },
  602: { en: 'The update is for a different station.', zh: '更新包不属于此充电站。' },
  603: { en: 'The update is not bound to this request.', zh: '更新包与本次请求不匹配。' },
  604: { en: 'The receipt signature is not valid.', zh: '收据签名无效。' },
  605: { en: 'The station report signature is not valid.', zh: '充电站报告签名无效。' },
  900: { en: 'Internal error.', zh: '内部错误。' },
};

const KNOWN_CODES: ReadonlySet<number> = new Set(Object.values(ErrorCode));

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'number' && KNOWN_CODES.has(value);
}

export function errorName(code: ErrorCode): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return 'UNKNOWN';
}

/** The only exception type the protocol library throws for bad input. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, detail?: string) {
    super(`${errorName(code)} (${code})${detail ? `: ${detail}` : ''}`);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

/** Throws a ProtocolError with `code` unless `condition` holds. */
export function ensure(condition: unknown, code: ErrorCode, detail?: string): asserts condition {
  if (!condition) throw new ProtocolError(code, detail);
}
