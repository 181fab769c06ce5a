/**
 * A GATT transport over a local Unix stream socket: the fast local transport for crash and
 * soak tests, where the gateway runs as a real process (`pilepass-gateway start --ble
 * socket:<path>`) and the test's phones connect from another process. The real BLE path
 * (bleno over HCI) is tested separately (test/gateway/ble-transport.test.ts); this one keeps
 * BLE's shapes so the link code sees what it sees over the radio, at the in-process
 * transport's MTU semantics:
 *
 * - one socket connection = one BLE link (random link id per connection);
 * - MTU 23 until the phone asks for more (capped at 517), like an ATT MTU exchange;
 * - the hello is a long read: one request per blob with its offset, each answer at most
 *   MTU − 1 bytes (the gateway cuts it, as bleno does);
 * - writes are at most 512 B, answered once the handler has settled (write with response);
 * - notifications are at most MTU − 3 B, and only reach a phone that subscribed;
 * - ATT is sequential: a link's requests are served one at a time, in order.
 *
 * Wire format: newline-delimited JSON (UTF-8, one object per line, at most 4 KiB), bytes in
 * base64. A disconnect is the end of the stream, from either side.
 *
 *   phone → gateway                         gateway → phone
 *   {"t":"connect","address":"…"}           {"t":"connected","link":"<id>","mtu":23}
 *   {"t":"mtu","mtu":185}                   {"t":"mtu","mtu":185}
 *   {"t":"read","id":1,"offset":0}          {"t":"read","id":1,"data":"<base64>"}
 *   {"t":"write","id":2,"data":"<base64>"}  {"t":"write","id":2}
 *   {"t":"subscribe"} / {"t":"unsubscribe"} {"t":"notify","data":"<base64>"}
 *                                           {"t":"error","id":2,"message":"…"} (request failed)
 *
 * Anything malformed drops the connection. A stale socket file left by a killed gateway is
 * removed at start; a live gateway already listening on the path makes start fail. The socket
 * is mode 0600.
 * @module
 */

import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { longRead, type PhoneLink } from '../../../shared/src/index.ts';
import type { GattHandler, GattTransport, LinkId } from '../contracts.ts';

/** ATT MTU before an exchange, and the largest one accepted. */
const MIN_MTU = 23;
const MAX_MTU = 517;
/** Largest attribute value (ATT), and what Web Bluetooth accepts per write. */
const MAX_WRITE_BYTES = 512;
/** Longest line either side accepts (a 512 B write is 684 base64 characters). */
const MAX_LINE_BYTES = 4096;
/** sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 103;
/** How long a disconnect waits for the peer to close before destroying the socket. */
const CLOSE_GRACE_MS = 1_000;

type Message = Record<string, unknown>;

/** Splits a byte stream into JSON lines; calls `onBad` for an overlong line or bad JSON. */
function lineReader(onMessage: (message: Message) => void, onBad: (why: string) => void) {
  let buffered = '';
  return (chunk: string) => {
    buffered += chunk;
    for (;;) {
      const newline = buffered.indexOf('\n');
      if (newline < 0) {
        if (buffered.length > MAX_LINE_BYTES) onBad('line too long');
        return;
      }
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.length > MAX_LINE_BYTES) return onBad('line too long');
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return onBad('not JSON');
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        return onBad('not an object');
      onMessage(parsed as Message);
    }
  };
}

function send(socket: Socket, message: Message, callback?: (err?: Error | null) => void): boolean {
  if (socket.destroyed || !socket.writable) {
    callback?.(new Error('socket closed'));
    return false;
  }
  return socket.write(`${JSON.stringify(message)}\n`, callback);
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function fromBase64(value: unknown): Uint8Array | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
  return new Uint8Array(Buffer.from(value, 'base64'));
}

function isRequestId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES)
    throw new RangeError(`socket path too long for a Unix socket: ${path}`);
}

/** Resolves true when something accepts connections on `path`. */
function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

// ---- gateway side -----------------------------------------------------------------------------

interface SocketLink {
  readonly id: LinkId;
  readonly socket: Socket;
  mtu: number;
  subscribed: boolean;
  /** Requests are served one at a time (ATT is sequential). */
  queue: Promise<void>;
  closing: boolean;
}

export interface SocketTransportOptions {
  /** Errors from handler callbacks (default: ignored; the link layer handles its own). */
  readonly onError?: (error: unknown, link: LinkId | undefined) => void;
}

export class SocketTransport implements GattTransport {
  readonly path: string;
  readonly #onError: (error: unknown, link: LinkId | undefined) => void;
  readonly #links = new Map<LinkId, SocketLink>();
  readonly #sockets = new Set<Socket>();
  #handler: GattHandler | undefined;
  #server: Server | undefined;

  constructor(path: string, options: SocketTransportOptions = {}) {
    checkSocketPath(path);
    this.path = path;
    this.#onError = options.onError ?? (() => {});
  }

