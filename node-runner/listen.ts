/**
 * @module listen
 * Where a runner listens (the gateway's listeners, admin, the hook API),
 * as a config names it: fixed for the life of the process (a reload that
 * changes them is logged, not applied), and how many connections each has
 * open.
 */

import type { Server as NetServer, Socket } from 'node:net';
import type { Config, GatewaySettings } from '../src/core/config/config.ts';
import { gatewayListeners, type ListenerSettings } from '../src/core/config/config-listeners.ts';

/** Where a runner listens; fixed for the life of the process. */
export interface Listeners {
  /** the first gateway listener's address */
  gateway: string;
  /** every gateway listener (default: `gateway` alone, plain), and whether they came as the `gateway.listen` shorthand */
  listeners?: ListenerSettings[];
  shorthand?: boolean;
  admin: string;
  /** the hook API for edge workers, when served */
  runner?: string;
  /** `admin.keys`: bearer keys for the admin API and /metrics (local, fixed at start) */
  adminKeys?: Config['admin']['keys'];
  /** the gateway's client limits (`gateway.*` but `listen`; default: the schema's defaults) */
  gatewayLimits?: Omit<GatewaySettings, 'listen'>;
}

/** The listeners a (file) config names. */
export function listenersOf(config: Config): Listeners {
  const { listen: _listen, tls: _tls, listeners: _listeners, ...gatewayLimits } = config.gateway;
  const listeners = gatewayListeners(config.gateway);
  return { gateway: listeners[0].listen, listeners, shorthand: !config.gateway.listeners?.length, admin: config.admin.listen, adminKeys: config.admin.keys, runner: config.runner.listen, gatewayLimits };
}

/** Splits "host:port" (or "[v6]:port"). */
export function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(i + 1)) };
}


/**
 * Counts the connections open on `server` from now on; the returned
 * function reads the count (`hookgate_open_connections`).
 *
 * @example
 * const open = countConnections(server); ...; open() // 2
 */
export function countConnections(server: NetServer): () => number {
  let open = 0;
  server.on('connection', (socket: Socket) => {
    open++;
    socket.once('close', () => open--);
  });
  return () => open;
}
