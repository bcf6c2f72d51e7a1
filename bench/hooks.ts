/**
 * `npm run bench:hooks`: on_request calls through the plugin manager and
 * its socket pool to the example SDK plugin (examples/plugins/auth.ts), at
 * concurrency 1 and 64, against the floor: the same number of round trips
 * of same-sized frames over the same kind of Unix sockets (as many
 * connections as the pool uses) to a trivial echo server that decodes
 * nothing. Prints calls/s, p50, p99 and the ratio hookgate/floor, and writes
 * the results to bench/results/hooks-<time>.json.
 *
 * Both sides run in one process each, side by side in one run, because
 * this machine is noisy: compare the ratios, not the absolute numbers.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, tmpdir, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeEnvelopeFrame, encodeHookData, FrameDecoder } from '../src/core/codec.ts';
import { parseConfig } from '../src/core/config.ts';
import { HOOK, type RequestInfo } from '../src/core/protocol.ts';
import { createLogger } from '../node-runner/log.ts';
import { PluginManager } from '../node-runner/plugin/manager.ts';
import { Reaper } from '../node-runner/plugin/reaper.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const POOL = 16;
const RUNS = [
  { concurrency: 1, calls: Number(process.env.BENCH_CALLS_C1 ?? 10_000) },
  { concurrency: 64, calls: Number(process.env.BENCH_CALLS_C64 ?? 100_000) },
];
const WARMUP = 3000;

const info: RequestInfo = {
  r: 'bench', m: 'GET', p: '/v1/users/42', q: 'expand=profile', d: 'api.example.com', ho: 'api.example.com',
  pr: 'HTTP/1.1', a: '127.0.0.1:53422', cl: 0, bd: null, md: '*.example.com', mg: '', mp: '/v1/*', v: {}, tg: '',
  h: {
    Authorization: 'Bearer demo-token', Accept: 'application/json', 'User-Agent': 'bench/1.0',
    'X-Request-Id': '5f0c6a1e-2f7b-4c1e-9d7e-3b1f0a2c4d5e', 'Accept-Encoding': 'gzip, br',
  },
};

interface Result { calls_per_s: number; p50_ms: number; p99_ms: number }

function summarize(lat: Float64Array, ms: number): Result {
  const s = lat.slice().sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { calls_per_s: Math.round((lat.length / ms) * 1000), p50_ms: +q(0.5).toFixed(3), p99_ms: +q(0.99).toFixed(3) };
}

/** Runs `calls` calls of `one` with `concurrency` workers; returns latencies and wall time. */
async function drive(calls: number, concurrency: number, one: (worker: number) => Promise<unknown>): Promise<Result> {
  const lat = new Float64Array(calls);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = next++; i < calls; i = next++) {
        const t = performance.now();
        await one(w);
        lat[i] = performance.now() - t;
      }
    }),
  );
  return summarize(lat, performance.now() - t0);
}

async function floorClient(socket: string, conns: number, frame: Uint8Array) {
  const sockets: Array<{ s: Socket; dec: FrameDecoder; wait: (() => void) | null }> = [];
  for (let i = 0; i < conns; i++) {
    const s = connect(socket);
    await once(s, 'connect');
    const c = { s, dec: new FrameDecoder(), wait: null as (() => void) | null };
    s.on('data', (chunk: Buffer) => {
      if (c.dec.push(chunk).length) c.wait?.();
    });
    sockets.push(c);
  }
  // One call at a time per connection, like the pool; extra workers queue for a free connection.
  const free = [...sockets];
  const waiting: Array<(c: (typeof sockets)[number]) => void> = [];
  return {
    call: async () => {
      const c = free.pop() ?? (await new Promise<(typeof sockets)[number]>((r) => waiting.push(r)));
      await new Promise<void>((r) => {
        c.wait = r;
        c.s.write(frame);
      });
      const w = waiting.shift();
      if (w) w(c);
      else free.push(c);
    },
    close: () => sockets.forEach((c) => c.s.destroy()),
  };
}