  async start(handler: GattHandler): Promise<void> {
    if (this.#server) throw new Error('socket transport already started');
    if (existsSync(this.path)) {
      if (await isListening(this.path)) throw new Error(`a gateway is already listening on ${this.path}`);
      unlinkSync(this.path); // left behind by a killed gateway
    }
    this.#handler = handler;
    const server = createServer((socket) => this.#serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.path, 0o600);
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of [...this.#sockets]) socket.destroy();
    await closed;
    this.#handler = undefined;
    try {
      unlinkSync(this.path);
    } catch {}
  }

  maxNotifySize(link: LinkId): number {
    return (this.#links.get(link)?.mtu ?? MIN_MTU) - 3;
  }

  async notify(link: LinkId, unit: Uint8Array): Promise<void> {
    const state = this.#links.get(link);
    if (!state || state.closing) throw new Error(`notify: link ${link} is not connected`);
    if (!state.subscribed) throw new Error(`notify: link ${link} has not subscribed to events`);
    if (unit.length > state.mtu - 3)
      throw new RangeError(`notify: ${unit.length} B exceeds MTU − 3 = ${state.mtu - 3} B`);
    await new Promise<void>((resolve, reject) =>
      send(state.socket, { t: 'notify', data: toBase64(unit) }, (err) =>
        err ? reject(new Error(`notify: link ${link} failed: ${err.message}`)) : resolve(),
      ),
    );
  }

  disconnect(link: LinkId): void {
    const state = this.#links.get(link);
    if (!state || state.closing) return;
    state.closing = true;
    state.socket.end(); // what was written (e.g. a rejection) still goes out first
    setTimeout(() => state.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    socket.setEncoding('utf8');
    let link: SocketLink | undefined;
    const drop = () => {
      socket.destroy();
    };
    const feed = lineReader((message) => {
      if (socket.destroyed) return; // the rest of a chunk after a drop
      const handler = this.#handler;
      if (!handler) return drop();
      if (!link) {
        if (message.t !== 'connect') return drop();
        const address = typeof message.address === 'string' ? message.address.slice(0, 64) : undefined;
        link = {
          id: randomUUID(),
          socket,
          mtu: MIN_MTU,
          subscribed: false,
          queue: Promise.resolve(),
          closing: false,
        };
        this.#links.set(link.id, link);
        this.#safely(link.id, () =>
          handler.onConnect(link!.id, { address: address ?? `socket:${link!.id.slice(0, 8)}` }),
        );
        send(socket, { t: 'connected', link: link.id, mtu: link.mtu });
        return;
      }
      this.#onMessage(handler, link, message, drop);
    }, drop);
    socket.on('data', feed);
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#sockets.delete(socket);
      if (!link) return;
      link.closing = true;
      this.#links.delete(link.id);
      const id = link.id;
      this.#safely(id, () => this.#handler?.onDisconnect(id));
    });
  }

  #onMessage(handler: GattHandler, link: SocketLink, message: Message, drop: () => void): void {
    const id = link.id;
    switch (message.t) {
      case 'mtu': {
        const asked = message.mtu;
        if (typeof asked !== 'number' || !Number.isSafeInteger(asked) || asked < MIN_MTU) {
          drop();
          return;
        }
        link.queue = link.queue.then(() => {
          link.mtu = Math.min(asked, MAX_MTU);
          this.#safely(id, () => handler.onMtu(id, link.mtu));
          send(link.socket, { t: 'mtu', mtu: link.mtu });
        });
        return;
      }
      case 'subscribe':
      case 'unsubscribe': {
        const on = message.t === 'subscribe';
        link.queue = link.queue.then(() => {
          if (link.subscribed === on) return;
          link.subscribed = on;
          this.#safely(id, () => (on ? handler.onSubscribe(id) : handler.onUnsubscribe(id)));
        });
        return;
      }
      case 'read': {
        const requestId = message.id;
        const offset = message.offset;
        if (!isRequestId(requestId) || !isRequestId(offset)) {
          drop();
          return;
        }
        link.queue = link.queue.then(async () => {
          try {
            const value = await handler.readHello(id, offset);
            send(link.socket, { t: 'read', id: requestId, data: toBase64(value.subarray(0, link.mtu - 1)) });
          } catch (err) {
            this.#onError(err, id);
            send(link.socket, { t: 'error', id: requestId, message: 'read failed' });
          }
        });
        return;
      }
      case 'write': {
        const requestId = message.id;
        const data = fromBase64(message.data);
        if (!isRequestId(requestId) || !data) {
          drop();
          return;
        }
        if (data.length > MAX_WRITE_BYTES) {
          send(link.socket, { t: 'error', id: requestId, message: `write of ${data.length} B over 512 B` });
          return;
        }
        link.queue = link.queue.then(async () => {
          try {
            await handler.onWrite(id, data);
          } catch (err) {
            this.#onError(err, id); // the ATT answer is success anyway, as over BLE
          }
          send(link.socket, { t: 'write', id: requestId });
        });
        return;
      }
      default:
        drop();
    }
  }

  #safely(link: LinkId, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#onError(err, link);
    }
  }
}

