/**
 * `npm run faults`: hookgate's own fault suite (issue 17), bounded (about
 * two minutes), on loopback, stopping everything it started. Each case
 * runs a real `hookgate serve` (with its keeper and real plugins), injects
 * one fault and measures what a user would see:
 *
 *   kill-plugin   an auth plugin SIGKILLed 3 times while unauthenticated
 *                 requests keep coming: how many got through (fail-open,
 *                 must be 0), and the status counts;
 *   kill-runner   the runner SIGKILLed and started again on the same state
 *                 dir: were its plugins adopted (same pids), how long until
 *                 /readyz said 200;
 *   crash-loop    a plugin that says ready and crashes, for 35 s: how many
 *                 starts and the restart delays (backoff must grow);
 *   stdout-flood  a healthy route's req/s with and without a plugin that
 *                 floods its stdout (must keep >= 50 %), keeper and runner
 *                 RSS, runner log lines a second.
 *
 *   config-source the config source down for 10 s (the runner keeps serving),
 *                 back with a change (how long until it applies), then
 *                 restarted once more with another change (must apply
 *                 within 5 s: the put reset the reconnect backoff).
 *
 *   soak          five minutes (`--soak-seconds N` to change) of steady traffic
 *                 through an auth plugin (allowed and denied requests) with
 *                 a config reload (SIGHUP) every minute: RSS of the runner,
 *                 keeper and plugin and the runner's and keeper's open fds
 *                 from the first minute to the end (RSS must grow < 25 %,
 *                 fds at the end no higher than 2 above the first half's
 *                 highest), no denied request let through, no
 *                 allowed one failed, and no process left after the stop.
 *
 * It prints the figures as a table and writes them
 * to bench/results/faults-<time>.json. `--cases a,b` runs some of them.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { writeFileSync } from 'node:fs';
import { cpuSeconds } from './cpu.ts';
import { describeMachine, freePort, get, here, loadNow, resultsFile, ROOT, runBench, setupTools, start, startHookgate, stop, tempDir, until, waitFor, wrk, writeJson, type Proc } from './lib.ts';

const FIXTURE = join(ROOT, 'test/fixtures/plugins/configurable.ts');
const AUTH = join(ROOT, 'examples/plugins/auth.ts');
const TOKEN = 'faults-token';

type Figures = Record<string, number | string | boolean | number[]>;
interface CaseResult {
  case: string;
  pass: boolean;
  figures: Figures;
}

/** Resident set size of `pid`, in MiB (0 when it is gone). */
function rssMiB(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return +(Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024).toFixed(1);
  } catch {
    return 0;
  }
}

type Rec = Record<string, unknown>;

/** Calls `fn` for every JSON log record `proc` prints from now on. */
function onRecord(proc: Proc, fn: (r: Rec) => void): () => void {
  const f = (line: string) => {
    try {
      fn(JSON.parse(line) as Rec);
    } catch {
      // not a record
    }
  };
  proc.onLine.add(f);
  return () => proc.onLine.delete(f);
}

/**
 * Every JSON log record `proc` printed (those still in its last lines) and
 * will print: a live array.
 */
function records(proc: Proc): Rec[] {
  const all: Rec[] = [];
  for (const l of proc.lines) {
    try {
      all.push(JSON.parse(l) as Rec);
    } catch {
      // not a record
    }
  }
  onRecord(proc, (r) => all.push(r));
  return all;
}

