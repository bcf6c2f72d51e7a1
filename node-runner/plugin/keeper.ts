/**
 * @module plugin/keeper
 * The keeper process (docs/keeper.md): the one process that starts plugins
 * and holds their pipes, so that plugins outlive a runner that is killed
 * or upgraded. Run as `node keeper.ts <state dir>`, detached, by
 * `keeper-client.ts`; it listens on `<state dir>/keeper.sock` (mode 0600)
 * and speaks JSON lines with one runner at a time.
 *
 * It logs what it does (runner connections, plugin starts and exits, the
 * grace, errors) as JSON lines to `<state dir>/keeper.log` (mode 0600,
 * rotated to `keeper.log.1` past 1 MiB); the client sends its stderr there
 * too, so a crash leaves its stack.
 *
 * It is written to change rarely: it starts processes, relays lines,
 * remembers the last `ready` and the last push per address of each plugin,
 * signals only children it still holds, and ends everything when no runner
 * has been connected for `HOOKGATE_KEEPER_GRACE_MS` (default 60 s). It
 * never restarts a plugin: supervision is the runner's.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { realClock } from '../../src/core/clock.ts';
import { LineSplitter } from '../lines.ts';
import { ReadThrottle } from '../gateway/throttle.ts';
import { processStat } from '../state-dir.ts';
import { SOCKET_DIR_KEY, SOCKET_DIR_PREFIX } from '../../src/core/protocol/protocol.ts';
import { ensureSocketDir, keeperSocketPath } from './keeper-path.ts';

/** How a runner asks for a plugin to be started. */
export interface KeeperSpec {
  program: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
}

/** One plugin as `list` reports it. */
export interface KeptPlugin {
  id: string;
  name: string;
  pid: number;
  start_time: number | null;
  spec_hash: string;
  /** the last `ready` line, verbatim */
  last_ready: string | null;
  /** the last `set_targets` / `set_speed` line per address, oldest first */
  last_pushes: string[];
  /** other stdout lines written while no runner was connected (at most HELD_MAX, HELD_MAX_BYTES) */
  held: string[];
  /** how many such lines were dropped beyond those bounds */
  held_dropped?: number;
}

/** The keeper's own log, in the state dir. */
const KEEPER_LOG = 'keeper.log';
const KEEPER_LOG_MAX = 1024 * 1024;

const HELD_MAX = 1000;
const HELD_MAX_BYTES = 1024 * 1024;
/** The last push per address is kept for a restarted runner; beyond these bounds the oldest go. */
const PUSHES_MAX = 1024;
const PUSHES_MAX_BYTES = 8 * 1024 * 1024;

