/**
 * @module gateway/tls-listener
 * One TLS listener of the self-hosted gateway. It accepts TCP itself, and
 * when the routing state has pass or drop routes, reads the ClientHello first
 * (`client-hello.ts`, bounded, with the header timeout as its deadline)
 * and asks what the connection gets: closed unanswered (`drop.ts`, a
 * name whose every request would be dropped), relayed as it is
 * (`connectionPlan`, `pass.ts`), or handed, with the bytes read put back, to the
 * TLS server, which completes the handshake with the certificate the SNI
 * name picks (`cert-store.ts`) and gives the decrypted connection to the
 * HTTP/2 server when ALPN chose h2, else to an HTTP/1.1 server (both
 * serve the same data plane; see `gateway-server.ts`). A malformed,
 * truncated, oversize or late ClientHello is closed, never answered.
 *
 * Certificates are swapped without dropping connections: each handshake
 * takes the store's current context.
 */

import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { connectionPlan, decidesAtL4 } from '../../src/core/gateway/connect.ts';
import { LogThrottle, type Logger } from '../../src/core/log.ts';
import type { HookClient } from '../../src/core/gateway/pipeline.ts';
import type { GatewayState } from '../../src/core/state/state.ts';
import type { ConnectionLimit } from './client-limits.ts';
import type { CertStore } from './cert-store.ts';
import { readClientHello } from './client-hello.ts';
import { dropConnection, dropsBeforeHandshake } from './drop.ts';
import { passConnection } from './pass.ts';
import { Sessions } from './relay.ts';

export interface TlsListenerOptions {
  store: CertStore;
  state: () => GatewayState | null;
  hooks: HookClient;
  logger: Logger;
  /** gets every connection that negotiated HTTP/1.1 (or no ALPN) */
  http1: { emit(event: 'connection', socket: TLSSocket): unknown };
  /** gets every connection that negotiated h2 */
  h2: { emit(event: 'connection', socket: TLSSocket): unknown };
  /** deadline for the ClientHello and for the handshake (ms; 0: the TLS default of 120 s) */
  handshakeTimeoutMs: number;
  /** `max_connections_per_client`, counted on the TCP connection */
  perClient: ConnectionLimit | null;
  /** session ticket keys shared by the gateway workers (48 bytes), so a resumed session may land on any of them */
  ticketKeys?: Buffer;
}

/**
 * A TLS listener's accept path.
 *
 * Contract: `server` is a net.Server the owner listens with and closes.
 * `closeSessions()` ends the pass sessions (each reports on_disconnect)
 * and resolves when they have; the HTTP connections belong to the HTTP
 * servers. `close()` stops watching for certificate swaps.
 */
export class TlsListener {
  readonly server: NetServer;
  readonly tls: TlsServer;
  #opts: TlsListenerOptions;
  #sessions = new Sessions();
  #throttle = new LogThrottle();
  #unsubscribe: () => void;

  constructor(opts: TlsListenerOptions) {
    this.#opts = opts;
    const store = opts.store;
    this.tls = createTlsServer(
      {
        ...store.defaultOptions(),
        SNICallback: store.sniCallback,
        ALPNProtocols: ['h2', 'http/1.1'],
        handshakeTimeout: opts.handshakeTimeoutMs || 120_000,
        ticketKeys: opts.ticketKeys ?? randomBytes(48),
      },
      (socket) => (socket.alpnProtocol === 'h2' ? opts.h2 : opts.http1).emit('connection', socket),
    );
    this.tls.on('tlsClientError', (err, socket) => {
      const held = this.#throttle.admit('handshake');
      if (held >= 0) opts.logger.debug({ client: socket.remoteAddress, err: err.message, suppressed: held }, 'TLS handshake failed');
      socket.destroy();
    });
    // Clients without SNI get the default certificate, which a reload may change too.
    this.#unsubscribe = store.onChange(() => this.tls.setSecureContext(store.defaultOptions()));
    this.server = createNetServer((socket) => this.#accept(socket));
  }

  /** Pass sessions open now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  closeSessions(): Promise<void> {
    return this.#sessions.closeAll();
  }

  close(): void {
    this.#unsubscribe();
  }

  #accept(socket: Socket): void {
    socket.on('error', () => {});
    const o = this.#opts;
    if (o.perClient && !o.perClient.admit(socket)) {
      const held = this.#throttle.admit('refused');
      if (held >= 0) o.logger.warn({ client: socket.remoteAddress, limit: o.perClient.max, suppressed: held }, 'connection refused: this client already has max_connections_per_client open');
      return void socket.destroy();
    }
    const state = o.state();
    if (!state || !decidesAtL4(state)) return void this.tls.emit('connection', socket);
    void readClientHello(socket, o.handshakeTimeoutMs).then(({ parse, bytes }) => {
      if (parse.kind !== 'hello') {
        if (parse.kind !== 'closed') {
          const held = this.#throttle.admit(`hello ${parse.kind}`);
          if (held >= 0) o.logger.info({ client: socket.remoteAddress, why: parse.kind === 'bad' ? parse.reason : 'no ClientHello within the header timeout', suppressed: held }, 'TLS connection closed before the handshake');
        }
        return void socket.destroy();
      }
      // The state may have changed while the hello came in: decide by the current one.
      const now = o.state() ?? state;
      if (dropsBeforeHandshake(now, parse.sni ?? '')) return dropConnection(socket);
      const plan = connectionPlan(now, parse.sni);
      if (plan.kind === 'pass') return void passConnection(socket, bytes, plan, { hooks: o.hooks, logger: o.logger, sessions: this.#sessions, throttle: this.#throttle });
      if (bytes.length) socket.unshift(bytes);
      this.tls.emit('connection', socket);
    });
  }
}
