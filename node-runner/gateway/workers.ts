/**
 * @module workers
 * `gateway.workers`: the runner's side of its gateway worker processes
 * (`gateway-worker.ts`). The runner stays the one supervisor: it owns the
 * config, the plugins (through the keeper) and the pushed targets, and
 * sends every change to every worker over IPC; each worker serves the
 * gateway on the shared port (SO_REUSEPORT, Linux) with its own upstream
 * connections and its own pools to the plugins' sockets.
 *
 * A worker that dies is started again (with backoff) while the others keep
 * serving; `stop` drains every worker. Per worker, not shared: leastconn
 * in-flight counts, speed-limit buckets, upstream connection slots
 * (`max_connections` holds per worker) and log throttles.
 */

import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { ListenerSettings } from '../../src/core/config/config-listeners.ts';
import type { BoundListener } from './gateway-server.ts';
import type { GatewaySettings } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';
import type { FromWorker, ToWorker } from './gateway-worker.ts';
import { backoffDelay } from '../../src/core/backoff.ts';

/**
 * The number of gateway processes `gateway.workers` asks for: "auto" is
 * one per available core.
 *
 * @example
 * workerCount('auto') // os.availableParallelism()
 * workerCount(2)      // 2
 */
export function workerCount(workers: number | 'auto' | undefined): number {
  if (workers === 'auto') return availableParallelism();
  return workers ?? 1;
}

/**
 * A worker's share of a plugin's `pool_size`: the whole size with
 * `pool_per_worker`, else an equal part, at least 1 (so that a plugin sized
 * for N connections sees at most N, or one per worker).
 *
 * @example
 * poolShare(16, 4, false) // 4
 * poolShare(2, 4, false)  // 1
 */
export function poolShare(size: number, workers: number, perWorker: boolean): number {
  return perWorker ? size : Math.max(1, Math.floor(size / workers));
}

/** The state every worker is sent, as the runner has it now. */
export interface WorkerFeed {
  /** the whole current state (null before the first config) */
  current(): Extract<ToWorker, { t: 'state' }> | null;
}

/** A gateway listener as a worker is told to open it. */
export interface WorkerListener {
  /** its config path, for errors */
  name: string;
  settings: ListenerSettings;
  host: string;
  port: number;
}

