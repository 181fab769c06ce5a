/**
 * The gateway's OCPP-J WebSocket endpoint for one charge point, on `ocpp-rpc`'s RPCServer in
 * strict mode: every CALL and CALLRESULT in either direction is validated against the official
 * OCPP 1.6 JSON schemas bundled with ocpp-rpc, and a message that fails is answered with a
 * CALLERROR (FormationViolation, TypeConstraintViolation, …) without reaching the driver.
 *
 * Admission: the URL path must be `<path>/<chargePointId>`, the client must offer the `ocpp1.6`
 * subprotocol (without it ocpp-rpc would skip validation), and, when a password is configured,
 * HTTP Basic auth must carry it (OCPP security profile 1). Anything else is refused at the
 * HTTP upgrade.
 *
 * One connection at a time: a new connection from the same identity replaces the old one (a
 * pile reconnects before the gateway notices its old socket died); the old one is reported
 * lost. Liveness: when nothing at all arrives from the charge point for `livenessTimeoutMs`
 * (heartbeats missed), the link is reported lost and the socket terminated; WebSocket pings
 * catch a dead TCP connection as well.
 * @module
 */

import { timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import ocppRpc, { type RPCServer as RpcServerType } from 'ocpp-rpc';

import { OcppPileError } from './errors.ts';
import { type CentralSystemCall, type CentralSystemCalls, OCPP_SUBPROTOCOL } from './messages.ts';

// ocpp-rpc is CommonJS and spreads its error classes into module.exports, which Node's ESM
// loader cannot see as named exports: take them from the default export.
const { createRPCError, RPCServer, TimeoutError } = ocppRpc;

export interface OcppLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
}

export interface OcppEndpointOptions {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly chargePointId: string;
  readonly password?: string | undefined;
  /** Per call to the charge point, monotonic ms. */
  readonly requestTimeoutMs: number;
  /** No message from the charge point for this long = link lost, monotonic ms. */
  readonly livenessTimeoutMs: number;
  /** WebSocket ping interval, monotonic ms. */
  readonly pingIntervalMs: number;
  readonly log: OcppLog;
}

/** One accepted WebSocket connection of the charge point. */
export interface ChargePointLink {
  /** Increases with every connection, so stale callbacks can tell they are stale. */
  readonly serial: number;
  readonly remoteAddress: string | undefined;
  call<M extends CentralSystemCall>(
    method: M,
    params: CentralSystemCalls[M]['request'],
  ): Promise<CentralSystemCalls[M]['response']>;
}

export interface OcppEndpointHandlers {
  onConnect(link: ChargePointLink): void;
  /** Answers one CALL from the charge point; throw `callError(…)` for a CALLERROR. */
  onCall(link: ChargePointLink, method: string, params: unknown): Promise<object>;
  onDisconnect(link: ChargePointLink, reason: string): void;
}

/** The subset of ocpp-rpc's RPCServerClient used here (its class is not exported as a type). */
interface RpcServerClient {
  readonly identity: string;
  readonly protocol: string | undefined;
  readonly handshake: { readonly remoteAddress: string | undefined };
  call(method: string, params: unknown, options?: { callTimeoutMs?: number }): Promise<unknown>;
  handle(handler: (call: { method?: string; params?: unknown }) => Promise<object>): void;
  close(options?: { code?: number; reason?: string; force?: boolean }): Promise<unknown>;
  on(event: 'message', listener: (e: { outbound: boolean }) => void): void;
  on(event: 'close', listener: (e: { code?: number; reason?: string }) => void): void;
  on(
    event: 'strictValidationFailure',
    listener: (e: { method: string; outbound: boolean; isCall: boolean; error: Error }) => void,
  ): void;
  on(event: 'badMessage', listener: (e: { error: Error }) => void): void;
}

/** A CALLERROR for the charge point (ocpp-rpc turns a thrown RPCError into one). */
export function callError(code: 'NotImplemented' | 'NotSupported' | 'GenericError', message: string): Error {
  return createRPCError(code, message) as Error; // an RPCError instance; the typings say Record
}

function sameSecret(given: Buffer | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const want = Buffer.from(expected, 'utf8');
  return given.length === want.length && timingSafeEqual(given, want);
}

export class OcppEndpoint {
  readonly #options: OcppEndpointOptions;
  readonly #handlers: OcppEndpointHandlers;
  readonly #server: RpcServerType;
  #http: Server | undefined;
  #current: { link: ChargePointLink; client: RpcServerClient; liveness: NodeJS.Timeout } | undefined;
  #serial = 0;
  #closed = false;

