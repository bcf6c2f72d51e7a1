/**
 * @module gateway/pass
 * TLS pass-through (`action: { type: "pass" }`): a connection whose
 * ClientHello named a pass route's domain is relayed to the route's
 * upstream as raw bytes, ClientHello included, so the upstream does the
 * handshake with the client (hookgate holds no key for it). The route's
 * on_connect plugins are asked first (a refusal, or a failed plugin with
 * on_error deny, closes the connection: there is no HTTP to answer in);
 * on_disconnect reports bytes and duration once the relayed session ends.
 * The decision is the core's (`src/core/connect.ts`), the relay the same
 * as WebSocket sessions' (`relay.ts`).
 */

import { connect, type Socket } from 'node:net';
import { admitConnection, passUpstream, reportDisconnect, type ConnectionPlan } from '../../src/core/gateway/connect.ts';
import { LogThrottle, type Logger } from '../../src/core/log.ts';
import type { HookClient } from '../../src/core/gateway/pipeline.ts';
import { clientOf } from './ws-proxy.ts';
import { relay, type Sessions } from './relay.ts';

export interface PassDeps {
  hooks: HookClient;
  logger: Logger;
  /** where the relayed sessions are kept (the listener ends them at stop) */
  sessions: Sessions;
  /** one warning a second per route at most */
  throttle: LogThrottle;
}

/** `host:port` (or `[v6]:port`) into its parts. */
function hostPort(target: string): { host: string; port: number } {
  const i = target.lastIndexOf(':');
  return { host: target.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(target.slice(i + 1)) };
}

/**
 * Relays one TLS connection as `plan` says. `hello` is every byte read so
 * far (the ClientHello), sent upstream first.
 *
 * Contract: never throws or rejects; the client socket is always either
 * relayed (and then ended with the session) or destroyed. on_disconnect
 * is reported exactly once for a session that reached the upstream, and
 * never for one that did not.
 */
export async function passConnection(socket: Socket, hello: Buffer, plan: Extract<ConnectionPlan, { kind: 'pass' }>, deps: PassDeps): Promise<void> {
  const routeId = plan.plan.route.id;
  const client = clientOf(socket, '');
  const warn = (fields: Record<string, unknown>, msg: string) => {
    const held = deps.throttle.admit(`pass ${routeId} ${msg}`);
    if (held >= 0) deps.logger.warn({ route: routeId, client: client.remoteAddr, ...fields, suppressed: held }, msg);
  };
  try {
    const refused = await admitConnection(deps.hooks, routeId, { r: routeId, d: plan.hostname, a: client.remoteAddr, md: plan.md, mg: plan.mg });
    if (refused || socket.destroyed) return void socket.destroy();
    const up = passUpstream(plan.plan);
    if (!up) {
      warn({}, 'pass: no upstream target available; connection closed');
      return void socket.destroy();
    }
    const a = plan.plan.action.action;
    const timeoutMs = a.type === 'pass' ? Number(a.timeout) : 10_000;
    const { host, port } = hostPort(up.target);
    const upstream = connect({ host, port });
    upstream.setNoDelay(true);
    const timer = setTimeout(() => upstream.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
    const gone = () => upstream.destroy();
    socket.once('close', gone);
    upstream.once('error', (err) => {
      if (upstream.connecting || !upstream.remoteAddress) {
        clearTimeout(timer);
        up.pick?.release();
        warn({ target: up.target, err: err.message }, 'pass: upstream unreachable; connection closed');
        socket.destroy();
      }
    });
    upstream.once('connect', () => {
      clearTimeout(timer);
      socket.off('close', gone);
      if (socket.destroyed) {
        up.pick?.release();
        return void upstream.destroy();
      }
      let reported!: () => void;
      deps.sessions.add(socket, new Promise<void>((r) => (reported = r)));
      relay(socket, upstream, { clientHead: hello }, (end) => {
        up.pick?.release();
        reportDisconnect(deps.hooks, routeId, { tg: up.target, a: client.remoteAddr, rx: end.rx, tx: end.tx, ms: end.ms });
        reported();
      });
    });
  } catch (err) {
    deps.logger.error({ route: routeId, err: (err as Error).message }, 'pass failed');
    socket.destroy();
  }
}
