/**
 * @module plugin/pool
 * The Unix-socket connection pool of one plugin socket (docs/protocol.md §1):
 * one call in flight per connection, no call ids, a deadline on every call,
 * and a connection that failed or timed out is destroyed, never reused.
 *
 * Calls beyond the pool's size wait in a bounded FIFO queue (default 1024)
 * for the next free connection; their wait counts against their deadline.
 * A call that finds the queue full fails at once with `POOL_SATURATED`.
 * We queue rather than open extra connections because a plugin sized for
 * N connections should see at most N, and a full queue is the signal that
 * the plugin, not the pool, is the bottleneck.
 *
 * on_disconnect is fire-and-forget: it goes out on one dedicated connection
 * whose replies (a plugin should send none) are read and discarded, so a
 * stray reply can never be taken for the answer to another call.
 */

import { connect, type Socket } from 'node:net';
import { encodeEnvelopeFrame, FrameDecoder } from '../../src/core/protocol/codec.ts';
import { HookgateError } from '../../src/core/errors.ts';
import type { HookType } from '../../src/core/protocol/protocol.ts';
import { realClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';

export interface PoolOptions {
  /** connections at most (default 16) */
  size?: number;
  /** calls allowed to wait for a connection (default 1024) */
  queueLimit?: number;
  clock?: Clock;
  /** bytes the notify connection may buffer before notifications are dropped (default 1 MiB) */
  notifyHighWater?: number;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  /** when the call fails with HOOK_TIMEOUT (the pool's clock) */
  deadline: number;
  /** the call's whole time allowed, for the error message */
  timeoutMs: number;
  /** checks the reply before the connection is reused; a throw destroys the connection */
  decode: ((payload: Uint8Array) => unknown) | null;
}

interface Waiter extends Pending {
  frame: Uint8Array;
}

/**
 * Where every pool's connections read their replies (see `#dial`). Shared:
 * a read is consumed synchronously in its callback, and what is kept is copied.
 */
const READ_BUFFER = Buffer.allocUnsafe(65_536);

class Conn {
  readonly socket: Socket;
  readonly decoder = new FrameDecoder();
  pending: Pending | null = null;
  dead = false;
  constructor(socket: Socket) {
    this.socket = socket;
  }
}

/**
 * A pool of connections to one plugin socket.
 *
 * Contract: `call` is safe to call concurrently; each call settles exactly
 * once, by its deadline at the latest: with the reply payload, or with a
 * HookgateError (`HOOK_TIMEOUT`, `PLUGIN_UNAVAILABLE`, `POOL_SATURATED`,
 * `FRAME_TOO_LARGE`, `STOPPED`). `close()` is idempotent, destroys every
 * connection and fails every call in flight or waiting with `STOPPED`.
 */
export class SocketPool {
  readonly path: string;
  readonly size: number;
  readonly queueLimit: number;
  #clock: Clock;
  #idle: Conn[] = [];
  #open = 0;
  #waiters: Waiter[] = [];
  #closed = false;
  #notify: Socket | null = null;
  #notifyHighWater: number;
  /**
   * The deadline wheel: one timer for the pool, armed for the earliest
   * deadline of the calls in flight or waiting, instead of a timer per
   * call. Calls of one route share a timeout, so a new call's deadline is
   * later than the armed one and arming costs a comparison.
   */
  #wheel: TimerHandle | null = null;
  #wheelAt = Infinity;

  constructor(path: string, opts: PoolOptions = {}) {
    this.path = path;
    this.size = opts.size ?? 16;
    this.queueLimit = opts.queueLimit ?? 1024;
    this.#clock = opts.clock ?? realClock;
    this.#notifyHighWater = opts.notifyHighWater ?? 1_048_576;
  }

  /** Connections open or opening. */
  get connections(): number {
    return this.#open;
  }

  /** Connections with a call in flight (or being opened for one). */
  get busy(): number {
    return this.#busy.size;
  }

  /** Open connections waiting for a call. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Calls waiting for a connection. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Sends one hook call (the envelope of `type` around the msgpack `data`)
   * and resolves with the reply's payload. Rejects by `timeoutMs`.
   *
   * @example
   * const payload = await pool.call(HOOK.on_request, encodeHookData('on_request', info), 5000);
   */
  call(type: HookType, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    let frame: Uint8Array;
    try {
      frame = encodeEnvelopeFrame(type, data);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.callFrame(frame, timeoutMs);
  }

  /**
   * Like `call`, with the complete frame already built (see the codec's
   * `encodeHookFrame`); the same frame may be sent to several plugins.
   * `decode` turns the reply into the result before the connection goes
   * back to the pool: when it throws (garbage, a forbidden verdict), the
   * call fails with that error and the connection is destroyed, never reused.
   *
   * @example
   * const verdict = await pool.callFrame(frame, 5000, (p) => decodeHookResult('on_request', p));
   */
  callFrame(frame: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  callFrame<T>(frame: Uint8Array, timeoutMs: number, decode: (payload: Uint8Array) => T): Promise<T>;
  callFrame(frame: Uint8Array, timeoutMs: number, decode: ((payload: Uint8Array) => unknown) | null = null): Promise<unknown> {
    if (this.#closed) return Promise.reject(stopped(this.path));
    return new Promise((resolve, reject) => {
      const deadline = this.#clock.now() + timeoutMs;
      const conn = this.#idle.pop();
      if (conn) return this.#send(conn, frame, { resolve, reject, deadline, timeoutMs, decode });
      if (this.#open < this.size) return this.#dial(frame, { resolve, reject, deadline, timeoutMs, decode });
      if (this.#waiters.length >= this.queueLimit) {
        return reject(
          new HookgateError('POOL_SATURATED', `plugin socket ${this.path}: all ${this.size} connections busy and ${this.queueLimit} calls already waiting`),
        );
      }
      this.#waiters.push({ resolve, reject, deadline, timeoutMs, decode, frame });
      this.#arm(deadline);
    });
  }

  /**
   * Sends a hook that gets no reply (on_disconnect). Never throws; when the
   * plugin cannot take it right now (not connected, backed up), it is dropped
   * and `false` returned.
   */
  notify(type: HookType, data: Uint8Array): boolean {
    if (this.#closed) return false;
    let frame: Uint8Array;
    try {
      frame = encodeEnvelopeFrame(type, data);
    } catch {
      return false;
    }
    let s = this.#notify;
    if (!s || s.destroyed) {
      s = connect(this.path);
      s.on('error', () => {});
      s.on('close', () => {
        if (this.#notify === s) this.#notify = null;
      });
      s.on('data', () => {});
      s.unref();
      this.#notify = s;
    }
    if (s.writableLength > this.#notifyHighWater) return false;
    s.write(frame);
    return true;
  }

  /** Destroys every connection; calls in flight and waiting fail with `STOPPED`. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.clearTimeout(this.#wheel);
    this.#wheel = null;
    this.#wheelAt = Infinity;
    for (const w of this.#waiters.splice(0)) w.reject(stopped(this.path));
    for (const c of this.#idle.splice(0)) c.socket.destroy();
    this.#flushed = this.#endNotify();
    // Busy connections are destroyed through their sockets' close handlers.
    for (const c of this.#busy) this.#fail(c, stopped(this.path));
  }

  #busy = new Set<Conn>();
  #flushed: Promise<void> = Promise.resolve();

  /**
   * Resolves once notifications written before `close()` have been read by
   * the plugin (it closed its end), or after 500 ms at most.
   */
  flushed(): Promise<void> {
    return this.#flushed;
  }

  #endNotify(): Promise<void> {
    const s = this.#notify;
    this.#notify = null;
    if (!s || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        s.destroy();
        resolve();
      }, 500);
      timer.unref();
      s.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      s.end();
    });
  }

  /** Makes sure the wheel fires by `deadline`. */
  #arm(deadline: number): void {
    if (deadline >= this.#wheelAt || this.#closed) return;
    this.#clock.clearTimeout(this.#wheel);
    this.#wheelAt = deadline;
    // Unref: a call in flight holds its socket, which keeps the process alive; an idle wheel must not.
    this.#wheel = this.#clock.setTimeout(this.#sweep, Math.max(0, deadline - this.#clock.now()), true);
  }

  /** Fails every call whose deadline has passed, and arms the wheel for the next one. */
  #sweep = (): void => {
    this.#wheel = null;
    this.#wheelAt = Infinity;
    const now = this.#clock.now();
    let next = Infinity;
    for (let i = 0; i < this.#waiters.length; ) {
      const w = this.#waiters[i];
      if (w.deadline <= now) {
        this.#waiters.splice(i, 1);
        w.reject(timeout(this.path, w.timeoutMs, 'waiting for a free connection'));
      } else {
        next = Math.min(next, w.deadline);
        i++;
      }
    }
    for (const conn of [...this.#busy]) {
      const p = conn.pending;
      if (!p) continue;
      if (p.deadline <= now) this.#fail(conn, timeout(this.path, p.timeoutMs, 'waiting for the reply'));
    }
    // Failing a connection may have handed its slot to a waiter: read the deadlines after.
    for (const conn of this.#busy) if (conn.pending) next = Math.min(next, conn.pending.deadline);
    for (const w of this.#waiters) next = Math.min(next, w.deadline);
    if (next < Infinity) this.#arm(next);
  };

  #dial(frame: Uint8Array, pending: Pending): void {
    this.#open++;
    // Replies are read straight into one shared buffer (`onread`): no
    // Buffer per read, no stream machinery, no 'data' event.
    const onread = {
      buffer: READ_BUFFER,
      callback: (n: number, buf: Uint8Array): boolean => {
        this.#onData(conn, buf.subarray(0, n));
        return true;
      },
    };
    const socket = connect({ path: this.path, onread });
    socket.setNoDelay?.(true);
    const conn = new Conn(socket);
    this.#busy.add(conn);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.#fail(conn, new HookgateError('PLUGIN_UNAVAILABLE', `plugin socket ${this.path}: ${err.code ?? err.message}`, { cause: err }));
    });
    socket.on('close', () => {
      this.#fail(conn, new HookgateError('PLUGIN_UNAVAILABLE', `plugin socket ${this.path}: connection closed by the plugin`));
    });
    this.#send(conn, frame, pending);
  }

  #send(conn: Conn, frame: Uint8Array, pending: Pending): void {
    this.#busy.add(conn);
    conn.pending = pending;
    this.#arm(pending.deadline);
    conn.socket.write(frame);
  }

  #onData(conn: Conn, chunk: Uint8Array): void {
    if (conn.dead) return;
    let frames: Uint8Array[];
    try {
      frames = conn.decoder.push(chunk);
    } catch (err) {
      return this.#fail(conn, err as Error);
    }
    if (frames.length === 0) return;
    const pending = conn.pending;
    if (!pending || frames.length > 1 || conn.decoder.pending > 0) {
      // More than one reply to one call: the plugin is out of step with us.
      return this.#fail(
        conn,
        new HookgateError('BAD_PAYLOAD', `plugin socket ${this.path}: reply without a call in flight; connection closed`),
      );
    }
    // A reply that came in one read is a view of READ_BUFFER, which the next
    // read overwrites: copy it (a few bytes) before anything can keep a view.
    const payload = frames[0].buffer === READ_BUFFER.buffer ? new Uint8Array(frames[0]) : frames[0];
    let value: unknown = payload;
    if (pending.decode) {
      try {
        value = pending.decode(payload);
      } catch (err) {
        return this.#fail(conn, err as Error);
      }
    }
    conn.pending = null;
    this.#release(conn);
    pending.resolve(value);
  }

  #release(conn: Conn): void {
    const w = this.#waiters.shift();
    if (w) {
      if (w.deadline - this.#clock.now() <= 0) {
        w.reject(timeout(this.path, 0, 'waiting for a free connection'));
        return this.#release(conn);
      }
      return this.#send(conn, w.frame, w);
    }
    this.#busy.delete(conn);
    if (this.#closed) {
      conn.dead = true;
      conn.socket.destroy();
      return;
    }
    this.#idle.push(conn);
  }

  /** Destroys a connection (never reused) and fails its call, if any. */
  #fail(conn: Conn, err: Error): void {
    if (conn.dead) return;
    conn.dead = true;
    this.#open--;
    this.#busy.delete(conn);
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
    conn.socket.destroy();
    const pending = conn.pending;
    conn.pending = null;
    if (pending) pending.reject(err);
    // A slot freed up: a waiting call gets a fresh connection.
    const w = this.#closed ? undefined : this.#waiters.shift();
    if (w) {
      if (w.deadline - this.#clock.now() <= 0) w.reject(timeout(this.path, 0, 'waiting for a free connection'));
      else this.#dial(w.frame, w);
    }
  }
}

function timeout(path: string, ms: number, what: string): HookgateError {
  const closed = what.startsWith('waiting for the reply') ? '; connection closed' : '';
  return new HookgateError('HOOK_TIMEOUT', `plugin socket ${path}: no reply within ${Math.round(ms)} ms (${what})${closed}`);
}

function stopped(path: string): HookgateError {
  return new HookgateError('STOPPED', `plugin socket ${path}: pool closed`);
}