interface Held {
  id: string;
  name: string;
  child: ChildProcess;
  pid: number;
  startTime: number | null;
  specHash: string;
  lastReady: string | null;
  pushes: Map<string, { seq: number; line: string }>;
  pushBytes: number;
  held: string[];
  heldBytes: number;
  heldDropped: number;
  /** reading of its stdout and stderr: a budget per second, held while the runner or its socket push back */
  rates: ReadThrottle[];
  exited: boolean;
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: keeper.ts <state dir>\n');
    process.exit(2);
  }
  const graceMs = Number(process.env.HOOKGATE_KEEPER_GRACE_MS) > 0 ? Number(process.env.HOOKGATE_KEEPER_GRACE_MS) : 60_000;
  const sockPath = keeperSocketPath(dir);
  const logFile = join(dir, KEEPER_LOG);
  const klog = (msg: string, fields: Record<string, unknown> = {}): void => {
    try {
      if ((statSync(logFile, { throwIfNoEntry: false })?.size ?? 0) > KEEPER_LOG_MAX) renameSync(logFile, `${logFile}.1`);
      appendFileSync(logFile, JSON.stringify({ time: new Date().toISOString(), pid: process.pid, msg, ...fields }) + '\n', { mode: 0o600 });
    } catch {
      // A log that cannot be written must not stop the keeper.
    }
  };
  const plugins = new Map<string, Held>();
  let runner: Socket | null = null;
  let graceTimer: NodeJS.Timeout | null = null;
  let pushSeq = 0;
  let exiting = false;

  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  // While the runner's socket is full, no plugin is read: the keeper's memory stays bounded.
  let socketFull = false;
  const holdAll = (why: string, on: boolean): void => {
    for (const p of plugins.values()) for (const r of p.rates) on ? r.hold(why) : r.release(why);
  };
  const send = (msg: Record<string, unknown>): void => {
    if (!runner || runner.destroyed) return;
    if (!runner.write(JSON.stringify(msg) + '\n') && !socketFull) {
      socketFull = true;
      holdAll('socket', true);
      const conn = runner;
      const drained = (): void => {
        conn.off('drain', drained);
        conn.off('close', drained);
        socketFull = false;
        holdAll('socket', false);
      };
      conn.on('drain', drained);
      conn.on('close', drained);
    }
  };

  const signalGroup = (p: Held, signal: NodeJS.Signals): void => {
    // Only a child we hold and that has not exited: its pid cannot have been reused.
    if (p.exited || p.child.exitCode !== null || p.child.signalCode !== null) return;
    try {
      process.kill(-p.pid, signal);
    } catch {
      // ESRCH: already gone.
    }
  };

  const stopPlugin = (p: Held, graceMs: number): Promise<void> => {
    if (p.exited) return Promise.resolve();
    return new Promise((resolve) => {
      p.child.once('close', () => resolve());
      p.child.stdin?.end();
      const term = setTimeout(() => signalGroup(p, 'SIGTERM'), graceMs);
      const kill = setTimeout(() => signalGroup(p, 'SIGKILL'), 2 * graceMs);
      p.child.once('close', () => {
        clearTimeout(term);
        clearTimeout(kill);
      });
    });
  };

  const shutdown = async (why = 'asked to exit'): Promise<void> => {
    if (exiting) return;
    exiting = true;
    klog('stopping every plugin and exiting', { why, plugins: plugins.size });
    await Promise.all([...plugins.values()].map((p) => stopPlugin(p, 1000)));
    try {
      unlinkSync(sockPath);
    } catch {
      // Already removed (or replaced by a newer keeper's: see the listen below).
    }
    process.exit(0);
  };

  const armGrace = (): void => {
    if (graceTimer) clearTimeout(graceTimer);
    graceTimer = setTimeout(() => void shutdown(`no runner connected for ${graceMs} ms`), graceMs);
  };

  const start = (id: string, name: string, spec: KeeperSpec, specHash: string): void => {
    let child: ChildProcess;
    try {
      child = spawn(spec.program, spec.args, { cwd: spec.cwd, env: spec.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      send({ type: 'spawn_error', id, code: (err as NodeJS.ErrnoException).code ?? '', message: (err as Error).message });
      send({ type: 'exited', id, code: null, signal: null });
      return;
    }
    const p: Held = {
      id, name, child, pid: 0, startTime: null, specHash, lastReady: null,
      pushes: new Map(), pushBytes: 0, held: [], heldBytes: 0, heldDropped: 0, rates: [], exited: false,
    };
    plugins.set(id, p);
    child.on('error', (err: NodeJS.ErrnoException) => {
      klog('cannot start a plugin', { id, program: spec.program, code: err.code, err: err.message });
      send({ type: 'spawn_error', id, code: err.code ?? '', message: err.message });
    });
    child.stdin?.on('error', () => {});
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    const outRate = new ReadThrottle(child.stdout!, realClock);
    const errRate = new ReadThrottle(child.stderr!, realClock);
    p.rates = [outRate, errRate];
    if (socketFull) holdAll('socket', true);
    // An over-long line is dropped here and reported, never silently.
    const out = new LineSplitter((line) => {
      outRate.line(line.length);
      onStdout(p, line);
    }, () => send({ type: 'overlong', id, stream: 'stdout' }));
    const err = new LineSplitter((line) => {
      errRate.line(line.length);
      if (runner) send({ type: 'stderr', id, line });
    }, () => send({ type: 'overlong', id, stream: 'stderr' }));
    child.stdout?.on('data', (c: string) => out.push(c));
    child.stderr?.on('data', (c: string) => err.push(c));
    child.on('spawn', () => {
      klog('plugin started', { id, pid: child.pid });
      p.pid = child.pid!;
      p.startTime = processStat(p.pid)?.startTime ?? null;
      send({ type: 'started', id, pid: p.pid, start_time: p.startTime });
    });
    child.on('exit', () => {
      // A grandchild holding stdout would delay 'close': end the group and our pipe ends now.
      if (child.pid) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
    });
    child.on('close', (code, signal) => {
      klog('plugin exited', { id, pid: p.pid, code, signal });
      out.end();
      err.end();
      for (const r of p.rates) r.stop();
      // The runner made this process a socket folder; the runner may be gone by now, so it is ours to remove.
      const socketDir = spec.env[SOCKET_DIR_KEY];
      if (socketDir && basename(socketDir).startsWith(SOCKET_DIR_PREFIX)) {
        try {
          rmSync(socketDir, { recursive: true, force: true });
        } catch {
          // In the temp dir: nothing more to do.
        }
      }
      p.exited = true;
      plugins.delete(id);
      send({ type: 'exited', id, code, signal });
    });
  };

  const onStdout = (p: Held, line: string): void => {
    let method: unknown;
    let params: Record<string, unknown> = {};
    try {
      const v = JSON.parse(line) as Record<string, unknown>;
      method = v?.method;
      if (typeof v?.params === 'object' && v.params !== null) params = v.params as Record<string, unknown>;
    } catch {
      method = undefined;
    }
    if (method === 'ready') p.lastReady = line;
    else if (method === 'set_targets' || method === 'set_speed') {
      const to = typeof params.route_id === 'string' && params.route_id !== '' ? `r:${params.route_id}` : `a:${String(params.action)}`;
      const key = `${method} ${to}`;
      const old = p.pushes.get(key);
      if (old) p.pushBytes -= old.line.length;
      p.pushes.delete(key);
      p.pushes.set(key, { seq: ++pushSeq, line });
      p.pushBytes += line.length;
      for (const [k, v] of p.pushes) {
        if (p.pushes.size <= PUSHES_MAX && p.pushBytes <= PUSHES_MAX_BYTES) break;
        p.pushes.delete(k);
        p.pushBytes -= v.line.length;
      }
    } else if (!runner) {
      if (p.held.length < HELD_MAX && p.heldBytes + line.length <= HELD_MAX_BYTES) {
        p.held.push(line);
        p.heldBytes += line.length;
      } else p.heldDropped++;
    }
    if (runner) send({ type: 'stdout', id: p.id, line });
  };

  const list = (): KeptPlugin[] =>
    [...plugins.values()]
      .filter((p) => !p.exited && p.pid)
      .map((p) => {
        const held = p.held;
        const heldDropped = p.heldDropped;
        p.held = [];
        p.heldBytes = 0;
        p.heldDropped = 0;
        return {
          id: p.id,
          name: p.name,
          pid: p.pid,
          start_time: p.startTime,
          spec_hash: p.specHash,
          last_ready: p.lastReady,
          last_pushes: [...p.pushes.values()].sort((a, b) => a.seq - b.seq).map((x) => x.line),
          held,
          ...(heldDropped ? { held_dropped: heldDropped } : {}),
        };
      });

  const onMessage = (conn: Socket, msg: Record<string, unknown>): void => {
    if (conn !== runner) return;
    const p = typeof msg.id === 'string' ? plugins.get(msg.id) : undefined;
    switch (msg.type) {
      case 'start':
        if (typeof msg.id === 'string' && typeof msg.name === 'string' && !plugins.has(msg.id)) {
          start(msg.id, msg.name, msg.spec as KeeperSpec, String(msg.spec_hash ?? ''));
        }
        return;
      case 'stdin':
        if (p && !p.exited && p.child.stdin?.writable) p.child.stdin.write(String(msg.data ?? ''));
        return;
      case 'pause':
      case 'resume':
        // The runner's backpressure for one plugin: stop (or go on) reading its output.
        if (p) for (const r of p.rates) msg.type === 'pause' ? r.hold('runner') : r.release('runner');
        return;
      case 'stdin_end':
        if (p && !p.exited) p.child.stdin?.end();
        return;
      case 'signal':
        if (p && (msg.signal === 'SIGTERM' || msg.signal === 'SIGKILL')) signalGroup(p, msg.signal);
        return;
      case 'stop':
        if (p) void stopPlugin(p, typeof msg.grace_ms === 'number' ? msg.grace_ms : 2000);
        return;
      case 'list':
        send({ type: 'list', keeper_pid: process.pid, plugins: list() });
        return;
      case 'exit':
        void shutdown('the runner asked it to exit');
        return;
    }
  };

  const server = createServer((conn) => {
    if (exiting) return void conn.destroy();
    // One runner at a time: a restarted runner takes over even if the dead
    // one's connection has not been closed yet.
    klog(runner ? 'a runner connected; it replaces the previous one' : 'a runner connected', { plugins: plugins.size });
    runner?.destroy();
    runner = conn;
    holdAll('runner', false);
    if (graceTimer) clearTimeout(graceTimer);
    graceTimer = null;
    conn.setEncoding('utf8');
    const lines = new LineSplitter((line) => {
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof msg === 'object' && msg !== null) onMessage(conn, msg as Record<string, unknown>);
    }, () => {});
    conn.on('data', (c: string) => lines.push(c));
    conn.on('error', () => {});
    conn.on('close', () => {
      if (runner !== conn) return;
      runner = null;
      klog('the runner disconnected; plugins keep running for the grace', { grace_ms: graceMs, plugins: plugins.size });
      // Nobody to ask for more: read on (what is not kept is counted in held_dropped).
      holdAll('runner', false);
      armGrace();
    });
  });

  mkdirSync(dir, { recursive: true, mode: 0o700 });
  ensureSocketDir(sockPath);
  try {
    // The client starts a keeper only when nothing answers here, so a socket file is stale.
    unlinkSync(sockPath);
  } catch {
    // none
  }
  const oldMask = process.umask(0o077);
  server.listen(sockPath, () => {
    klog('keeper listening', { socket: sockPath, grace_ms: graceMs });
    process.umask(oldMask);
    chmodSync(sockPath, 0o600);
    armGrace();
  });
  server.on('error', (err) => {
    klog('cannot listen; exiting', { socket: sockPath, err: err.message });
    process.exit(1);
  });
}

// Only ever run as a program; other modules import its types only (`import type`).
main();