// ---- phone side -------------------------------------------------------------------------------

export interface SocketPhoneLink extends PhoneLink {
  /** The gateway's id for this link. */
  readonly id: LinkId;
  /** The MTU the gateway granted. */
  readonly mtu: number;
  readonly connected: boolean;
  /** ATT operations used so far, for round-trip counts. */
  readonly counters: { reads: number; writes: number; notifications: number };
  /** Phone-initiated disconnect. */
  disconnect(): void;
}

export interface SocketPhoneLinkOptions {
  /** ATT MTU to ask for (default 185; the gateway caps it at 517). */
  readonly mtu?: number;
  /** Shown in the gateway's log as the link's address. */
  readonly address?: string;
  /** Gives up connecting (and the MTU exchange) after this, ms (default 5000). */
  readonly timeoutMs?: number;
}

/**
 * Connects a phone to a gateway's socket transport: one connection = one link. Resolves once
 * the link is up and the MTU exchanged; rejects if the gateway is not there.
 */
export async function connectSocketPhoneLink(
  path: string,
  options: SocketPhoneLinkOptions = {},
): Promise<SocketPhoneLink> {
  const socket = createConnection(path);
  socket.setEncoding('utf8');
  const timeoutMs = options.timeoutMs ?? 5_000;
  const notifyListeners = new Set<(unit: Uint8Array) => void>();
  const disconnectListeners = new Set<() => void>();
  const pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  const counters = { reads: 0, writes: 0, notifications: 0 };
  let nextId = 1;
  let connected = false;
  let closed = false;
  let onControl: ((message: Message) => void) | undefined;

  const fail = (reason: string) => {
    for (const { reject } of pending.values()) reject(new Error(`link dropped: ${reason}`));
    pending.clear();
  };
  socket.on(
    'data',
    lineReader(
      (message) => {
        if (message.t === 'notify') {
          const unit = fromBase64(message.data);
          if (!unit) return socket.destroy();
          counters.notifications++;
          for (const listener of [...notifyListeners]) listener(unit);
          return;
        }
        if (
          (message.t === 'read' || message.t === 'write' || message.t === 'error') &&
          isRequestId(message.id)
        ) {
          const waiter = pending.get(message.id);
          pending.delete(message.id);
          if (message.t === 'error')
            waiter?.reject(new Error(`gateway refused: ${String(message.message ?? 'error')}`));
          else waiter?.resolve(message);
          return;
        }
        onControl?.(message);
      },
      () => socket.destroy(),
    ),
  );
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
    fail('disconnected');
    if (!connected) return;
    connected = false;
    for (const listener of [...disconnectListeners]) listener();
  });

  // connect, then the MTU exchange
  const handshake = new Promise<{ link: LinkId; mtu: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no link to ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    let link: LinkId | undefined;
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error('link dropped while connecting'));
    });
    socket.once('connect', () => {
      send(socket, { t: 'connect', ...(options.address ? { address: options.address } : {}) });
      send(socket, { t: 'mtu', mtu: Math.max(MIN_MTU, Math.min(options.mtu ?? 185, MAX_MTU)) });
    });
    onControl = (message) => {
      if (message.t === 'connected' && typeof message.link === 'string') link = message.link;
      else if (message.t === 'mtu' && link !== undefined && typeof message.mtu === 'number') {
        clearTimeout(timer);
        resolve({ link, mtu: message.mtu });
      } else socket.destroy();
    };
  });
  const { link: id, mtu } = await handshake;
  connected = !closed;
  onControl = () => socket.destroy();

  const request = (message: Message): Promise<Message> => {
    if (!connected) return Promise.reject(new Error('link dropped'));
    const requestId = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(requestId, { resolve, reject });
      send(socket, { ...message, id: requestId });
    });
  };

  return {
    id,
    mtu,
    counters,
    get connected() {
      return connected;
    },
    readHello() {
      return longRead(async (offset) => {
        counters.reads++;
        const blob = fromBase64((await request({ t: 'read', offset })).data);
        if (!blob) throw new Error('malformed hello blob');
        return blob;
      }, mtu);
    },
    async write(unit) {
      if (!connected) throw new Error('link dropped');
      if (unit.length > MAX_WRITE_BYTES) throw new Error('Web Bluetooth refuses writes over 512 B');
      counters.writes++;
      await request({ t: 'write', data: toBase64(unit) });
    },
    onNotify(listener) {
      notifyListeners.add(listener);
      if (notifyListeners.size === 1) send(socket, { t: 'subscribe' });
      return () => {
        notifyListeners.delete(listener);
        if (notifyListeners.size === 0) send(socket, { t: 'unsubscribe' });
      };
    },
    onDisconnect(listener) {
      disconnectListeners.add(listener);
      return () => disconnectListeners.delete(listener);
    },
    disconnect() {
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    },
  };
}
