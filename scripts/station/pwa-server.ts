/**
 * Serves the built PWA (web/dist) and forwards `/v1/*` to the cloud, so app and API share one
 * origin — as the TLS reverse proxy does in production (docs/deployment.md). Used by
 * `npm start`, `npm run demo` and the browser tests. Loopback only.
 *
 * Caching: `index.html`, `sw.js` and the manifest are `no-cache` (updates must be seen);
 * hashed assets are immutable. A cloud that does not answer gives a 502 with the API's error
 * shape (`offline`), which the app treats like no network.
 * @module
 */

import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** The same policy as web/index.html's meta tag, as a header (it also covers the worker). */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "require-trusted-types-for 'script'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export interface PwaServerOptions {
  /** The built app, default web/dist. */
  readonly root: string;
  /** Where `/v1` goes, e.g. http://127.0.0.1:8080; without one `/v1` answers 404. */
  readonly cloudUrl?: string;
  /** The CSP header (default: the app's); false for pages that bring their own (test pages). */
  readonly contentSecurityPolicy?: string | false;
  /** Fixed port (the app's origin, and so its storage, depends on it); 0 = any free one. */
  readonly port?: number;
  readonly host?: string;
}

export interface PwaServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

function proxy(cloud: URL, req: IncomingMessage, res: ServerResponse): void {
  const upstream = request(
    {
      protocol: cloud.protocol,
      hostname: cloud.hostname,
      port: cloud.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: cloud.host },
      timeout: 15_000,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  const fail = () => {
    if (!res.headersSent)
      sendJson(res, 502, { error: { code: 'offline', message: 'the cloud could not be reached' } });
    else res.destroy();
  };
  upstream.on('timeout', () => upstream.destroy(new Error('timeout')));
  upstream.on('error', fail);
  req.pipe(upstream);
}

export async function startPwaServer(options: PwaServerOptions): Promise<PwaServer> {
  const root = resolve(options.root);
  const cloud = options.cloudUrl === undefined ? undefined : new URL(options.cloudUrl);
  const csp = options.contentSecurityPolicy ?? CONTENT_SECURITY_POLICY;
  const server = createServer(async (req, res) => {
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      return sendJson(res, 400, { error: { code: 'invalid_request', message: 'bad URL' } });
    }
    if (pathname.startsWith('/v1/') || pathname === '/openapi.json') {
      if (!cloud) return sendJson(res, 404, { error: { code: 'not_found', message: 'no cloud here' } });
      return proxy(cloud, req, res);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendJson(res, 405, { error: { code: 'method' } });
    if (pathname.includes('\0')) return sendJson(res, 400, { error: { code: 'invalid_request' } });
    let file = resolve(join(root, pathname));
    if (file !== root && !file.startsWith(root + sep))
      return sendJson(res, 403, { error: { code: 'forbidden' } });
    try {
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
    } catch {
      // Unknown paths are app routes: the shell answers (as the service worker does offline).
      file = join(root, 'index.html');
    }
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      return sendJson(res, 404, { error: { code: 'not_found' } });
    }
    const hashed = file.includes(`${sep}assets${sep}`);
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
      ...(csp === false ? {} : { 'content-security-policy': csp }),
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'permissions-policy': 'camera=(self), bluetooth=(self), geolocation=()',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host === '0.0.0.0' ? '127.0.0.1' : (options.host ?? '127.0.0.1')}:${port}/`,
    port,
    close: () =>
      new Promise<void>((ok, fail) => {
        server.closeAllConnections();
        server.close((err) => (err ? fail(err) : ok()));
      }),
  };
}