/** One GET, its status (0 for a failed connection). */
function status(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * `clients` loops of unauthenticated GETs of `url` until the returned stop is called; stop resolves with how many
 * requests got each status (0: a failed connection).
 */
function statusLoad(url: string, clients: number): () => Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  let stopped = false;
  const loops = Array.from({ length: clients }, async () => {
    while (!stopped) {
      const s = await status(url);
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
  });
  return async () => {
    stopped = true;
    await Promise.all(loops);
    return counts;
  };
}

const base = (extra: Record<string, unknown>) => ({ gateway: { listen: '127.0.0.1:0' }, admin: { listen: '127.0.0.1:0' }, ...extra });

async function killPlugin(dir: string): Promise<CaseResult> {
  const hg = await startHookgate('kill-plugin', base({
    routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'secret\n' } }],
    plugins: { auth: { path: AUTH, env: { HOOKGATE_AUTH_TOKENS: `${TOKEN}:alice` } } },
  }), dir);
  const log = records(hg.proc);
  const stopLoad = statusLoad(`${hg.gateway}/api/x`, 8);
  const kills: number[] = [];
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const pid = Number([...log].reverse().find((r) => r.msg === 'plugin started' && r.plugin === 'auth')?.pid);
    const readies = log.filter((r) => r.msg === 'plugin ready').length;
    process.kill(pid, 'SIGKILL');
    kills.push(pid);
    await until('the auth plugin to be back', 60_000, async () => (log.filter((r) => r.msg === 'plugin ready').length > readies ? true : undefined));
  }
  await new Promise((r) => setTimeout(r, 1000));
  const counts = await stopLoad();
  const authorized = await new Promise<number>((resolve) => {
    const req = httpRequest(`${hg.gateway}/api/x`, { headers: { authorization: `Bearer ${TOKEN}` } }, (res) => (res.resume(), resolve(res.statusCode ?? 0)));
    req.on('error', () => resolve(0));
    req.end();
  });
  await stop(hg.proc);
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const failOpen = counts.get(200) ?? 0;
  return {
    case: 'kill-plugin',
    pass: failOpen === 0 && authorized === 200,
    figures: { requests: total, fail_open: failOpen, status_401: counts.get(401) ?? 0, status_503: counts.get(503) ?? 0, other: total - failOpen - (counts.get(401) ?? 0) - (counts.get(503) ?? 0), plugin_kills: 3, authorized_after: authorized },
  };
}

async function killRunner(dir: string): Promise<CaseResult> {
  const config = base({
    routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'secret\n' } }],
    plugins: { auth: { path: AUTH, env: { HOOKGATE_AUTH_TOKENS: `${TOKEN}:alice` } } },
  });
  const first = await startHookgate('kill-runner', config, dir);
  const pid = Number(records(first.proc).find((r) => r.msg === 'plugin started')?.pid);
  first.proc.child.kill('SIGKILL');
  await first.proc.exited;
  const t0 = performance.now();
  const second = await startHookgate('kill-runner', config, dir);
  const readyMs = Math.round(performance.now() - t0);
  const adopted = records(second.proc).find((r) => r.msg === 'plugin adopted');
  const res = await get(`${second.gateway}/api/x`, { authorization: `Bearer ${TOKEN}` });
  await stop(second.proc);
  const same = Number(adopted?.pid) === pid;
  return { case: 'kill-runner', pass: same && res.status === 200, figures: { plugin_adopted: same, same_pid: same, ready_after_restart_ms: readyMs, authorized_after: res.status } };
}

async function crashLoop(dir: string): Promise<CaseResult> {
  // Never ready for long, so not started through startHookgate (which waits for /readyz 200).
  const file = join(dir, 'crash-loop.json5');
  writeFileSync(file, JSON.stringify(base({
    routes: [{ id: 'plain', match: { path: '/plain/*' }, action: { type: 'static', body: 'ok\n' } }],
    plugins: { crashy: { path: FIXTURE, autostart: true, env: { FIXTURE_NAME: 'crashy', FIXTURE_START: 'ready-crash', FIXTURE_HOOKS: '' } } },
  })));
  const proc = start('crash-loop', process.execPath, [join(ROOT, 'node-runner/cli/cli.ts'), 'serve', '--config', file, '--state-dir', join(dir, 'state')], {
    env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info', HOOKGATE_LOG_FORMAT: 'json' },
  });
  const recs = records(proc);
  await waitFor(proc, 'gateway listening', (l) => (l.includes('gateway listening') ? true : undefined), 30_000);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 35_000));
  const starts = recs.filter((r) => r.msg === 'plugin started' && r.plugin === 'crashy').length;
  const delays = recs.filter((r) => r.msg === 'plugin will be restarted' && r.plugin === 'crashy').map((r) => Number(r.delay_ms));
  const reason = String(recs.find((r) => r.msg === 'plugin will be restarted')?.reason ?? '');
  await stop(proc);
  const grows = delays.every((d, i) => i === 0 || d >= delays[i - 1]) && delays.length > 1 && delays.at(-1)! > delays[0];
  return { case: 'crash-loop', pass: grows && starts <= 8, figures: { seconds: Math.round((performance.now() - t0) / 1000), starts, restart_delays_ms: delays, reason_logged: reason !== '' } };
}