  private constructor(options: OcppEndpointOptions, handlers: OcppEndpointHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#server = new RPCServer({
      protocols: [OCPP_SUBPROTOCOL],
      strictMode: true,
      callTimeoutMs: options.requestTimeoutMs,
      pingIntervalMs: options.pingIntervalMs,
      // One outstanding CALL at a time, as OCPP-J requires of a central system.
      callConcurrency: 1,
      respondWithDetailedErrors: false,
    });
    this.#server.auth((accept, reject, handshake) => {
      const { log, path, chargePointId, password } = options;
      const who = {
        identity: handshake.identity,
        endpoint: handshake.endpoint,
        from: handshake.remoteAddress,
      };
      if (handshake.endpoint !== path || handshake.identity !== chargePointId) {
        log.warn(who, 'OCPP connection refused: unknown path or charge point identity');
        return reject(404, 'Not found');
      }
      if (!handshake.protocols.has(OCPP_SUBPROTOCOL)) {
        log.warn(who, 'OCPP connection refused: the client does not offer the ocpp1.6 subprotocol');
        return reject(400, 'Subprotocol ocpp1.6 required');
      }
      if (password !== undefined && !sameSecret(handshake.password, password)) {
        log.warn(who, 'OCPP connection refused: wrong or missing Basic auth password');
        return reject(401, 'Unauthorized');
      }
      accept({}, OCPP_SUBPROTOCOL);
    });
    this.#server.on('client', (client: RpcServerClient) => this.#adopt(client));
    this.#server.on('error', (err: Error) => options.log.warn({ err: String(err) }, 'OCPP server error'));
  }

  /** Starts listening; resolves once the port is bound. */
  static async listen(options: OcppEndpointOptions, handlers: OcppEndpointHandlers): Promise<OcppEndpoint> {
    const endpoint = new OcppEndpoint(options, handlers);
    endpoint.#http = await endpoint.#server.listen(options.port, options.host);
    return endpoint;
  }

  /** The URL a charge point connects to (with the bound port). */
  get url(): string {
    const address = this.#http?.address() as AddressInfo | null | undefined;
    const port = address?.port ?? this.#options.port;
    const host = this.#options.host.includes(':') ? `[${this.#options.host}]` : this.#options.host;
    const base = this.#options.path === '/' ? '' : this.#options.path;
    return `ws://${host}:${port}${base}/${encodeURIComponent(this.#options.chargePointId)}`;
  }

  get connected(): ChargePointLink | undefined {
    return this.#current?.link;
  }

  /** Drops the current connection (reported through onDisconnect). */
  drop(reason: string): void {
    const current = this.#current;
    if (!current) return;
    this.#lose(current.link, reason);
    void current.client.close({ force: true }).catch(() => {});
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.drop('the gateway closed the OCPP endpoint');
    await this.#server.close({ code: 1001, reason: 'gateway shutting down', force: true });
    const http = this.#http;
    if (http?.listening) await new Promise<void>((resolve) => http.close(() => resolve()));
  }

  #adopt(client: RpcServerClient): void {
    const { log, requestTimeoutMs, livenessTimeoutMs } = this.#options;
    if (this.#closed) {
      void client.close({ force: true }).catch(() => {});
      return;
    }
    if (this.#current) this.drop('replaced by a new connection from the same charge point');
    const serial = ++this.#serial;
    const link: ChargePointLink = {
      serial,
      remoteAddress: client.handshake.remoteAddress,
      call: async (method, params) => {
        if (this.#current?.link !== link) {
          throw new OcppPileError(
            'not-connected',
            `cannot send ${method}: the charge point is not connected`,
          );
        }
        try {
          return (await client.call(method, params, { callTimeoutMs: requestTimeoutMs })) as never;
        } catch (err) {
          if (err instanceof TimeoutError) {
            throw new OcppPileError('timeout', `${method}: no answer within ${requestTimeoutMs} ms`, {
              cause: err,
            });
          }
          if (this.#current?.link !== link) {
            throw new OcppPileError('link-lost', `${method}: the connection dropped before the answer`, {
              cause: err,
            });
          }
          const code = (err as { rpcErrorCode?: string }).rpcErrorCode;
          throw new OcppPileError(
            'rejected',
            `${method}: the charge point answered ${code ?? 'an error'}: ${(err as Error).message}`,
            { cause: err },
          );
        }
      },
    };
    const liveness = setTimeout(() => {
      log.warn({ livenessTimeoutMs }, 'OCPP charge point silent: heartbeats missed, dropping the link');
      this.drop(`no message from the charge point for ${livenessTimeoutMs} ms (heartbeats missed)`);
    }, livenessTimeoutMs);
    liveness.unref();
    this.#current = { link, client, liveness };
    client.on('message', (e) => {
      if (!e.outbound && this.#current?.link === link) liveness.refresh();
    });
    client.on('close', (e) => {
      this.#lose(link, `WebSocket closed (code ${e.code ?? 'none'}${e.reason ? `, ${e.reason}` : ''})`);
    });
    client.on('strictValidationFailure', (e) => {
      log.warn(
        { method: e.method, outbound: e.outbound, isCall: e.isCall, err: e.error.message },
        'OCPP message failed schema validation',
      );
    });
    client.on('badMessage', (e) =>
      log.warn({ err: e.error.message }, 'OCPP charge point sent a bad message'),
    );
    client.handle(async ({ method, params }) => {
      if (this.#current?.link !== link) throw callError('GenericError', 'stale connection');
      if (typeof method !== 'string') throw callError('NotImplemented', 'no method');
      return this.#handlers.onCall(link, method, params);
    });
    log.info({ from: link.remoteAddress, serial }, 'OCPP charge point connected');
    this.#handlers.onConnect(link);
  }

  #lose(link: ChargePointLink, reason: string): void {
    const current = this.#current;
    if (!current || current.link !== link) return;
    clearTimeout(current.liveness);
    this.#current = undefined;
    this.#options.log.warn({ serial: link.serial, reason }, 'OCPP charge point link lost');
    this.#handlers.onDisconnect(link, reason);
  }
}
