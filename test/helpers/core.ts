/**
 * @module test/helpers/core
 * The core's request pipeline set up in this process, for test/core: a
 * config parsed by `parseConfig`, its `GatewayState`, a `MemoryHooks` hook
 * client over in-process plugins, and the `Pipeline` over both; plus
 * `plan`, which runs a request through the steps a data plane runs before
 * it calls an upstream (route, authorize, step) and gives each result.
 */

import { parseConfig, type Config } from '../../src/core/config/config.ts';
import { silentLogger } from '../../src/core/log.ts';
import { Pipeline, type Answer, type Authorized, type ClientInfo, type Facts, type HeaderList, type Step } from '../../src/core/gateway/pipeline.ts';
import { GatewayState } from '../../src/core/state/state.ts';
import type { Clock } from '../../src/core/clock.ts';
import { MemoryHooks, type MemoryPlugin } from './memory-hooks.ts';

/** The client of every request unless a test says otherwise. */
export const CLIENT: ClientInfo = { remoteAddr: '192.0.2.10:50000', ip: '192.0.2.10', protocol: 'HTTP/1.1', tls: false };

/** A request as `plan` takes it: a raw target (origin or absolute form) and the client's headers. */
export interface PlanRequest {
  method?: string;
  /** as sent on the request line, e.g. `/v1/x?a=1` */
  target: string;
  /** Host header; default `app.example.com` */
  host?: string;
  /** more client headers, `[name, value, ...]` */
  headers?: HeaderList;
  /** the body copy for `with_body` bindings */
  body?: Uint8Array;
  client?: ClientInfo;
}

/** How far a request got: the routing answer, or the facts, what authorize decided and (for an action) its step. */
export type Planned =
  | { at: 'route'; answer: Answer }
  | { at: 'authorize'; facts: Facts; authorized: Exclude<Authorized, { kind: 'action' }> }
  | { at: 'step'; facts: Facts; authorized: Extract<Authorized, { kind: 'action' }>; step: Step };

export interface CoreGateway {
  config: Config;
  state: GatewayState;
  hooks: MemoryHooks;
  pipeline: Pipeline;
  /** route, authorize and step of one request; a fallback step is followed, as the data planes do */
  plan(req: PlanRequest): Promise<Planned>;
}

/**
 * The pipeline of `config` (raw, as a config file holds it) with in-process
 * `plugins`.
 *
 * @example
 * const gw = coreGateway({ routes: [{ id: 'api', plugins: ['auth'], action: { type: 'static', status: 200, body: 'hi' } }], plugins: { auth: { path: '/bin/true' } } },
 *   { auth: { on_request: () => deny(401) } });
 * const p = await gw.plan({ target: '/' }); // { at: 'authorize', authorized: { kind: 'answer', status: 401, ... } }
 */
export function coreGateway(config: unknown, plugins: Record<string, MemoryPlugin> = {}, opts: { clock?: Clock } = {}): CoreGateway {
  const parsed = parseConfig(config);
  const state = new GatewayState(parsed);
  const hooks = new MemoryHooks({ config: parsed, plugins, clock: opts.clock });
  const pipeline = new Pipeline({ state: () => state, hooks, logger: silentLogger });
  return {
    config: parsed,
    state,
    hooks,
    pipeline,
    async plan(req) {
      const method = req.method ?? 'GET';
      const host = req.host ?? 'app.example.com';
      const headers = ['Host', host, ...(req.headers ?? [])];
      const f = pipeline.route(method, { target: req.target, hosts: [host] }, headers, req.client ?? CLIENT);
      if (f.kind === 'answer') return { at: 'route', answer: f };
      const a = await pipeline.authorize(f, pipeline.wantsBody(f) ? (req.body ?? new Uint8Array()) : null);
      if (a.kind !== 'action') return { at: 'authorize', facts: f, authorized: a };
      let step = pipeline.step(f, a.action, a.verdict, a.isFallback);
      if (step.kind === 'fallback') step = pipeline.step(f, step.action, a.verdict, true);
      return { at: 'step', facts: f, authorized: a, step };
    },
  };
}

function describePlan(p: Planned): string {
  if (p.at === 'route') return `a routing answer (${p.answer.status})`;
  if (p.at === 'authorize') return p.authorized.kind === 'answer' ? `an authorize answer (${p.authorized.status})` : p.authorized.kind;
  return `a ${p.step.kind} step`;
}

/** The answer of a plan that ended in one (routing, authorize or an answering action), else a failed assertion. */
export function answerOf(p: Planned): Answer {
  if (p.at === 'route') return p.answer;
  if (p.at === 'authorize' && p.authorized.kind === 'answer') return p.authorized;
  if (p.at === 'step' && p.step.kind === 'answer') return p.step;
  throw new Error(`expected an answer, got ${describePlan(p)}`);
}

/** The proxy step of a plan, else a failed assertion. */
export function proxyOf(p: Planned): Extract<Step, { kind: 'proxy' }> {
  if (p.at === 'step' && p.step.kind === 'proxy') return p.step;
  throw new Error(`expected a proxy step, got ${describePlan(p)}`);
}

/** The string body of an answer. */
export function bodyText(a: Answer): string {
  return a.body === null ? '' : typeof a.body === 'string' ? a.body : new TextDecoder().decode(a.body);
}
