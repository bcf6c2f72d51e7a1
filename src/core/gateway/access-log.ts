/**
 * @module access-log
 * The access log line, one per request, with the same fields from both
 * data planes (the Node gateway's logger, and the edge worker's
 * `console.log` for Workers Logs): what each plane measured goes in as an
 * `AccessFacts`, and `accessFields` gives the line's fields. Writing it,
 * and whether to, is the data plane's business.
 *
 * Fields (always present; null where the step did not happen):
 * `request_id`, `route` (id, null when none matched), `method`, `host`,
 * `path` (without the query), `query` (only when asked for), `status` (0:
 * cut off before a status was sent), `bytes_in` and `bytes_out` (on the
 * client's side; the edge counts bodies only, where their length is known),
 * `duration_ms`, `client` (its address), `upstream` (the picked target, or
 * the upstream's origin for a route without a balancer), `upstream_ms`
 * (from sending the request to the upstream's response head),
 * `on_request_ms` and `on_request_verdict` (allow, deny, drop, fallback,
 * error), `on_response_ms` and `on_response_verdict` (ok, error).
 */

import type { ClientInfo, RawRequest } from './pipeline.ts';
import type { AuthorizeResult } from '../protocol/protocol.ts';

/** What a data plane knows about a request when its answer is done. Times in ms, -1 (or '') when the step did not happen. */
export interface AccessFacts {
  requestId: string;
  route: string;
  method: string;
  host: string;
  /** the request target as sent (the query is cut off here unless `withQuery`) */
  target: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  client: string;
  /** the picked target, or for a route without a balancer the upstream URL (its origin is logged); '' when not proxied */
  upstream: string;
  upstreamMs: number;
  onRequestMs: number;
  onRequestVerdict: string;
  onResponseMs: number;
  onResponseVerdict: string;
}

/** The fields of one access line (see the module doc). */
export interface AccessFields {
  request_id: string | null;
  route: string | null;
  method: string;
  host: string | null;
  path: string;
  query?: string;
  status: number;
  bytes_in: number | null;
  bytes_out: number | null;
  duration_ms: number;
  client: string | null;
  upstream: string | null;
  upstream_ms: number | null;
  on_request_ms: number | null;
  on_request_verdict: string | null;
  on_response_ms: number | null;
  on_response_verdict: string | null;
}

/** `scheme://host[:port]` of a URL, a target (`host:port`) as it is, null for ''. */
function originOf(u: string): string | null {
  if (!u) return null;
  const at = u.indexOf('://');
  if (at < 0) return u;
  const end = u.indexOf('/', at + 3);
  return end < 0 ? u : u.slice(0, end);
}

/** ms to 3 decimals; null for -1 (the step did not happen) or a value a plane left unset. */
const ms = (v: number) => (!(v >= 0) ? null : Math.round(v * 1000) / 1000);

/**
 * The line's fields from what the data plane measured.
 *
 * @example
 * log.info(accessFields(facts, false), 'access');
 */
export function accessFields(a: AccessFacts, withQuery: boolean): AccessFields {
  const q = a.target.indexOf('?');
  const out: AccessFields = {
    request_id: a.requestId || null,
    route: a.route || null,
    method: a.method,
    host: a.host || null,
    path: q >= 0 ? a.target.slice(0, q) : a.target,
    status: a.status,
    bytes_in: a.bytesIn < 0 ? null : a.bytesIn,
    bytes_out: a.bytesOut < 0 ? null : a.bytesOut,
    duration_ms: ms(a.durationMs) ?? 0,
    client: a.client || null,
    upstream: originOf(a.upstream),
    upstream_ms: ms(a.upstreamMs),
    on_request_ms: ms(a.onRequestMs),
    on_request_verdict: a.onRequestVerdict || null,
    on_response_ms: ms(a.onResponseMs),
    on_response_verdict: a.onResponseVerdict || null,
  };
  if (withQuery) out.query = q >= 0 ? a.target.slice(q + 1) : '';
  return out;
}

/**
 * What an on_request verdict did, in one word: error (a failure verdict:
 * a plugin failed and its `on_error` denied), drop, fallback, allow, deny.
 *
 * @example
 * verdictName({ ...allow, ok: false, s: 401 }) // 'deny'
 */
export function verdictName(v: AuthorizeResult): string {
  return v.e ? 'error' : v.dr ? 'drop' : v.fb ? 'fallback' : v.ok ? 'allow' : 'deny';
}

/**
 * The facts of a Web request before it is served (the edge): its body's
 * size from Content-Length, unknown (-1) for a streamed one.
 */
export function accessFactsOf(req: Request, raw: RawRequest, client: ClientInfo): AccessFacts {
  const cl = req.headers.get('content-length');
  return {
    requestId: '',
    route: '',
    method: req.method,
    host: raw.hosts[0] ?? '',
    target: raw.target,
    status: 0,
    bytesIn: cl === null ? (req.body ? -1 : 0) : Number(cl) || 0,
    bytesOut: -1,
    durationMs: 0,
    client: client.ip,
    upstream: '',
    upstreamMs: -1,
    onRequestMs: -1,
    onRequestVerdict: '',
    onResponseMs: -1,
    onResponseVerdict: '',
  };
}

/**
 * `res` with its body counted: `sent(bytes)` is called once, when the body
 * has been sent or abandoned (at once for a response without a body).
 *
 * @example
 * return whenSent(res, (n) => log.info({ bytes_out: n }, 'sent'));
 */
export function whenSent(res: Response, sent: (bytes: number) => void): Response {
  if (!res.body) {
    sent(0);
    return res;
  }
  let n = 0;
  let reported = false;
  const end = () => {
    if (reported) return;
    reported = true;
    sent(n);
  };
  const counted = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctrl) {
        n += chunk.length;
        ctrl.enqueue(chunk);
      },
      flush: end,
      cancel: end,
    } as Transformer<Uint8Array, Uint8Array>),
  );
  return new Response(counted, { status: res.status, statusText: res.statusText, headers: res.headers });
}
