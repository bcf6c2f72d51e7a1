/**
 * @module bench/startup
 * How long the CLI takes to start, the way a user runs it: `npm pack`, the
 * tarball installed into an empty folder (dependencies from the npm cache),
 * then `node_modules/.bin/hookgate` timed for `--version`, `validate` of
 * the demo config, and `serve` of the demo config until `/readyz` answers
 * 200 (the auth plugin and the pusher started and ready). Each is run
 * several times; the table shows median, min and max wall time, and the
 * goals from issue 16 (< 0.5 s, < 0.5 s, < 1.5 s). The installed bin runs on
 * the first `node` on PATH, as for a user (under `npm run`, the checkout's
 * pinned Node; the report names the version).
 *
 * `npm run bench:startup [-- --runs N]` (default 7). Writes
 * bench/results/startup-<time>.json.
 */

import { spawn, spawnSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { get, resultsFile, ROOT, runBench, tempDir, writeJson } from './lib.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '7' } } });
const RUNS = Math.max(1, Number(values.runs) || 7);

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.signal ?? `exit ${r.status}`}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** CPU seconds (user + sys) of this process's waited-for children so far (cutime + cstime, /proc/self/stat). */
function childCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / CLK_TCK;
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** Wall time and CPU time of one run of `bin args` to completion, in seconds; fails on a non-zero exit. */
function timeRun(bin: string, args: string[], cwd: string): { wall: number; cpu: number } {
  const c0 = childCpu();
  const t0 = performance.now();
  const r = spawnSync(bin, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${r.signal ?? `exit ${r.status}`}):\n${r.stderr}`);
  return { wall, cpu: childCpu() - c0 };
}

/** Seconds from spawning `serve` until /readyz is 200; then SIGTERM and wait for the exit. */
async function timeServe(bin: string, config: string, cwd: string, stateDir: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn(bin, ['serve', '--config', config, '--state-dir', stateDir], {
    cwd,
    env: { ...process.env, HOOKGATE_LOG_FORMAT: 'json', HOOKGATE_KEEPER_GRACE_MS: '2000' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  let admin = '';
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    err += c;
    const m = /"msg":"admin listening"[^\n]*"url":"([^"]+)"|"url":"([^"]+)"[^\n]*"msg":"admin listening"/.exec(err);
    if (m && !admin) admin = m[1] ?? m[2];
  });
  try {
    const deadline = t0 + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`serve exited early:\n${err.slice(-2000)}`);
      if (performance.now() > deadline) throw new Error(`serve not ready in 30 s:\n${err.slice(-2000)}`);
      if (admin) {
        const res = await get(`${admin}/readyz`).catch(() => null);
        if (res?.status === 200) return (performance.now() - t0) / 1000;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (x: number) => +x.toFixed(3);
  return { median: r(s[Math.floor(s.length / 2)]), min: r(s[0]), max: r(s[s.length - 1]), runs: s.map(r) };
};

await runBench(async () => {
  const dir = tempDir('hookgate-startup-');
  sh(process.execPath, ['scripts/build-package.ts'], ROOT);
  sh('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], ROOT);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  const app = join(dir, 'app');
  cpSync(join(ROOT, 'examples'), join(app, 'examples'), { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)], app);
  const bin = join(app, 'node_modules/.bin/hookgate');

  // The demo config on ephemeral ports, so it runs beside anything else.
  const demo = readFileSync(join(app, 'examples/demo/hookgate.json5'), 'utf8').replace(/listen: "127\.0\.0\.1:\d+"/g, 'listen: "127.0.0.1:0"');
  const config = join(app, 'examples/demo/bench.json5');
  writeFileSync(config, demo);

  const node = spawnSync('node', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const cases: Record<string, number[]> = { '--version': [], 'validate (demo config)': [], 'serve until /readyz 200 (demo config)': [] };
  const cpu: Record<string, number[]> = { '--version': [], 'validate (demo config)': [] };
  timeRun(bin, ['--version'], app); // a first run fills the file cache; not counted
  for (let i = 0; i < RUNS; i++) {
    for (const [k, args] of [['--version', ['--version']], ['validate (demo config)', ['validate', config]]] as const) {
      const r = timeRun(bin, [...args], app);
      cases[k].push(r.wall);
      cpu[k].push(r.cpu);
    }
    cases['serve until /readyz 200 (demo config)'].push(await timeServe(bin, config, app, join(dir, `state-${i}`)));
  }
  const goals: Record<string, number> = { '--version': 0.5, 'validate (demo config)': 0.5, 'serve until /readyz 200 (demo config)': 1.5 };
  const results = Object.fromEntries(
    Object.entries(cases).map(([k, xs]) => [k, { ...stats(xs), goal_s: goals[k], ...(cpu[k] ? { cpu_median_s: stats(cpu[k]).median } : {}) }]),
  );
  const report = {
    bench: 'startup',
    command: `npm run bench:startup -- --runs ${RUNS}`,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, kernel: release(), node_on_path: node, loadavg: loadavg().map((x) => +x.toFixed(2)) },
    bin: 'node_modules/.bin/hookgate of the packed tarball installed into an empty folder',
    results,
  };
  const { file } = resultsFile('startup');
  writeJson(file, report);
  console.log(`\nhookgate start-up, ${RUNS} runs each, node on PATH ${node}, load ${report.machine.loadavg.join(' ')}\n`);
  console.log('case'.padEnd(40) + 'median   min      max      cpu      goal (median wall)');
  for (const [k, r] of Object.entries(results)) {
    const c = 'cpu_median_s' in r ? `${(r.cpu_median_s as number).toFixed(2)}s` : '-';
    console.log(`${k.padEnd(40)}${`${r.median.toFixed(3)}s`.padEnd(9)}${`${r.min.toFixed(3)}s`.padEnd(9)}${`${r.max.toFixed(3)}s`.padEnd(9)}${c.padEnd(9)}< ${r.goal_s}s ${r.median < r.goal_s ? 'met' : 'NOT met'}`);
  }
  console.log(`\n${file}`);
});