const log = createLogger({ level: 'warn' });
const manager = new PluginManager({ logger: log, reaper: Reaper.shared() });
const dir = mkdtempSync(join(tmpdir(), 'hookgate-bench-'));
const echo = spawn(process.execPath, [here('./echo-server.ts'), join(dir, 'echo.sock'), '0'], { stdio: ['pipe', 'pipe', 'inherit'] });
try {
  await manager.apply(parseConfig({
    routes: [{ id: 'bench', plugins: ['auth'], action: { type: 'static' } }],
    plugins: { auth: { path: here('../examples/plugins/auth.ts'), pool_size: POOL } },
  }));
  await manager.whenReady('auth', 10_000);
  const check = await manager.onRequest('bench', info);
  if (!check.ok) throw new Error(`the auth plugin denied the bench request: ${JSON.stringify(check)}`);
  const requestFrame = encodeEnvelopeFrame(HOOK.on_request, encodeHookData('on_request', info));
  // The plugin's reply to this request, measured by encoding what it sends.
  const { encodeHookResult } = await import('../src/core/codec.ts');
  const replyBytes = encodeHookResult('on_request', { ok: true, h: { 'X-User': 'demo' } }).length;
  echo.kill();
  await once(echo, 'exit');
  const echo2 = spawn(process.execPath, [here('./echo-server.ts'), join(dir, 'echo.sock'), String(replyBytes)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(echo2.stdout!, 'data');

  const rows: Array<{ concurrency: number; calls: number; hookgate: Result; floor: Result; ratio: number }> = [];
  for (const { concurrency, calls } of RUNS) {
    const floor = await floorClient(join(dir, 'echo.sock'), Math.min(concurrency, POOL), requestFrame);
    await drive(WARMUP, concurrency, () => manager.onRequest('bench', info));
    await drive(WARMUP, concurrency, floor.call);
    const hg = await drive(calls, concurrency, () => manager.onRequest('bench', info));
    const fl = await drive(calls, concurrency, floor.call);
    floor.close();
    rows.push({ concurrency, calls, hookgate: hg, floor: fl, ratio: +(hg.calls_per_s / fl.calls_per_s).toFixed(3) });
  }
  echo2.stdin?.end();

  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, mem_gib: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version };
  console.log(`\non_request through the pool (${POOL} connections) to examples/plugins/auth.ts vs. echo floor`);
  console.log(`request frame ${requestFrame.length} B, reply ${replyBytes} B; ${machine.cpus} cores, ${machine.cpu}, node ${machine.node}\n`);
  console.log('concurrency  calls    hookgate calls/s  p50 ms  p99 ms | floor calls/s  p50 ms  p99 ms | hookgate/floor');
  for (const r of rows) {
    console.log(
      `${String(r.concurrency).padStart(11)}  ${String(r.calls).padEnd(7)}  ${String(r.hookgate.calls_per_s).padStart(16)}  ${r.hookgate.p50_ms.toFixed(3).padStart(6)}  ${r.hookgate.p99_ms.toFixed(3).padStart(6)} | ${String(r.floor.calls_per_s).padStart(13)}  ${r.floor.p50_ms.toFixed(3).padStart(6)}  ${r.floor.p99_ms.toFixed(3).padStart(6)} | ${r.ratio.toFixed(3).padStart(14)}`,
    );
  }
  const c64 = rows.find((r) => r.concurrency === 64);
  if (c64) console.log(`\ngoal at concurrency 64: >= 0.7 of the floor and >= 40000 calls/s; got ${c64.ratio} and ${c64.hookgate.calls_per_s}`);
  mkdirSync(here('./results'), { recursive: true });
  const file = here(`./results/hooks-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ bench: 'hooks', date: new Date().toISOString(), machine, pool: POOL, rows }, null, 2) + '\n');
  console.log(`results written to ${file}`);
} finally {
  echo.kill();
  await manager.stop();
  rmSync(dir, { recursive: true, force: true });
}