async function stdoutFlood(dir: string): Promise<CaseResult> {
  const load = { threads: 2, connections: 16, duration: '3s', headers: [] };
  const routes = [
    { id: 'plain', match: { path: '/plain/*' }, action: { type: 'static', body: 'ok\n' } },
    { id: 'noisy', match: { path: '/noisy/*' }, plugins: ['noisy'], action: { type: 'static', body: 'noisy\n' } },
  ];
  // Both up at once, measured in turns (quiet, flooded, quiet, ...): the machine is shared and noisy.
  const quiet = await startHookgate('flood-baseline', base({ routes, plugins: { noisy: { path: FIXTURE, env: { FIXTURE_NAME: 'noisy' } } } }), dir);
  const loud = await startHookgate('flood', base({ routes, plugins: { noisy: { path: FIXTURE, env: { FIXTURE_NAME: 'noisy', FIXTURE_FLOOD: 'forever' } } } }), dir);
  const loudLog = records(loud.proc);
  const keeperPid = Number(loudLog.find((r) => r.msg === 'keeper started')?.pid);
  const pluginPid = Number(loudLog.find((r) => r.msg === 'plugin started' && r.plugin === 'noisy')?.pid);
  await wrk('warmup', `${quiet.gateway}/plain/x`, { ...load, duration: '1s' });
  await wrk('warmup', `${loud.gateway}/plain/x`, { ...load, duration: '1s' });
  let logLines = 0;
  let floodSecs = 0;
  const off = onRecord(loud.proc, () => logLines++);
  const counting = performance.now();
  // The serve process's tree holds the keeper, whose tree holds the plugin.
  const groups = { all: [loud.proc.child.pid!], keeper: [keeperPid], plugin: [pluginPid] };
  const used = { all: 0, keeper: 0, plugin: 0 };
  const rounds: Array<{ quiet: number; flooded: number; p99_quiet: number; p99_flooded: number }> = [];
  for (let i = 0; i < 3; i++) {
    const q = await wrk('baseline', `${quiet.gateway}/plain/x`, load);
    const cpu0 = cpuSeconds(groups);
    const t0 = performance.now();
    const f = await wrk('flooded', `${loud.gateway}/plain/x`, load);
    floodSecs += (performance.now() - t0) / 1000;
    const cpu1 = cpuSeconds(groups);
    for (const k of Object.keys(used) as Array<keyof typeof used>) used[k] += cpu1[k] - cpu0[k];
    rounds.push({ quiet: q.rps, flooded: f.rps, p99_quiet: q.p99_ms, p99_flooded: f.p99_ms });
  }
  off();
  const countedSecs = (performance.now() - counting) / 1000;
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const kept = rounds.map((r) => r.flooded / r.quiet);
  const figures: Figures = {
    rps_baseline: Math.round(med(rounds.map((r) => r.quiet))),
    rps_flooded: Math.round(med(rounds.map((r) => r.flooded))),
    kept_pct_per_round: kept.map((k) => Math.round(100 * k)),
    kept_pct: Math.round(100 * med(kept)),
    p99_ms_baseline: med(rounds.map((r) => r.p99_quiet)),
    p99_ms_flooded: med(rounds.map((r) => r.p99_flooded)),
    runner_log_lines_per_s: Math.round(logLines / countedSecs),
    cores_runner: +((used.all - used.keeper) / floodSecs).toFixed(2),
    cores_keeper: +((used.keeper - used.plugin) / floodSecs).toFixed(2),
    cores_plugin: +(used.plugin / floodSecs).toFixed(2),
    keeper_rss_mib: rssMiB(keeperPid),
    runner_rss_mib: rssMiB(loud.proc.child.pid),
  };
  await stop(loud.proc);
  await stop(quiet.proc);
  return { case: 'stdout-flood', pass: med(kept) >= 0.5 && Number(figures.keeper_rss_mib) < 200, figures };
}

/** `hookgate config-server` serving `routes` (one static route whose body says the version) on `port`. */
async function startSource(dir: string, port: number, body: string): Promise<Proc> {
  const file = join(dir, 'source.json5');
  writeFileSync(file, JSON.stringify({ routes: [{ id: 'v', match: { path: '/v' }, action: { type: 'static', body } }] }));
  const p = start('config-server', process.execPath, [join(ROOT, 'node-runner/cli/cli.ts'), 'config-server', '--config', file, '--listen', `127.0.0.1:${port}`, '--key-env', 'FAULTS_CONFIG_KEY'], {
    env: { ...process.env, FAULTS_CONFIG_KEY: CONFIG_KEY, HOOKGATE_LOG_FORMAT: 'json' },
  });
  await waitFor(p, 'config server listening', (l) => (l.includes('config server listening') ? true : undefined), 30_000);
  return p;
}

const CONFIG_KEY = 'faults-config-key-0123456789abcdef';

