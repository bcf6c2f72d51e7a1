/**
 * `npm run bench:edge`: the edge worker's cost, and its hook's. The BUILT
 * worker (dist/worker/worker.js, what wrangler deploys) runs in workerd
 * itself (the binary of the npm `workerd` package, configured here with a
 * generated config.capnp; not `wrangler dev`, a development proxy) and
 * proxies to the same upstream as `npm run bench` (bench/upstream.ts, a
 * 100-byte JSON body over keep-alive). In ONE run, with wrk, it measures
 * req/s, p50 and p99 of
 *
 *   (a) workerd -> upstream, a route without hooks (/plain/*),
 *   (b) workerd -> upstream, a route with an on_request auth hook
 *       (/hooked/*, examples/plugins/auth.ts) called through a runner
 *       (`hookgate serve` with `runner.listen`) over HTTP,
 *   (c) the upstream directly, for reference,
 *
 * each at concurrency 1 (wrk -t1 -c1: latency) and at a moderate
 * concurrency (-t2 -c32: throughput), after a warmup per case. It prints a
 * table and the hook's added latency, p50(b) - p50(a) and p99(b) - p99(a)
 * at each concurrency, against the goal: at most 0.5 ms at p50,
 * concurrency 1. Results go to bench/results/edge-<time>.json.
 *
 * Every request of every case carries the same Authorization header, so
 * the hook is the only difference between (a) and (b). The machine is
 * noisy (2 cores shared by wrk, workerd, the runner, its plugin and the
 * upstream): compare the cases of one run, not numbers across runs; the
 * load average is printed with them.
 *
 * The worker is rebuilt (`node scripts/build-worker.ts`) when the bundle is
 * missing or older than src/ or wrangler.toml, and copied into the temp dir
 * so a rebuild during the run does not change what is measured. Every
 * process started here is stopped at the end, on failure and on Ctrl-C
 * too (bench/lib.ts, with its watchdog). Any non-2xx response or socket
 * error in any run fails the bench.
 *
 * Options (or env): --duration 8s (BENCH_DURATION), --warmup 2s
 * (BENCH_WARMUP), --connections 32 and --threads 2 (BENCH_CONNECTIONS,
 * BENCH_THREADS: the throughput load), --rounds 1 (BENCH_ROUNDS; >1 takes
 * the median of each number), --build / --no-build (always / never
 * rebuild the worker; default: when stale).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import {
  LOAD_OPTIONS, ROOT, assertRunning, describeMachine, elapsedSeconds, firstLine, freePort, get, loadNow, loadOptions, resultsFile, runBench,
  seconds, setupTools, shellArgs, start, startHookgate, startService, tempDir, until, which, wrk, wrkArgs, writeJson,
  type Proc, type WrkLoad, type WrkRun,
} from './lib.ts';

// ---------------------------------------------------------------- options

const { values: argv } = parseArgs({
  allowNegative: true,
  options: {
    build: { type: 'boolean' },
    ...LOAD_OPTIONS,
  },
});
const opt = { build: argv.build, ...loadOptions(argv, { duration: '8s', warmup: '2s', connections: 32, threads: 2, rounds: 1 }) };

const TOKEN = 'bench-token';
const USER = 'bench';
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const GOAL_P50_MS = 0.5;
const WORKER = join(ROOT, 'dist/worker/worker.js');

/** The two loads: concurrency 1 for latency (the goal's), and the throughput one. */
const LEVELS = [
  { threads: 1, connections: 1 },
  { threads: opt.threads, connections: opt.connections },
];
const loadOf = (level: (typeof LEVELS)[number], duration: string): WrkLoad => ({ ...level, duration, headers: [AUTH_HEADER] });

// ------------------------------------------------------------ the worker

/** The newest modification time (ms) of a file under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) t = Math.max(t, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return t;
}

/**
 * Builds the worker bundle when `force`, or (force undefined) when it is
 * missing or older than src/ or wrangler.toml. Throws with the build's
 * output when the build fails. Returns whether it built.
 */
