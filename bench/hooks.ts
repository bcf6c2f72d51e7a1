/**
 * `npm run bench:hooks`: on_request calls through the plugin manager and
 * its socket pool to the example SDK plugin (examples/plugins/auth.ts), at
 * concurrency 1 and 64, against the floor: the same number of round trips
 * of same-sized frames over the same kind of Unix sockets (as many
 * connections as the pool uses) to a trivial echo server that decodes
 * nothing. Prints calls/s, p50, p99, CPU per call and the ratio
 * hookgate/floor (the target at concurrency 64: at least 0.8), and writes
 * the results to bench/results/hooks-<time>.json.
 *
 * CPU per call is the user+system time of this process and all its
 * children (the plugin, the echo server; bench/cpu.ts) during the measured
 * calls, over the calls: the other side's processes are idle meanwhile.
 *
 * Both sides run in one process each, side by side in one run, because
 * this machine is noisy: compare the ratios, not the absolute numbers.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeEnvelopeFrame, encodeHookData, FrameDecoder } from '../src/core/protocol/codec.ts';
import { parseConfig } from '../src/core/config/config.ts';
import { HOOK, type RequestInfo } from '../src/core/protocol/protocol.ts';
import { createLogger } from '../node-runner/log.ts';
import { PluginManager } from '../node-runner/plugin/manager.ts';
import { Reaper } from '../node-runner/plugin/reaper.ts';
import { cpuSeconds, machineCpuSeconds } from './cpu.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const POOL = 16;
const RUNS = [
  { concurrency: 1, calls: Number(process.env.BENCH_CALLS_C1 ?? 10_000) },
  { concurrency: 64, calls: Number(process.env.BENCH_CALLS_C64 ?? 100_000) },
];
const WARMUP = 3000;
/** The acceptance target: hookgate's calls/s at concurrency 64 over the floor's. */
const TARGET_C64 = 0.8;

const info: RequestInfo = {
  r: 'bench', m: 'GET', p: '/v1/users/42', q: 'expand=profile', d: 'api.example.com', ho: 'api.example.com',
  pr: 'HTTP/1.1', a: '127.0.0.1:53422', cl: 0, bd: null, md: '*.example.com', mg: '', mp: '/v1/*', v: {}, tg: '',
  h: {
    Authorization: 'Bearer demo-token', Accept: 'application/json', 'User-Agent': 'bench/1.0',
    'X-Request-Id': '5f0c6a1e-2f7b-4c1e-9d7e-3b1f0a2c4d5e', 'Accept-Encoding': 'gzip, br',
  },
};

interface Result { calls_per_s: number; p50_ms: number; p99_ms: number; cpu_us_per_call: number; machine_busy_cores: number }

function summarize(lat: Float64Array, ms: number, cpuS: number, busyS: number): Result {
  const s = lat.slice().sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return {
    calls_per_s: Math.round((lat.length / ms) * 1000),
    p50_ms: +q(0.5).toFixed(3),
    p99_ms: +q(0.99).toFixed(3),
    cpu_us_per_call: +((cpuS * 1e6) / lat.length).toFixed(1),
    machine_busy_cores: +(busyS / (ms / 1000)).toFixed(2),
  };
}

/** Runs `calls` calls of `one` with `concurrency` workers; returns latencies, wall time and the CPU of this process tree. */
async function drive(calls: number, concurrency: number, one: (worker: number) => Promise<unknown>): Promise<Result> {
  const lat = new Float64Array(calls);
  let next = 0;
  const tree = { bench: [process.pid] };
  const cpu0 = cpuSeconds(tree).bench;
  const m0 = machineCpuSeconds().busy;
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
  const ms = performance.now() - t0;
  return summarize(lat, ms, cpuSeconds(tree).bench - cpu0, machineCpuSeconds().busy - m0);
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
let echo = spawn(process.execPath, [here('./echo-server.ts'), join(dir, 'echo.sock'), '0'], { stdio: ['pipe', 'pipe', 'inherit'] });
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
  const { encodeHookResult } = await import('../src/core/protocol/codec.ts');
  const replyBytes = encodeHookResult('on_request', { ok: true, h: { 'X-User': 'demo' } }).length;
  echo.kill();
  await once(echo, 'exit');
  echo = spawn(process.execPath, [here('./echo-server.ts'), join(dir, 'echo.sock'), String(replyBytes)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(echo.stdout!, 'data');
  const loadBefore = loadavg().map((x) => +x.toFixed(2));

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
  echo.stdin?.end();

  const loadAfter = loadavg().map((x) => +x.toFixed(2));
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, mem_gib: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, loadavg_before: loadBefore, loadavg_after: loadAfter };
  console.log(`\non_request through the pool (${POOL} connections) to examples/plugins/auth.ts vs. echo floor`);
  console.log(`request frame ${requestFrame.length} B, reply ${replyBytes} B; ${machine.cpus} cores, ${machine.cpu}, node ${machine.node}; load average ${loadBefore.join(' ')}\n`);
  const side = (r: Result, w: number) => `${String(r.calls_per_s).padStart(w)}  ${r.p50_ms.toFixed(3).padStart(6)}  ${r.p99_ms.toFixed(3).padStart(6)}  ${r.cpu_us_per_call.toFixed(1).padStart(7)}`;
  console.log('concurrency  calls    hookgate calls/s  p50 ms  p99 ms  µs CPU | floor calls/s  p50 ms  p99 ms  µs CPU | hookgate/floor');
  for (const r of rows) {
    console.log(`${String(r.concurrency).padStart(11)}  ${String(r.calls).padEnd(7)}  ${side(r.hookgate, 16)} | ${side(r.floor, 13)} | ${r.ratio.toFixed(3).padStart(14)}`);
  }
  console.log('µs CPU: user+sys per call of this process and its children (plugin, echo server); the other side is idle meanwhile');
  const c64 = rows.find((r) => r.concurrency === 64);
  if (c64) {
    console.log(`\nhookgate/floor at concurrency 64: ${c64.ratio.toFixed(3)}  (target >= ${TARGET_C64}: ${c64.ratio >= TARGET_C64 ? 'met' : 'NOT met'})`);
    console.log(`  (${c64.hookgate.calls_per_s} vs ${c64.floor.calls_per_s} calls/s; CPU per call ${c64.hookgate.cpu_us_per_call} vs ${c64.floor.cpu_us_per_call} µs, ratio ${(c64.hookgate.cpu_us_per_call / c64.floor.cpu_us_per_call).toFixed(2)}; load average after ${loadAfter.join(' ')})`);
  }
  mkdirSync(here('./results'), { recursive: true });
  const file = here(`./results/hooks-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const target = { ratio_at_c64: TARGET_C64, met: c64 ? c64.ratio >= TARGET_C64 : undefined };
  writeFileSync(file, JSON.stringify({ bench: 'hooks', date: new Date().toISOString(), machine, pool: POOL, cpu: 'user+sys of this process and its children over the calls', target, rows }, null, 2) + '\n');
  console.log(`results written to ${file}`);
} finally {
  echo.kill();
  await manager.stop();
  rmSync(dir, { recursive: true, force: true });
}
