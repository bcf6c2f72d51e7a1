/**
 * @module http-plane
 * The self-hosted gateway's data plane: the core's pipeline
 * (`src/core/pipeline.ts`) carried out on `node:http` and undici directly.
 * The request is read from `IncomingMessage` as it came (raw target, raw
 * header array), the upstream is called through undici's dispatch layer
 * (`upstream.ts`), and the answer is written to `ServerResponse` chunk by
 * chunk as undici hands it over, with its backpressure. No Web Request,
 * Response, Headers or ReadableStream is built on this path; every decision
 * (routing, verdicts, headers, fallbacks, on_response) is the pipeline's.
 *
 * HTTP/2 requests (node:http2's compatibility objects) are served by the
 * same code: `gateway/h2.ts` turns their head into HTTP/1.1 terms and
 * writes heads and drops the HTTP/2 way.
 *
 * WebSocket upgrades are `ws-proxy.ts`'s; slow-client limits are
 * `client-limits.ts`'s; this module only serves one request.
 */

import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { Readable, Transform, type Writable } from 'node:stream';
import { hostHeaders } from '../../src/core/gateway/gateway.ts';
import type { Logger } from '../../src/core/log.ts';
import { verdictName } from '../../src/core/gateway/access-log.ts';
import { MAX_BODY_COPY, type AuthorizeResult, type RequestInfo } from '../../src/core/protocol/protocol.ts';
import { textAnswer, type Answer, type Facts, type HeaderList, type Pipeline, type ProxyStep } from '../../src/core/gateway/pipeline.ts';
import type { ActionPlan } from '../../src/core/state/state.ts';
import type { TokenBucket } from '../../src/core/gateway/throttle.ts';
import type { TrafficRecorder } from '../admin/traffic-metrics.ts';
import type { Upstream, UpstreamExchange, UpstreamSink } from './upstream.ts';
import { clientOf } from './ws-proxy.ts';
import { dropRequest } from './drop.ts';
import { serveFiles } from './serve.ts';
import { requestHead, writeHead as writeHeadOf } from './h2.ts';

export interface HttpPlaneDeps {
  pipeline: Pipeline;
  upstream: Upstream;
  logger: Logger;
  /** where upstream exchange times go (default: nowhere) */
  traffic?: TrafficRecorder;
}

/**
 * The response of one request, carrying what the data plane learned while
 * serving it (route, request id, upstream target and times, hook times and
 * verdicts), for the metrics and the access log the listener writes when
 * it closes. A node:http server makes these (`createServer({ ServerResponse:
 * PlaneResponse })`), so nothing else is allocated or looked up per request.
 * Times are ms; -1 (and '') when the step did not happen.
 */
export class PlaneResponse extends ServerResponse {
  requestId = '';
  route = '';
  /** the picked target, else the upstream URL */
  target = '';
  upstreamMs = -1;
  onRequestMs = -1;
  onRequestVerdict = '';
  onResponseMs = -1;
  onResponseVerdict = '';
  /** the listener's: when the request came (performance.now), its connection (`req.socket` is gone by the close) and its bytes written by then */
  startedAt = 0;
  conn: Socket | null = null;
  written0 = 0;
}

/** A request handler for a node:http server. Never throws; every request gets an answer or a closed connection. */
export type HttpPlane = (req: IncomingMessage, res: PlaneResponse) => void;

/**
 * Writes a pipeline answer, with its Content-Length (none for 204 and 304)
 * and, once the request was routed, its X-Request-Id.
 *
 * @example
 * sendAnswer(res, textAnswer(404, 'no route matches this request\n'));
 */
export function sendAnswer(res: ServerResponse, a: Answer): void {
  // Already answered (a stalled body's 408): nothing more to write.
  if (res.writableEnded) return;
  if (res.headersSent) return void res.destroy();
  const headers = a.headers;
  const rid = (res as PlaneResponse).requestId;
  if (rid) headers.push('x-request-id', rid);
  const body = a.body;
  if (a.status !== 204 && a.status !== 304) {
    const n = body === null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    headers.push('content-length', String(n));
  }
  writeHeadOf(res, a.status, headers);
  if (body === null) res.end();
  else res.end(body);
}

