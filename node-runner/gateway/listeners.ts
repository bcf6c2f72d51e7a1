/**
 * @module gateway/listeners
 * The small answers a listener gives before the data plane sees a
 * request, and how a config's listeners become the ones to open:
 * `redirect_https` (a 308 to the same URL on the first TLS listener,
 * ACME's HTTP-01 challenges excepted so they can be answered on the plain
 * port), the 503 of a gateway without config yet, and `listenSpecs`
 * (listener settings with their certificate stores, shared by the
 * runner and the gateway workers).
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { ListenerSettings } from '../../src/core/config/config-listeners.ts';
import type { Logger } from '../../src/core/log.ts';
import { hostOf, hostProblem } from '../../src/core/routing/routing.ts';
import { CertStore } from './cert-store.ts';

/** Where ACME's HTTP-01 challenges are asked for; they stay on the plain listener. */
export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * Answers a request on a `redirect_https` listener with a 308 to the
 * same host and target over HTTPS on `httpsPort` (left out when 443).
 * Returns false (nothing written) for ACME challenges and before the TLS
 * listener has a port, so the caller serves the request as usual.
 *
 * @example
 * redirectHttps(req, res, 8443) // 308 Location: https://example.com:8443/a?b
 */
export function redirectHttps(req: IncomingMessage, res: ServerResponse, httpsPort: number | null): boolean {
  const target = req.url ?? '/';
  if (httpsPort === null || target.startsWith(ACME_CHALLENGE_PREFIX)) return false;
  const hosts: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'host') hosts.push(req.rawHeaders[i + 1]);
  const bad = hostProblem(hosts);
  if (bad || !target.startsWith('/')) {
    const body = bad || 'bad request: expected an origin-form request target\n';
    res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), connection: 'close' });
    res.end(body);
    return true;
  }
  const host = hostOf(hosts[0]);
  res.writeHead(308, { location: `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${target}`, 'content-length': '0' });
  res.end();
  return true;
}

/** The answer of a gateway that has no config yet. */
export function notReady(res: ServerResponse | Http2ServerResponse): void {
  const head = { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' };
  if ('stream' in res) res.writeHead(503, head);
  else res.writeHead(503, head);
  res.end('not ready: no config yet\n');
}

/** A listener from the config, with its certificates loaded (TLS). */
export interface LoadedListener {
  /** the config path ("gateway" for the shorthand, else "gateway.listeners[i]") */
  name: string;
  settings: ListenerSettings;
  host: string;
  port: number;
  store: CertStore | null;
}

/** Splits "host:port" (or "[v6]:port"). */
function split(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(i + 1)) };
}

/**
 * Loads the certificates of every TLS listener. Throws
 * `CertificateError` (naming the listener and the file) when one has
 * nothing to serve; stores already made are closed first.
 *
 * @example
 * const listeners = loadListeners(gatewayListeners(config.gateway), 'gateway.listeners', logger);
 */
export function loadListeners(list: ListenerSettings[], shorthand: boolean, logger: Logger): LoadedListener[] {
  const out: LoadedListener[] = [];
  try {
    list.forEach((settings, i) => {
      const name = shorthand ? 'gateway' : `gateway.listeners[${i}]`;
      let store: CertStore | null = null;
      if (settings.tls) {
        try {
          store = new CertStore({ tls: settings.tls, listener: settings.listen, logger });
        } catch (err) {
          (err as Error).message = `${name}.tls: ${(err as Error).message}`;
          throw err;
        }
      }
      out.push({ name, settings, ...split(settings.listen), store });
    });
  } catch (err) {
    for (const l of out) l.store?.close();
    throw err;
  }
  return out;
}
