/**
 * @module gateway/h2
 * What the Node data plane (`http-plane.ts`) needs to serve an HTTP/2
 * request (node:http2's compatibility API) exactly as an HTTP/1.1 one:
 * the request head in HTTP/1.1 terms (method, target, raw header list
 * with `:authority` as Host and no pseudo-headers, no connection-specific
 * headers) and a response head without the headers HTTP/2 forbids
 * (dropping one stream is `drop.ts`'s). Plugins then see the same request info either
 * way, but `pr`, which is "HTTP/2.0".
 *
 * nghttp2 already refuses a request carrying connection-specific headers
 * (RFC 9113 §8.2.2) with a stream reset, so they never get here; they are
 * removed again below so that no hop-by-hop header can be smuggled
 * through whatever Node lets pass.
 */

import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** A request of either protocol, as the data plane gets it. */
export type AnyRequest = IncomingMessage | Http2ServerRequest;
export type AnyResponse = ServerResponse | Http2ServerResponse;

/** Headers that describe one connection, not the message: forbidden in HTTP/2 (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** Whether a request came over HTTP/2. */
export function isH2(req: AnyRequest): req is Http2ServerRequest {
  return req.httpVersionMajor === 2;
}

/** A request's head in HTTP/1.1 terms. */
export interface RequestHead {
  method: string;
  /** the request target (origin form) */
  target: string;
  /** `[name, value, ...]`: for HTTP/2, without pseudo-headers, `:authority` as `host` */
  raw: string[];
}

/**
 * The head of a request of either protocol. For HTTP/2: `:authority`
 * becomes Host unless a Host header is there (the same host, any case,
 * counts once; a different one is kept, and the core refuses two Hosts
 * with 400, RFC 9113 §8.3.1); pseudo-headers and connection-specific
 * headers are left out, and TE unless it is "trailers".
 *
 * @example
 * requestHead(req) // { method: 'GET', target: '/x?y=1', raw: ['foo', 'bar', 'host', 'example.com'] }
 */
export function requestHead(req: AnyRequest): RequestHead {
  if (!isH2(req)) return { method: req.method ?? 'GET', target: req.url ?? '/', raw: req.rawHeaders };
  const src = req.rawHeaders;
  const raw: string[] = [];
  let authority: string | null = null;
  let host: string | null = null;
  for (let i = 0; i + 1 < src.length; i += 2) {
    const name = src[i];
    const value = src[i + 1];
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = value;
      continue;
    }
    const lower = name.toLowerCase();
    if (CONNECTION_SPECIFIC.has(lower)) continue;
    if (lower === 'te' && value.trim().toLowerCase() !== 'trailers') continue;
    if (lower === 'host') {
      if (host !== null && host.toLowerCase() === value.toLowerCase()) continue;
      host ??= value;
    }
    raw.push(name, value);
  }
  if (authority !== null && (host === null || host.toLowerCase() !== authority.toLowerCase())) raw.push('host', authority);
  return { method: req.method, target: req.url ?? '/', raw };
}

/**
 * Writes a response head: as given on HTTP/1.1; on HTTP/2 without the
 * connection-specific headers (node:http2 would throw on them).
 */
export function writeHead(res: AnyResponse, status: number, headers: string[]): void {
  if (!('stream' in res)) return void res.writeHead(status, headers);
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) if (!CONNECTION_SPECIFIC.has(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1]);
  res.writeHead(status, out);
}