function ensureWorker(force: boolean | undefined): boolean {
  const stale = () => !existsSync(WORKER) || statSync(WORKER).mtimeMs < Math.max(newest(join(ROOT, 'src')), statSync(join(ROOT, 'wrangler.toml')).mtimeMs);
  if (force === false || (force === undefined && !stale())) {
    if (!existsSync(WORKER)) throw new Error(`${WORKER} does not exist: run \`npm run build:worker\` (or drop --no-build)`);
    return false;
  }
  // wrangler's launcher runs `node` from PATH: put this node first, as `npm run` does.
  const PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build-worker.ts')], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, PATH } });
  if (r.status !== 0) throw new Error(`building the worker failed (node scripts/build-worker.ts, exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  process.stderr.write(r.stdout);
  return true;
}

/** A top-level setting of wrangler.toml as deployed (a JSON-compatible TOML value), else `dflt`. */
function wranglerSetting<T>(name: string, dflt: T): T {
  const raw = new RegExp(`^${name}\\s*=\\s*(.+?)\\s*(#.*)?$`, 'm').exec(readFileSync(join(ROOT, 'wrangler.toml'), 'utf8'))?.[1];
  if (raw === undefined) return dflt;
  try {
    return JSON.parse(raw) as T;
  } catch {
    throw new Error(`wrangler.toml: cannot read ${name} = ${raw} (expected a double-quoted string or an array of them)`);
  }
}

/**
 * workerd from the npm package: its own resolution of the platform
 * binary (`require('workerd').default`), else the package's `bin`.
 */
function workerdBinary(): { path: string; pkg: string } {
  const req = createRequire(join(ROOT, 'package.json'));
  const pkgFile = req.resolve('workerd/package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string; bin?: Record<string, string> };
  let path: string;
  try {
    path = (req('workerd') as { default: string }).default;
  } catch {
    path = join(dirname(pkgFile), pkg.bin?.workerd ?? 'bin/workerd');
  }
  if (!existsSync(path)) throw new Error(`workerd ${pkg.version}: no binary at ${path} (reinstall without --no-optional)`);
  return { path, pkg: pkg.version };
}

const capnpText = (s: string) => JSON.stringify(s);

/**
 * The workerd config: one worker service (the bundle as an ES module, the
 * settings as text bindings), its global fetch through a network service
 * that may reach local addresses (the runner and the upstream are on
 * 127.0.0.1; the default "internet" service allows public ones only), and
 * an HTTP socket. The RunnerLink Durable Object class is exported but gets
 * no namespace: HOOK_TRANSPORT=http does not use it, and workerd accepts
 * an exported class without one. No cache service: the Cache API (the
 * worker's fallback copy of the routing state) fails, and the worker logs
 * that at warn when it saves a new state.
 */
function workerdConfig(p: { port: number; module: string; compatibilityDate: string; flags: string[]; bindings: Record<string, string> }): string {
  const bindings = Object.entries(p.bindings).map(([k, v]) => `    (name = ${capnpText(k)}, text = ${capnpText(v)}),`);
  return `# generated by bench/edge.ts
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "hookgate", worker = .hookgate),
    (name = "local-network", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:${p.port}", http = (), service = "hookgate"),
  ],
);

const hookgate :Workerd.Worker = (
  # embed paths are relative to this file (an absolute one is looked up in the import path)
  modules = [ (name = "worker.js", esModule = embed ${capnpText(p.module)}) ],
  compatibilityDate = ${capnpText(p.compatibilityDate)},
  compatibilityFlags = [${p.flags.map(capnpText).join(', ')}],
  bindings = [
${bindings.join('\n')}
  ],
  globalOutbound = "local-network",
);
`;
}

// ------------------------------------------------------------- the runner

function runnerConfig(upstreamPort: number, secret: string): object {
  const balancer = { targets: [`127.0.0.1:${upstreamPort}`] };
  return {
    gateway: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    runner: { listen: '127.0.0.1:0', keys: [{ id: 'bench', secret }] },
    routes: [
      { id: 'plain', match: { path: '/plain/*' }, balancer, action: 'up' },
      { id: 'hooked', match: { path: '/hooked/*' }, plugins: ['auth'], balancer, action: 'up' },
    ],
    actions: { up: { type: 'proxy', upstream: 'http://{target}' } },
    plugins: { auth: { path: join(ROOT, 'examples/plugins/auth.ts'), env: { HOOKGATE_AUTH_TOKENS: `${TOKEN}:${USER}` } } },
  };
}

// ------------------------------------------------------------------ cases

interface Case {
  id: 'a' | 'b' | 'c';
  name: string;
  url: string;
}

/**
 * Before any load: both routes answer with the upstream's body, the hooked
 * one only with the token (401 without), and the user the hook adds
 * reaches the upstream. The first requests also load the worker's state.
 */
async function sanity(edge: string, upstream: string): Promise<void> {
  const body = (await get(`${upstream}/x`)).body;
  const plain = await until(`GET ${edge}/plain/x = 200`, 15_000, async () => {
    const r = await get(`${edge}/plain/x`);
    return r.status === 200 ? r : undefined;
  });
  const expect = (what: string, ok: boolean, got: unknown) => {
    if (!ok) throw new Error(`sanity: ${what}; got ${JSON.stringify(got)}`);
  };
  expect(`GET ${edge}/plain/x should answer with the upstream's body ${JSON.stringify(body)}`, plain.body === body, plain.body);
  const none = await get(`${edge}/hooked/x`);
  expect(`GET ${edge}/hooked/x without a token should get 401 from the auth hook`, none.status === 401, none);
  const auth = { authorization: `Bearer ${TOKEN}` };
  const ok = await get(`${edge}/hooked/x`, auth);
  expect(`GET ${edge}/hooked/x with the token should get 200 and the upstream's body`, ok.status === 200 && ok.body === body, ok);
  const who = await get(`${edge}/hooked/__whoami`, auth);
  expect(`the upstream should see X-User: ${USER} through /hooked/`, who.status === 200 && who.body === USER, who);
}

interface Summary {
  rps: number;
  p50_ms: number;
  p99_ms: number;
}

function middle(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Each number's median over the rounds (one round: the run itself). */
function summarize(runs: WrkRun[]): Summary {
  return {
    rps: Math.round(middle(runs.map((r) => r.rps))),
    p50_ms: +middle(runs.map((r) => r.p50_ms)).toFixed(3),
    p99_ms: +middle(runs.map((r) => r.p99_ms)).toFixed(3),
  };
}

// -------------------------------------------------------------------- main

async function main(): Promise<void> {
  if (!which('wrk')) setupTools();
  const built = ensureWorker(opt.build);
  const workerd = workerdBinary();
  const machine = describeMachine({ workerd: `${firstLine(workerd.path, ['--version']).replace(/^workerd\s+/, '')} (npm workerd ${workerd.pkg})` });
  const dir = tempDir('hookgate-edgebench-');

  // What workerd runs: a copy, so a concurrent rebuild of dist/ cannot change it mid-run.
  copyFileSync(WORKER, join(dir, 'worker.js'));
  const code = readFileSync(join(dir, 'worker.js'));
  const bundle = {
    file: 'dist/worker/worker.js',
    built_now: built,
    bytes: code.length,
    gzip_bytes: gzipSync(code, { level: 9 }).length,
    sha256: createHash('sha256').update(code).digest('hex'),
  };

  const upstream = await startService('upstream', './upstream.ts');
  const secret = randomBytes(24).toString('base64url');
  const runner = await startHookgate('runner', runnerConfig(upstream.port, secret), dir);
  if (!runner.runner) throw new Error('the runner logged no "runner listening" URL');

  const compatibilityDate = wranglerSetting('compatibility_date', '2026-10-01');
  const flags = wranglerSetting<string[]>('compatibility_flags', []);
  const bindings = { RUNNER_URL: runner.runner, RUNNER_KEY: secret, HOOK_TRANSPORT: 'http', STATE_TTL_MS: '2000', LOG_LEVEL: 'warn' };
  const port = await freePort();
  const capnp = (key: string) => workerdConfig({ port, module: 'worker.js', compatibilityDate, flags, bindings: { ...bindings, RUNNER_KEY: key } });
  writeFileSync(join(dir, 'config.capnp'), capnp(secret));
  const wd = start('workerd', workerd.path, ['serve', 'config.capnp'], { cwd: dir });
  const edge = `http://127.0.0.1:${port}`;
  await until(`workerd: listening on ${edge}`, 30_000, async () => {
    assertRunning([wd], 'at startup');
    await fetch(`${edge}/`, { signal: AbortSignal.timeout(2000) }).then((r) => r.body?.cancel());
    return true;
  });
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
  await sanity(edge, upstreamUrl);

  const cases: Case[] = [
    { id: 'a', name: 'workerd, no hook (/plain)', url: `${edge}/plain/items/42` },
    { id: 'b', name: 'workerd + on_request hook (/hooked)', url: `${edge}/hooked/items/42` },
    { id: 'c', name: 'upstream directly', url: `${upstreamUrl}/items/42` },
  ];
  const procs: Proc[] = [wd, runner.proc, upstream.proc];
  const cmd = (level: (typeof LEVELS)[number]) => `wrk ${shellArgs(wrkArgs(loadOf(level, opt.duration), '<url>'))}`;
  console.log(`\nedge bench: ${machine.cores} cores (${machine.cpu}), node ${machine.node}, workerd ${machine.workerd}, ${machine.wrk}`);
  console.log(`worker: ${bundle.file} (${(bundle.bytes / 1024).toFixed(1)} KiB, ${(bundle.gzip_bytes / 1024).toFixed(1)} KiB gzipped${built ? ', built now' : ''}), compatibility date ${compatibilityDate}, HOOK_TRANSPORT=http, runner ${runner.runner}`);
  console.log(`load per case: warmup ${opt.warmup}, then ${LEVELS.map(cmd).join('  and  ')}; ${opt.rounds} round(s)`);
  console.log(`load average before: ${machine.loadavg_before.join(' ')}\n`);

  // What workerd printed: the worker logs at warn and above only (hook or state failures).
  const startupLog = [...wd.lines];
  const logged: string[] = [];
  wd.onLine.add((l) => logged.length < 50 && logged.push(l));
  const runs = LEVELS.map(() => new Map<Case['id'], WrkRun[]>(cases.map((c) => [c.id, []])));
  for (let round = 0; round < opt.rounds; round++) {
    for (const [li, level] of LEVELS.entries()) {
      // Each round starts at another case, so slow drift of the machine does not always favor the same one.
      for (const c of cases.map((_, i) => cases[(i + round) % cases.length])) {
        const label = `(${c.id}) ${c.name}, -c${level.connections}`;
        if (seconds(opt.warmup) > 0) await wrk(`${label} warmup`, c.url, loadOf(level, opt.warmup));
        const r = await wrk(label, c.url, loadOf(level, opt.duration));
        runs[li].get(c.id)!.push(r);
        process.stderr.write(`  ${opt.rounds > 1 ? `round ${round + 1}: ` : ''}${label}: ${Math.round(r.rps)} req/s, p50 ${r.p50_ms} ms\n`);
      }
    }
  }
  assertRunning(procs, 'during the bench');
  const loadAfter = loadNow();

  const results = LEVELS.flatMap((level, li) =>
    cases.map((c) => ({ case: c.id, name: c.name, url: c.url, concurrency: level.connections, threads: level.threads, ...summarize(runs[li].get(c.id)!), runs: runs[li].get(c.id)! })),
  );
  const at = (id: Case['id'], li: number) => results.find((r) => r.case === id && r.concurrency === LEVELS[li].connections && r.threads === LEVELS[li].threads)!;
  const diff = (x: number, y: number) => +(x - y).toFixed(3);
  const added = LEVELS.map((level, li) => ({
    concurrency: level.connections,
    p50_ms: diff(at('b', li).p50_ms, at('a', li).p50_ms),
    p99_ms: diff(at('b', li).p99_ms, at('a', li).p99_ms),
    rps_ratio: +(at('b', li).rps / at('a', li).rps).toFixed(3),
  }));
  const met = added[0].p50_ms <= GOAL_P50_MS;

  console.log('case                                      conc      req/s    p50 ms    p99 ms');
  for (const r of results) {
    console.log(`(${r.case}) ${r.name.padEnd(36)} ${String(r.concurrency).padStart(5)} ${String(r.rps).padStart(10)} ${r.p50_ms.toFixed(3).padStart(9)} ${r.p99_ms.toFixed(3).padStart(9)}`);
  }
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(3)} ms`;
  console.log(`\nthe hook's added latency, (b) - (a):`);
  for (const a of added) {
    console.log(`  concurrency ${String(a.concurrency).padStart(2)}: p50 ${signed(a.p50_ms)}, p99 ${signed(a.p99_ms)}  (throughput b/a ${a.rps_ratio.toFixed(3)})`);
  }
  console.log(`goal: the hook adds at most ${GOAL_P50_MS} ms at p50, concurrency 1: ${met ? 'met' : 'NOT met'} (${signed(added[0].p50_ms)})`);
  console.log(`load average after: ${loadAfter.join(' ')}`);
  if (logged.length) console.log(`\nworkerd logged ${logged.length}${logged.length === 50 ? '+' : ''} line(s) during the load:\n${logged.slice(0, 10).map((l) => `    workerd| ${l}`).join('\n')}`);

  const { file, stamp } = resultsFile('edge');
  const hidden = '<random, 32 characters>';
  writeJson(file, {
    bench: 'edge',
    date: stamp,
    machine: { ...machine, loadavg_after: loadAfter },
    wrk: {
      levels: LEVELS.map((level) => ({ ...level, command: cmd(level) })),
      warmup_then_duration: [opt.warmup, opt.duration],
      header: AUTH_HEADER,
      latency_percentiles: '--latency; timeout 2s (wrk default)',
    },
    rounds: opt.rounds,
    worker: { ...bundle, runtime: `workerd serve config.capnp (${workerd.path})`, compatibility_date: compatibilityDate, compatibility_flags: flags, config: capnp(hidden) },
    runner: { command: 'node node-runner/cli/cli.ts serve --config <file>', config: runnerConfig(upstream.port, hidden) },
    upstream: { body_bytes: 100, server: 'bench/upstream.ts (node:http, keep-alive)' },
    cases: results,
    added_latency: added,
    goal: { hook_p50_ms_at_concurrency_1: GOAL_P50_MS, met },
    workerd_log: { at_startup: startupLog, during_load: logged },
    run_seconds: elapsedSeconds(),
  });
  console.log(`\nresults written to ${file}`);
  console.log(`whole run took ${elapsedSeconds()} s`);
}

await runBench(main);