async function configSource(dir: string): Promise<CaseResult> {
  const port = await freePort();
  let source = await startSource(dir, port, 'v1');
  const bootstrap = join(dir, 'bootstrap.json5');
  writeFileSync(bootstrap, JSON.stringify(base({})));
  const runner = start('stream-runner', process.execPath, [join(ROOT, 'node-runner/cli/cli.ts'), 'serve', '--config-url', `http://127.0.0.1:${port}/v1/stream`, '--config-key-env', 'FAULTS_CONFIG_KEY', '--config', bootstrap, '--state-dir', join(dir, 'state')], {
    env: { ...process.env, FAULTS_CONFIG_KEY: CONFIG_KEY, HOOKGATE_LOG_FORMAT: 'json' },
  });
  const gateway = await waitFor(runner, 'gateway listening', (l) => (l.includes('gateway listening') ? String(JSON.parse(l).url) : undefined), 30_000);
  const body = async () => (await get(`${gateway}/v`).catch(() => ({ body: '', status: 0 }))).body;
  await until('v1 to be served', 30_000, async () => ((await body()) === 'v1' ? true : undefined));

  // Down for 10 s: the runner keeps serving v1 and backs off.
  await stop(source);
  const served: string[] = [];
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    served.push(await body());
  }
  // Back with v2: the first reconnect waits out the backoff of the outage.
  let t0 = performance.now();
  source = await startSource(dir, port, 'v2');
  await until('v2 to be applied', 60_000, async () => ((await body()) === 'v2' ? true : undefined));
  const firstBackMs = Math.round(performance.now() - t0);
  // A second short outage right after (a source restarted to change it): the put reset the backoff.
  await stop(source);
  t0 = performance.now();
  source = await startSource(dir, port, 'v3');
  await until('v3 to be applied', 60_000, async () => ((await body()) === 'v3' ? true : undefined));
  const againMs = Math.round(performance.now() - t0);
  await stop(runner);
  await stop(source);
  const keptServing = served.every((b) => b === 'v1');
  return { case: 'config-source', pass: keptServing && againMs <= 5000, figures: { down_s: 10, served_while_down: keptServing, applied_after_back_ms: firstBackMs, applied_after_restart_ms: againMs } };
}