export interface WorkerSetOptions {
  count: number;
  /** the gateway's listeners (each worker opens them all) */
  listeners: WorkerListener[];
  limits: Omit<GatewaySettings, 'listen'>;
  logger: Logger;
  feed: WorkerFeed;
  /** the runner's log settings, which the workers log with too */
  log?: { level: string; format: string };
  /** whether the workers record request metrics (`metrics.requests`) */
  requestMetrics?: boolean;
  /** the first restart's delay (doubles up to `backoffMaxMs`) */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

interface Slot {
  index: number;
  child: ChildProcess | null;
  pid: number | undefined;
  ready: boolean;
  failures: number;
  startedAt: number;
  timer: NodeJS.Timeout | null;
}

/** The worker's entry, with this module's own extension (.ts in the checkout, .js in the package). */
const WORKER_ENTRY = new URL(`./gateway-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url);

/**
 * The gateway workers of one runner.
 *
 * Contract: `start` once; it resolves with the listeners' URLs when every
 * worker listens, and rejects (having stopped them) when one cannot.
 * `send` reaches every live worker; a worker started later gets the
 * feed's current state first. `stop(drainMs)` is idempotent and resolves
 * when every worker has exited (killed after `drainMs` + 5 s at most).
 */
export class WorkerSet {
  #opts: WorkerSetOptions;
  #log: Logger;
  #slots: Slot[] = [];
  /** the listeners with the ports they got (port 0 picks one, shared by every worker) */
  #bound: WorkerListener[] = [];
  /** TLS session ticket keys every worker shares, so a resumed session may land on any */
  #ticketKeys = randomBytes(48);
  #stopping = false;
  #exited = new Map<ChildProcess, Promise<void>>();

  constructor(opts: WorkerSetOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
  }

  /** Every worker listens and has its state. */
  get ready(): boolean {
    return this.#slots.length > 0 && this.#slots.every((s) => s.ready);
  }

  /** Each worker's pid and readiness, for /readyz. */
  status(): Array<{ pid: number | undefined; ready: boolean; restarts: number }> {
    return this.#slots.map((s) => ({ pid: s.pid, ready: s.ready, restarts: s.failures }));
  }

  async start(): Promise<BoundListener[]> {
    // SO_REUSEPORT lets any process of this user join a port its sockets
    // share. So first a plain bind, which fails when anyone holds the port
    // (another runner's workers included) and picks a free one for port 0;
    // the workers then share that port among themselves only.
    for (const l of this.#opts.listeners) {
      const port = await new Promise<number>((resolve, reject) => {
        const probe = createNetServer();
        probe.once('error', (err: NodeJS.ErrnoException) => {
          reject(new Error(`${l.name}.listen ${l.settings.listen}: ${err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message}`));
        });
        probe.listen({ host: l.host, port: l.port }, () => {
          const p = (probe.address() as AddressInfo).port;
          probe.close(() => resolve(p));
        });
      });
      this.#bound.push({ ...l, port });
    }
    try {
      for (let i = 0; i < this.#opts.count; i++) this.#slots.push({ index: i, child: null, pid: undefined, ready: false, failures: 0, startedAt: 0, timer: null });
      await Promise.all(this.#slots.map((s) => this.#spawn(s)));
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    const bound = this.#bound.map((l) => {
      const h = l.host.includes(':') ? `[${l.host}]` : l.host;
      const tls = l.settings.tls !== undefined;
      return { listen: l.settings.listen, tls, port: l.port, url: `${tls ? 'https' : 'http'}://${h}:${l.port}` };
    });
    for (const b of bound) this.#log.info({ url: b.url, workers: this.#opts.count }, 'gateway listening');
    return bound;
  }

  #scrapes = new Map<number, { want: number; got: unknown[][]; done: (v: unknown[][]) => void }>();
  #scrapeId = 0;

  /**
   * Every live worker's metrics (prom-client `getMetricsAsJSON`), for the
   * runner to aggregate; a worker that does not answer within `timeoutMs`
   * is left out of this scrape.
   */
  scrape(timeoutMs = 2000): Promise<unknown[][]> {
    const live = this.#slots.filter((s) => s.child?.connected);
    if (!live.length) return Promise.resolve([]);
    const id = ++this.#scrapeId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(), timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        const s = this.#scrapes.get(id);
        this.#scrapes.delete(id);
        resolve(s?.got ?? []);
      };
      this.#scrapes.set(id, { want: live.length, got: [], done: finish });
      for (const s of live) s.child!.send({ t: 'metrics', id } satisfies ToWorker);
    });
  }

  /** Sends a message to every live worker. */
  send(m: ToWorker): void {
    for (const s of this.#slots) if (s.child?.connected) s.child.send(m);
  }

  /** Starts a worker; resolves once it is ready (listening, state applied), rejects if it fails first. */
  #spawn(slot: Slot): Promise<void> {
    const log = this.#opts.log;
    const env = log ? { ...process.env, HOOKGATE_LOG_LEVEL: log.level, HOOKGATE_LOG_FORMAT: log.format } : process.env;
    const child = fork(WORKER_ENTRY, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', env });
    slot.child = child;
    slot.pid = child.pid;
    slot.ready = false;
    slot.startedAt = Date.now();
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    this.#exited.set(child, exited);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      child.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          slot.ready = true;
          if (!settled) {
            settled = true;
            resolve();
          }
        } else if (m.t === 'metrics') {
          const s = this.#scrapes.get(m.id);
          if (s) {
            s.got.push(m.metrics);
            if (s.got.length >= s.want) s.done(s.got);
          }
        } else if (m.t === 'failed' && !settled) {
          settled = true;
          reject(new Error(m.error));
        }
      });
      child.once('exit', (code, signal) => {
        this.#exited.delete(child);
        slot.ready = false;
        if (slot.child === child) slot.child = null;
        if (!settled) {
          settled = true;
          return reject(new Error(`gateway worker exited during start (code ${code}, signal ${signal})`));
        }
        if (this.#stopping) return;
        // Fast deaths back off; a worker that ran a while starts over at the base delay.
        if (Date.now() - slot.startedAt > 10_000) slot.failures = 0;
        const delay = backoffDelay(slot.failures, this.#opts.backoffBaseMs ?? 100, this.#opts.backoffMaxMs ?? 5000);
        slot.failures++;
        this.#log.warn({ worker: slot.pid, code, signal, restart_in_ms: delay }, 'gateway worker exited; starting it again');
        slot.timer = setTimeout(() => {
          slot.timer = null;
          if (this.#stopping) return;
          this.#spawn(slot).catch((err) => this.#log.error({ err: (err as Error).message }, 'gateway worker did not start'));
        }, delay);
      });
      const o = this.#opts;
      child.send({ t: 'start', index: slot.index, workers: o.count, listeners: this.#bound, ticketKeys: this.#ticketKeys, limits: o.limits, requestMetrics: o.requestMetrics !== false } satisfies ToWorker);
      const state = o.feed.current();
      if (state) child.send(state);
    });
  }

  /** Drains every worker (each stops accepting and finishes its requests within `drainMs`), then waits for them to exit. */
  async stop(drainMs: number): Promise<void> {
    this.#stopping = true;
    for (const s of this.#slots) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
    }
    const waits = [...this.#exited.entries()].map(([child, exited]) => {
      if (child.connected) child.send({ t: 'drain', ms: drainMs } satisfies ToWorker);
      else child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), drainMs + 5000);
      return exited.finally(() => clearTimeout(kill));
    });
    await Promise.all(waits);
  }
}
