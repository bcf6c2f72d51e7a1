/**
 * @module ws-proxy
 * WebSocket sessions on the self-hosted gateway (the server's
 * `shouldUpgradeCallback` lets only `isWebSocketUpgrade` requests here;
 * other Upgrades are plain requests): the core decides (route, on_request,
 * on_connect, target); this module does the transport: asks the upstream
 * to upgrade, relays its 101, pipes bytes both ways, counts them, and
 * reports on_disconnect with bytes and duration when either side closes.
 * An upstream that answers anything but 101 is answered through the core's
 * response phase (hop-by-hop stripping, on_response).
 */

import { request as httpRequest, STATUS_CODES, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { hostHeaders, type ClientInfo, type Gateway, type HookClient } from '../../src/core/gateway/gateway.ts';
import { reportDisconnect } from '../../src/core/gateway/connect.ts';
import type { Logger } from '../../src/core/log.ts';
import { relay, Sessions } from './relay.ts';

/** Who the client of a Node socket is, in the forms the core wants. */
export function clientOf(socket: Socket, protocol = 'HTTP/1.1'): ClientInfo {
  const ip = socket.remoteAddress ?? '';
  const port = socket.remotePort ?? 0;
  return { ip, remoteAddr: ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`, protocol, tls: 'encrypted' in socket };
}

/**
 * A header-only Web Request for an incoming upgrade request. Its URL is a
 * placeholder: the core routes by the raw target and Host headers, passed
 * beside it, so nothing is parsed (and normalised differently) here.
 */
function toRequest(req: IncomingMessage): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
  return new Request('http://upgrade.invalid/', { method: req.method, headers });
}

async function writeResponse(socket: Duplex, res: Response): Promise<void> {
  const body = res.body ? new Uint8Array(await res.arrayBuffer()) : new Uint8Array(0);
  let head = `HTTP/1.1 ${res.status} ${STATUS_CODES[res.status] ?? ''}\r\n`;
  res.headers.forEach((value, name) => {
    if (name !== 'content-length' && name !== 'connection') head += `${name}: ${value}\r\n`;
  });
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]));
}

export interface UpgradeDeps {
  gateway: Gateway<never>;
  hooks: HookClient;
  logger: Logger;
  /** time allowed for the upstream's answer to the upgrade request */
  timeoutMs?: number;
}

/**
 * Returns a handler for a Node HTTP server's 'upgrade' event.
 *
 * Contract: never throws; every path ends the client socket or hands it to
 * a session that ends it. on_disconnect is reported exactly once per
 * session that reached the upstream.
 */
export type UpgradeHandler = ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) & {
  /** Ends every open session; resolves once each has reported on_disconnect. */
  closeAll(): Promise<void>;
};

export function upgradeHandler(deps: UpgradeDeps): UpgradeHandler {
  const log = deps.logger;
  /** open sessions, each with a promise settled once it has reported on_disconnect */
  const sessions = new Sessions();

  const handler = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    const client = clientOf(socket as Socket, `HTTP/${req.httpVersion}`);
    void (async () => {
      const plan = await deps.gateway.upgrade(toRequest(req), client, { target: req.url ?? '/', hosts: hostHeaders(req.rawHeaders) });
      if (plan.kind === 'drop') return void socket.destroy();
      if (plan.kind === 'respond') return writeResponse(socket, plan.response);
      const started = Date.now();
      const url = new URL(plan.url);
      const headers: Record<string, string> = {};
      plan.headers.forEach((v, k) => (headers[k] = v));
      const up = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: 'GET', headers, agent: false, timeout: deps.timeoutMs ?? 30_000 });
      let done = false;
      let reported!: () => void;
      const ended = new Promise<void>((r) => (reported = r));
      const finish = (rx: number, tx: number) => {
        if (done) return;
        done = true;
        plan.release();
        reportDisconnect(deps.hooks, plan.routeId, { tg: plan.target, a: client.remoteAddr, rx, tx, ms: Date.now() - started });
        reported();
      };
      up.on('timeout', () => up.destroy(new Error('upstream did not answer the upgrade in time')));
      up.on('error', (err) => {
        if (done) return;
        log.warn({ route: plan.routeId, target: plan.target, err: err.message }, 'upstream upgrade failed');
        plan.release();
        done = true;
        void writeResponse(socket, new Response('upstream unreachable\n', { status: 502 }));
      });
      up.on('response', (res) => {
        // The upstream did not upgrade: its answer goes through the response
        // phase (hop-by-hop stripping, on_response) like any response.
        done = true;
        plan.release();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const h = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
          const status = res.statusCode && res.statusCode >= 200 ? res.statusCode : 502;
          const answer = new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers: h });
          plan
            .refused(answer)
            .then((out) => writeResponse(socket, out))
            .catch((err) => {
              log.error({ route: plan.routeId, err: (err as Error).message }, 'answering a refused upgrade failed');
              socket.destroy();
            });
        });
      });
      up.on('upgrade', (res, upSocket, upHead) => {
        let head101 = `HTTP/1.1 101 Switching Protocols\r\n`;
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) head101 += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
        socket.write(head101 + '\r\n');
        sessions.add(socket, ended);
        relay(socket, upSocket, { clientHead: head, upstreamHead: upHead, startedAt: started }, (end) => finish(end.rx, end.tx));
      });
      up.end();
    })().catch((err) => {
      log.error({ err: (err as Error).message }, 'upgrade failed');
      socket.destroy();
    });
  };
  return Object.assign(handler, {
    /** Ends every open session (at shutdown). */
    closeAll: () => sessions.closeAll(),
  });
}
