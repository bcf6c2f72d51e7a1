/**
 * @module connect
 * Connection-level (L4-like) decisions, shared by both kinds of session
 * the gateway relays without reading them as requests: WebSocket sessions
 * (after their upgrade request) and TLS pass-through (`pass`, before any
 * handshake). Here: which route a TLS connection's SNI name selects
 * (`connectionPlan`), whether its plugins admit it (`admitConnection`,
 * on_connect with prox's semantics: the first refusal closes), where a
 * pass route relays to (`passUpstream`), and the on_disconnect report.
 * Reading the ClientHello and moving the bytes is the data plane's.
 */

import type { Pick } from '../routing/balancer.ts';
import type { HookClient } from './pipeline.ts';
import { textAnswer, type Answer } from './pipeline.ts';
import { HOOK_BIT, type ConnInfo, type DisconnectInfo } from '../protocol/protocol.ts';
import { DENY_BODY, failureStatus } from '../protocol/verdict.ts';
import { compileDomain, type DomainMatch } from '../routing/routing.ts';
import type { GatewayState, RoutePlan } from '../state/state.ts';

/** What to do with a TLS connection, decided from its ClientHello's SNI name alone. */
export type ConnectionPlan =
  /** complete the handshake here and serve HTTP (the routes decide per request) */
  | { kind: 'terminate' }
  /** relay the raw connection (`pass`) */
  | { kind: 'pass'; plan: RoutePlan; hostname: string; md: string; mg: string };

interface L4Route {
  plan: RoutePlan;
  domain: ((host: string) => DomainMatch | null) | null;
}

/** Per state: the routes that can decide at L4 (domain only, no path or methods), in config order. */
const compiled = new WeakMap<GatewayState, L4Route[]>();

function l4Routes(state: GatewayState): L4Route[] {
  let list = compiled.get(state);
  if (list) return list;
  list = [];
  let passes = false;
  for (const route of state.config.routes) {
    const m = route.match ?? {};
    if ((m.path !== undefined && m.path.trim() !== '') || (m.methods !== undefined && m.methods.length > 0)) continue;
    const plan = state.plan(route.id);
    if (!plan) continue;
    // `drop` routes are judged at L4 too (node-runner/gateway/drop.ts, before the handshake).
    if (plan.action.action.type === 'pass' || plan.action.action.type === 'drop') passes = true;
    list.push({ plan, domain: m.domain !== undefined && m.domain.trim() !== '' ? compileDomain(m.domain) : null });
  }
  // Without a pass or drop route nothing is decided at L4: no ClientHello needs reading.
  if (!passes) list = [];
  compiled.set(state, list);
  return list;
}

/**
 * Whether any route decides at L4, so that a TLS listener must read the
 * ClientHello before the handshake. False: hand the connection to TLS at
 * once.
 */
export function decidesAtL4(state: GatewayState): boolean {
  return l4Routes(state).length > 0;
}

/**
 * What a TLS connection whose ClientHello names `sni` (null: none) gets.
 * The routes that match by domain alone are tried in config order, as
 * requests try every route: the first whose domain matches decides. A
 * pass route relays the connection; any other route (or none) means the
 * handshake completes here and each request is routed as usual. Routes
 * with a path or methods cannot be judged before a request and are
 * skipped. A connection without SNI is never passed.
 *
 * @example
 * connectionPlan(state, 'db.example.com') // { kind: 'pass', plan, hostname: 'db.example.com', md: '*.example.com', mg: 'db' }
 */
export function connectionPlan(state: GatewayState, sni: string | null): ConnectionPlan {
  const routes = l4Routes(state);
  if (!routes.length || sni === null) return { kind: 'terminate' };
  const hostname = sni.toLowerCase().replace(/\.$/, '');
  for (const r of routes) {
    let md = '';
    let mg = '';
    if (r.domain) {
      const d = r.domain(hostname);
      if (!d) continue;
      md = d.md;
      mg = d.mg;
    }
    if (r.plan.action.action.type !== 'pass') return { kind: 'terminate' };
    return { kind: 'pass', plan: r.plan, hostname, md, mg };
  }
  return { kind: 'terminate' };
}

/**
 * Where a pass route relays: its `upstream`, or a target of its balancer
 * for `{target}` (release the pick once the session ends). `undefined`
 * when the balancer has no target.
 */
export function passUpstream(plan: RoutePlan): { target: string; pick: Pick | null } | undefined {
  const a = plan.action.action;
  if (a.type !== 'pass') return undefined;
  if (!a.upstream.includes('{target}')) return { target: a.upstream, pick: null };
  const pick = plan.balancer?.pick(undefined, plan.unknownGroup);
  return pick ? { target: pick.target, pick } : undefined;
}

/**
 * on_connect for a session on `routeId`, when its plugins declared it:
 * null when the session may go on, else the answer refusing it (403, or
 * the on_error status when a plugin failed). A WebSocket session sends
 * that answer; a pass session, which has no HTTP to answer in, closes.
 * Never throws (a HookClient never does).
 *
 * @example
 * const refused = await admitConnection(hooks, route.id, { r: route.id, d: host, a: client.remoteAddr, md, mg });
 * if (refused) return close();
 */
export async function admitConnection(hooks: HookClient, routeId: string, info: ConnInfo): Promise<Answer | null> {
  if (!(hooks.hooksOf(routeId) & HOOK_BIT.on_connect)) return null;
  const conn = await hooks.onConnect(routeId, info);
  if (conn.ok) return null;
  return conn.e ? textAnswer(failureStatus(conn.s), conn.b || DENY_BODY) : textAnswer(403, 'forbidden\n');
}

/**
 * Reports the end of an admitted session (on_disconnect, fire and
 * forget): bytes from the client (`rx`) and to it (`tx`), and its length.
 */
export function reportDisconnect(hooks: HookClient, routeId: string, info: Omit<DisconnectInfo, 'r'>): void {
  hooks.onDisconnect(routeId, { r: routeId, ...info });
}
