/**
 * @module gateway/drop
 * How the self-hosted gateway closes a connection without answering: for
 * a route whose action is `drop`, and for a plugin's drop verdict (`dr`).
 *
 * * HTTP/1.x (`dropRequest`): the socket is destroyed with no byte of a
 *   response written. On a keep-alive connection, the answers to earlier
 *   requests were written before (pipelined requests are served one at a
 *   time, in order); requests the client pipelined behind the dropped one
 *   are lost with the connection, as with nginx's `return 444`.
 * * HTTP/2: the connection carries other streams (possibly for other hosts
 *   the client coalesced onto it), so only the request's stream is reset
 *   (RST_STREAM with INTERNAL_ERROR, as Go's server does for a handler
 *   that aborts): no HEADERS or DATA for it, and the session goes on.
 * * Before the TLS handshake (`dropConnection`, `dropsBeforeHandshake`):
 *   the TLS listener reads the ClientHello's server name, asks whether
 *   every request that could arrive on that connection would be dropped,
 *   and if so closes the socket unanswered: no certificate is shown.
 *
 * Routing the request is the pipeline's; reading the ClientHello is the
 * TLS listener's.
 */

import type { IncomingMessage } from 'node:http';
import { constants as h2, type Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import type { Route } from '../../src/core/config/config.ts';
import { compileDomain } from '../../src/core/routing/routing.ts';
import type { GatewayState } from '../../src/core/state/state.ts';

/**
 * Drops one request: no response bytes for it (see the module for
 * HTTP/1.x and HTTP/2). Idempotent; never throws.
 *
 * @example
 * if (a.kind === 'drop') return dropRequest(req);
 */
export function dropRequest(req: IncomingMessage | Http2ServerRequest): void {
  if (req.httpVersionMajor === 2 && 'stream' in req) {
    const stream = (req as Http2ServerRequest).stream;
    if (!stream.destroyed && !stream.closed) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  (req as IncomingMessage).socket.destroy();
}

/**
 * Closes a connection that has not started its TLS handshake (or any
 * protocol): nothing is written to it. Idempotent; never throws.
 *
 * @example
 * if (dropsBeforeHandshake(state, sni)) return dropConnection(socket);
 */
export function dropConnection(socket: Socket): void {
  socket.destroy();
}

const domainMatchers = new WeakMap<Route, ((host: string) => unknown) | null>();

function domainOf(route: Route): ((host: string) => unknown) | null {
  let m = domainMatchers.get(route);
  if (m === undefined) {
    const d = route.match.domain;
    m = d === undefined || d.trim() === '' ? null : compileDomain(d);
    domainMatchers.set(route, m);
  }
  return m;
}

/**
 * Whether every request a TLS connection for `servername` (the
 * ClientHello's SNI; '' without one) could carry would be dropped, so the
 * connection can be closed before the handshake. Routes are taken in order,
 * as the router does: the first one that could match decides. A route
 * whose domain matches and that has no path and no methods decides for
 * all (drop or not); one with a path or methods that drops lets the next
 * decide the rest; any other that could match means some request would be
 * served: false. Without SNI, a route with a domain could still match by
 * the Host header, so it counts as "could match". No route: false (the
 * requests get 404, not a drop).
 *
 * The Host of the requests may name another host than the SNI; that only
 * matters for a client that asked for a dropped name, and the HTTP route
 * match still applies to every request that is not dropped here.
 *
 * @example
 * dropsBeforeHandshake(state, 'blocked.example.com') // true for routes [{ match: { domain: 'blocked.example.com' }, action: { type: 'drop' } }, ...]
 */
export function dropsBeforeHandshake(state: GatewayState, servername: string): boolean {
  const host = servername.toLowerCase().replace(/\.$/, '');
  for (const route of state.config.routes) {
    const domain = domainOf(route);
    if (domain !== null && host !== '' && !domain(host)) continue;
    const drops = state.plan(route.id)?.action.action.type === 'drop';
    const everyRequest = (domain === null || host !== '') && !route.match.path?.trim() && !route.match.methods?.length;
    if (everyRequest) return drops;
    if (!drops) return false;
  }
  return false;
}