/** Open file descriptors of `pid` (0 when it is gone). */
function fds(pid: number | undefined): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** Whether process `pid` still exists (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function soakSeconds(): number {
  const i = process.argv.indexOf('--soak-seconds');
  const n = i > 0 ? Number(process.argv[i + 1]) : 300;
  if (!Number.isInteger(n) || n < 60) throw new Error(`--soak-seconds wants a whole number of seconds, at least 60 (got ${process.argv[i + 1]})`);
  return n;
}

async function soak(dir: string): Promise<CaseResult> {
  const total = soakSeconds();
  const hg = await startHookgate('soak', base({
    routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'secret\n' } }],
    plugins: { auth: { path: AUTH, env: { HOOKGATE_AUTH_TOKENS: `${TOKEN}:alice` } } },
  }), dir);
  const log = records(hg.proc);
  const runnerPid = hg.proc.child.pid!;
  const keeperPid = Number(log.find((r) => r.msg === 'keeper started')?.pid);
  const pluginPid = Number([...log].reverse().find((r) => r.msg === 'plugin started' && r.plugin === 'auth')?.pid);
  // Denied traffic beside wrk's allowed traffic: a 200 here would be a denied request let through.
  const stopDenied = statusLoad(`${hg.gateway}/api/x`, 2);
  const load = { threads: 1, connections: 8, duration: '10s', headers: [`Authorization: Bearer ${TOKEN}`] };
  const samples: Array<{ t: number; runner: number; keeper: number; plugin: number; runner_fds: number; keeper_fds: number }> = [];
  let requests = 0;
  let failed = 0;
  let reloads = 0;
  const t0 = performance.now();
  for (let chunk = 1; chunk * 10 <= total; chunk++) {
    const run = await wrk('soak', `${hg.gateway}/api/x`, load);
    requests += run.requests;
    failed += run.non_2xx_3xx + run.socket_errors.connect + run.socket_errors.read + run.socket_errors.write + run.socket_errors.timeout;
    samples.push({ t: chunk * 10, runner: rssMiB(runnerPid), keeper: rssMiB(keeperPid), plugin: rssMiB(pluginPid), runner_fds: fds(runnerPid), keeper_fds: fds(keeperPid) });
    if (chunk % 6 === 0) {
      hg.proc.child.kill('SIGHUP');
      reloads++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const denied = await stopDenied();
  const pluginNow = Number([...log].reverse().find((r) => r.msg === 'plugin started' && r.plugin === 'auth')?.pid);
  await stop(hg.proc);
  const orphans = [keeperPid, pluginPid, pluginNow].filter((pid, i, all) => all.indexOf(pid) === i && alive(pid)).length;
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  // From the first minute (warm: JIT, pools, buffers) to the last half minute.
  const first = samples.filter((s) => s.t > 30 && s.t <= 60);
  const last = samples.slice(-3);
  const at = (xs: typeof samples, k: 'runner' | 'keeper' | 'plugin' | 'runner_fds' | 'keeper_fds') => med(xs.map((s) => s[k]));
  const growth = (k: 'runner' | 'keeper' | 'plugin') => +((100 * (at(last, k) - at(first, k))) / at(first, k)).toFixed(1);
  // Sockets closing when a sample is taken (wrk's, the denied loop's, hook pool connections opened under load) make
  // the count jitter; a leak shows as the end of the run above everything the first half ever held.
  const half = samples.slice(0, samples.length >> 1);
  const flat = (k: 'runner_fds' | 'keeper_fds') => at(last, k) <= Math.max(...half.map((s) => s[k])) + 2;
  const leaked = denied.get(200) ?? 0;
  const figures: Figures = {
    seconds: Math.round(seconds),
    requests,
    rps: Math.round(requests / seconds),
    denied_requests: [...denied.values()].reduce((a, b) => a + b, 0),
    denied_let_through: leaked,
    allowed_failed: failed,
    reloads,
    runner_rss_mib: [at(first, 'runner'), at(last, 'runner')],
    runner_rss_growth_pct: growth('runner'),
    keeper_rss_mib: [at(first, 'keeper'), at(last, 'keeper')],
    keeper_rss_growth_pct: growth('keeper'),
    plugin_rss_mib: [at(first, 'plugin'), at(last, 'plugin')],
    runner_fds: [at(first, 'runner_fds'), at(last, 'runner_fds')],
    keeper_fds: [at(first, 'keeper_fds'), at(last, 'keeper_fds')],
    runner_fds_per_10s: samples.map((s) => s.runner_fds),
    runner_rss_mib_per_minute: samples.filter((s) => s.t % 60 === 0).map((s) => s.runner),
    plugin_restarted: pluginNow !== pluginPid,
    orphans,
  };
  const pass = leaked === 0 && failed === 0 && orphans === 0 && pluginNow === pluginPid &&
    Number(figures.runner_rss_growth_pct) < 25 && Number(figures.keeper_rss_growth_pct) < 25 &&
    flat('runner_fds') && flat('keeper_fds');
  return { case: 'soak', pass, figures };
}

const CASES: Record<string, (dir: string) => Promise<CaseResult>> = {
  'config-source': configSource,
  'kill-plugin': killPlugin,
  'kill-runner': killRunner,
  'crash-loop': crashLoop,
  'stdout-flood': stdoutFlood,
  soak,
};

function table(results: CaseResult[]): string {
  const rows: string[][] = [['case', 'result', 'figures']];
  for (const r of results) rows.push([r.case, r.pass ? 'pass' : 'FAIL', Object.entries(r.figures).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('/') : v}`).join(' ')]);
  const w = [0, 1].map((i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => `| ${r[0].padEnd(w[0])} | ${r[1].padEnd(w[1])} | ${r[2]} |`).join('\n');
}

await runBench(async () => {
  setupTools();
  const arg = process.argv.indexOf('--cases');
  const names = arg > 0 ? process.argv[arg + 1].split(',') : Object.keys(CASES);
  for (const n of names) if (!CASES[n]) throw new Error(`unknown case "${n}"; the cases: ${Object.keys(CASES).join(', ')}`);
  const { file, stamp } = resultsFile('faults');
  const report = { kind: 'faults', at: stamp, machine: describeMachine({}), command: `npm run faults${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`, results: [] as CaseResult[], loadavg_after: [] as number[] };
  for (const n of names) {
    process.stderr.write(`faults: ${n} ...\n`);
    const r = await CASES[n](tempDir(`hookgate-faults-${n}-`));
    report.results.push(r);
    process.stderr.write(`faults: ${n}: ${r.pass ? 'pass' : 'FAIL'} ${JSON.stringify(r.figures)}\n`);
    writeJson(file, report);
  }
  report.loadavg_after = loadNow();
  writeJson(file, report);
  process.stdout.write(`\n${table(report.results)}\n\nresults: ${file.replace(here('..'), '')}\n`);
  if (report.results.some((r) => !r.pass)) throw new Error(`BENCH FAILED: ${report.results.filter((r) => !r.pass).map((r) => r.case).join(', ')}`);
});