/** A Transform that passes bytes through `bucket`'s pace (the core's token bucket). */
export function throttled(bucket: TokenBucket): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      let off = 0;
      const next = (): void => {
        while (off < chunk.length) {
          const piece = chunk.subarray(off, off + bucket.burst);
          off += piece.length;
          const wait = bucket.take(piece.length);
          this.push(piece);
          if (wait > 0) return void setTimeout(next, wait);
        }
        done();
      };
      next();
    },
  });
}

/**
 * Reads up to `limit` bytes of a request body for a plugin, and returns
 * them with a stream of the whole body (those bytes first): only the copy
 * is buffered. Rejects when the client goes away first.
 */
function peekBody(req: IncomingMessage, limit: number): Promise<[Uint8Array, Readable]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const finish = (ended: boolean) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      const all = Buffer.concat(chunks);
      const copy = all.subarray(0, Math.min(all.length, limit));
      async function* replay() {
        if (all.length) yield all;
        if (!ended) for await (const c of req) yield c as Buffer;
      }
      resolve([copy, Readable.from(replay(), { objectMode: false })]);
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= limit) {
        req.pause();
        finish(false);
      }
    };
    const onEnd = () => finish(true);
    const onError = (err: Error) => reject(err);
    const onClose = () => {
      if (!req.complete) reject(new Error('the client went away while sending its body'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Creates the data plane's request handler.
 *
 * @example
 * const plane = createHttpPlane({ pipeline, upstream: createUpstream(), logger });
 * http.createServer(plane).listen(8080, '127.0.0.1');
 */
export function createHttpPlane(deps: HttpPlaneDeps): HttpPlane {
  const p = deps.pipeline;
  const log = deps.logger;
  const traffic = deps.traffic;

  function internalError(res: ServerResponse, err: unknown, url: string | undefined): void {
    log.error({ err: (err as Error).message, stack: (err as Error).stack, url }, 'request failed');
    if (!res.headersSent) sendAnswer(res, textAnswer(500, 'internal error\n'));
    else res.destroy();
  }

  /** Runs an action: its answer, its fallback, or the upstream exchange. */
  function run(req: IncomingMessage, res: PlaneResponse, f: Facts, action: ActionPlan, verdict: AuthorizeResult | null, info: RequestInfo | null, body: Readable | null, isFallback: boolean): void {
    const s = p.step(f, action, verdict, isFallback);
    if (s.kind === 'answer') return sendAnswer(res, s);
    if (s.kind === 'fallback') return run(req, res, f, s.action, verdict, info, body, true);
    if (s.kind === 'drop') return dropRequest(req);
    if (s.kind === 'serve') return serveFiles(res, f, s, info, { pipeline: p, logger: log, send: sendAnswer, throttle: throttled });
    proxy(req, res, f, s, verdict, info, body, isFallback);
  }

  function proxy(req: IncomingMessage, res: PlaneResponse, f: Facts, s: ProxyStep, verdict: AuthorizeResult | null, info: RequestInfo | null, body: Readable | null, isFallback: boolean): void {
    let upBody = body;
    if (upBody && s.upload) {
      const t = throttled(s.upload);
      upBody.on('error', (err) => t.destroy(err));
      upBody = upBody.pipe(t);
    }
    let exchange: UpstreamExchange | null = null;
    let out: Writable = res;
    res.target = s.target || s.url;
    let sentAt = 0;
    const upstreamAnswered = () => {
      const ms = performance.now() - sentAt;
      res.upstreamMs = ms;
      traffic?.upstream(f.plan.route.id, ms / 1000);
    };
    let resume: (() => void) | null = null;
    let picked = s.pick !== null;
    /** the pipeline answered instead of the upstream (on_response failed): the exchange's end is no news */
    let answered = false;
    const release = () => {
      if (picked) {
        picked = false;
        s.pick!.release();
      }
    };
    const onClose = () => {
      if (!res.writableFinished) exchange?.abort(new Error('the client went away'));
      release();
    };
    res.once('close', onClose);

    const writeHead = (status: number, headers: HeaderList): void => {
      headers.push('x-request-id', f.requestId);
      writeHeadOf(res, status, headers);
      if (p.bodiless(f, status)) return;
      if (s.download) {
        const t = throttled(s.download);
        t.pipe(res);
        out = t;
      }
    };

    const sink: UpstreamSink = {
      head(status, upstreamHeaders, resumeUndici) {
        upstreamAnswered();
        resume = resumeUndici;
        if (res.destroyed || res.headersSent) return true;
        const r = p.respond(f, info, s.target, status, upstreamHeaders);
        if (!s.holdPick) release();
        if (!(r instanceof Promise)) {
          if (r.kind === 'answer') {
            answered = true;
            exchange?.abort(new Error('answered instead'));
            sendAnswer(res, r);
            return true;
          }
          writeHead(r.status, r.headers);
          return true;
        }
        // on_response decides the head: hold the body until it has.
        const asked = performance.now();
        r.then(
          (r) => {
            res.onResponseMs = performance.now() - asked;
            res.onResponseVerdict = r.kind === 'answer' ? 'error' : 'ok';
            if (res.destroyed || res.headersSent) return;
            if (r.kind === 'answer') {
              answered = true;
              exchange?.abort(new Error('answered instead'));
              return sendAnswer(res, r);
            }
            writeHead(r.status, r.headers);
            resumeUndici();
          },
          (err) => {
            answered = true;
            exchange?.abort(err as Error);
            internalError(res, err, req.url);
          },
        );
        return false;
      },
      data(chunk) {
        if (answered || res.destroyed || res.writableEnded) return true;
        if (p.bodiless(f, res.statusCode)) return true;
        if (out.write(chunk)) return true;
        out.once('drain', () => resume?.());
        return false;
      },
      end() {
        if (!answered && !res.writableEnded && !res.destroyed) out.end();
      },
      error(err, afterHead) {
        if (answered) return;
        if (!afterHead) upstreamAnswered();
        if (afterHead) {
          // The answer is under way: all that is left is to cut it short.
          if (!res.writableEnded) res.destroy();
          return;
        }
        const next = p.upstreamFailed(f, s, err, isFallback, res.destroyed || req.destroyed);
        picked = false;
        if (next === null || res.destroyed) return;
        if (next.kind === 'fallback') return run(req, res, f, next.action, verdict, info, null, true);
        if (next.kind === 'answer') sendAnswer(res, next);
      },
    };
    sentAt = performance.now();
    exchange = deps.upstream.exchange({ url: s.url, method: f.method, headers: s.headers, body: upBody, timeoutMs: s.timeoutMs, limits: s.limits, h2: s.h2 }, sink);
  }

  async function authorized(req: IncomingMessage, res: PlaneResponse, f: Facts): Promise<void> {
    let body: Readable | null = f.method === 'GET' || f.method === 'HEAD' ? null : req;
    let bd: Uint8Array | null = null;
    if (body && p.wantsBody(f)) [bd, body] = await peekBody(req, MAX_BODY_COPY);
    // p.authorize's steps, timed for the access log.
    const info = p.requestInfo(f, bd, '');
    const asked = performance.now();
    const verdict = await p.hooks.onRequest(f.plan.route.id, info);
    res.onRequestMs = performance.now() - asked;
    res.onRequestVerdict = verdictName(verdict);
    const a = p.verdict(f, verdict, info);
    if (res.destroyed) return;
    if (a.kind === 'drop') return dropRequest(req);
    if (a.kind === 'answer') return sendAnswer(res, a);
    run(req, res, f, a.action, a.verdict, a.info, body, a.isFallback);
  }

  return (req, res) => {
    try {
      const { method, target, raw } = requestHead(req);
      const client = clientOf(req.socket, req.httpVersion === '1.1' ? 'HTTP/1.1' : `HTTP/${req.httpVersion}`);
      const f = p.route(method, { target, hosts: hostHeaders(raw) }, raw, client);
      if (f.kind === 'answer') return sendAnswer(res, f);
      res.requestId = f.requestId;
      res.route = f.plan.route.id;
      if (p.callsOnRequest(f)) return void authorized(req, res, f).catch((err) => internalError(res, err, req.url));
      // GET and HEAD carry no body to the upstream.
      run(req, res, f, f.plan.action, null, null, f.method === 'GET' || f.method === 'HEAD' ? null : req, false);
    } catch (err) {
      internalError(res, err, req.url);
    }
  };
}
