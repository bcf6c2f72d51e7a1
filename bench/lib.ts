/**
 * @module bench/lib
 * What the HTTP benchmarks (`bench/gateway.ts`, `bench/edge.ts`) share:
 *
 * * processes: `start` / `stop` / `waitFor`, a registry of everything
 *   started, and a watchdog process that stops them (and removes the temp
 *   dirs) if the bench itself is killed; `runBench` runs a bench's main with
 *   cleanup on success, failure and Ctrl-C;
 * * services: the bench upstream and auth service (`startService`) and a
 *   `hookgate serve` process (`startHookgate`), each waited for until ready;
 * * load: wrk arguments, one bounded wrk run that fails loudly on any
 *   non-2xx response or socket error (`wrk`), its parsed output, medians;
 * * the report: the machine description and the results file.
 *
 * One bench per process: the registry, the watchdog and the signal handlers
 * are process-wide. What a bench measures, its cases and its table stay in
 * the bench's own file.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { delimiter, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** A path in bench/ (where this file lives). */
export const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
/** The running bench script, relative to the root ("bench/gateway.ts"), for messages and generated files. */
export const SCRIPT = relative(ROOT, process.argv[1] ?? '') || 'bench';

const t0 = performance.now();

/** Seconds since the bench started (one decimal). */
export function elapsedSeconds(): number {
  return +((performance.now() - t0) / 1000).toFixed(1);
}

// ---------------------------------------------------------------- options

/** Exits with status 2 and `msg` (a bad option). */
export function usage(msg: string): never {
  process.stderr.write(`${SCRIPT}: ${msg}\n`);
  process.exit(2);
}

/** wrk's durations: "10s", "2m", "500ms"? wrk takes s/m/h; a bare number is seconds. NaN when unreadable. */
export function seconds(d: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(d.trim());
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'm' ? 60 : m[2] === 'h' ? 3600 : 1);
}

function durationOption(name: string, value: string): string {
  if (Number.isNaN(seconds(value))) usage(`--${name}: expected a duration such as "10s", got "${value}"`);
  return value;
}

function countOption(name: string, value: string | number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) usage(`--${name}: expected a positive integer`);
  return n;
}

/** The `parseArgs` options every bench's load takes: --duration, --warmup, --connections, --threads, --rounds. */
export const LOAD_OPTIONS = {
  duration: { type: 'string' },
  warmup: { type: 'string' },
  connections: { type: 'string' },
  threads: { type: 'string' },
  rounds: { type: 'string' },
} as const;

/** The load options of a bench. */
export interface LoadOptions {
  duration: string;
  warmup: string;
  connections: number;
  threads: number;
  rounds: number;
}

/**
 * The load options from the command line, else the environment
 * (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_THREADS,
 * BENCH_ROUNDS), else `defaults`; exits through `usage` naming the option
 * when one is bad.
 *
 * @example
 * const { values } = parseArgs({ options: { ...LOAD_OPTIONS } });
 * const load = loadOptions(values, { duration: '10s', warmup: '3s', connections: 64, threads: 2, rounds: 1 });
 */
export function loadOptions(argv: Partial<Record<keyof LoadOptions, string>>, defaults: LoadOptions): LoadOptions {
  const env = process.env;
  const o: LoadOptions = {
    duration: durationOption('duration', argv.duration ?? env.BENCH_DURATION ?? defaults.duration),
    warmup: durationOption('warmup', argv.warmup ?? env.BENCH_WARMUP ?? defaults.warmup),
    connections: countOption('connections', argv.connections ?? env.BENCH_CONNECTIONS ?? defaults.connections),
    threads: countOption('threads', argv.threads ?? env.BENCH_THREADS ?? defaults.threads),
    rounds: countOption('rounds', argv.rounds ?? env.BENCH_ROUNDS ?? defaults.rounds),
  };
  if (o.connections < o.threads) usage('--connections must be at least --threads (wrk needs a connection per thread)');
  return o;
}

// ------------------------------------------------------ processes we start

/** A process started by `start`: its child, the last lines it printed, and a promise of its end. */
export interface Proc {
  name: string;
  child: ChildProcess;
  /** the last lines of stdout and stderr */
  lines: string[];
  /** all of stdout */
  out: string;
  exited: Promise<void>;
  onLine: Set<(line: string) => void>;
}

const procs = new Set<Proc>();
const dirs: string[] = [];
let watchdog: ChildProcess | null = null;

/**
 * A watchdog process: if this process dies without cleaning up (SIGKILL),
 * its stdin ends and it stops every pid still registered with it (lines
 * "<pid>" register, "-<pid>" unregister) and removes the temp dirs ("dir <path>").
 */
const WATCHDOG = `
const pids = new Set(); let buf = ''; const dirs = [];
process.on('SIGINT', () => {}); process.on('SIGTERM', () => {}); process.on('SIGHUP', () => {});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d; let i;
  while ((i = buf.indexOf('\\n')) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); if (l.startsWith('dir ')) { dirs.push(l.slice(4)); continue; } const n = Number(l); if (n > 0) pids.add(n); else if (n < 0) pids.delete(-n); }
});
const kill = (sig) => { for (const p of pids) { try { process.kill(p, sig); } catch { pids.delete(p); } } };
const rm = () => { for (const dir of dirs) process.getBuiltinModule('node:fs').rmSync(dir, { recursive: true, force: true }); };
process.stdin.on('end', () => { if (!pids.size) { rm(); process.exit(0); } kill('SIGTERM'); setTimeout(() => { kill('SIGKILL'); rm(); process.exit(0); }, 5000); });
process.stdin.resume();
`;

/** Tells the watchdog (started on first use; it outlives nothing but this process) one line. */
function tellWatchdog(line: string): void {
  if (!watchdog) {
    watchdog = spawn(process.execPath, ['-e', WATCHDOG], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
    watchdog.stdin!.on('error', () => {});
    watchdog.unref();
  }
  watchdog.stdin?.write(`${line}\n`);
}

/**
 * A new temp dir (`prefix` + random), removed by `cleanup` (or by the
 * watchdog if this process is killed). Safe to call more than once.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  tellWatchdog(`dir ${dir}`);
  return dir;
}

/**
 * Starts `cmd args` (stdin a pipe that stays open, stdout and stderr read
 * line by line) and registers it for `cleanup` and with the watchdog. A
 * command that cannot start shows up as an exit and a line in `lines`.
 *
 * @example
 * const p = start('upstream', process.execPath, [here('./upstream.ts')]);
 */
export function start(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const p: Proc = { name, child, lines: [], out: '', exited: once(child, 'close').then(() => {}), onLine: new Set() };
  child.on('error', (err) => p.lines.push(`(cannot start ${cmd}: ${err.message})`));
  child.stdin!.on('error', () => {});
  procs.add(p);
  if (child.pid) tellWatchdog(`${child.pid}`);
  void p.exited.then(() => {
    if (child.pid) tellWatchdog(`-${child.pid}`);
  });
  const feed = (stream: NodeJS.ReadableStream, keepAll: boolean) => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (keepAll) p.out += chunk;
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        p.lines.push(line);
        if (p.lines.length > 200) p.lines.shift();
        for (const f of p.onLine) f(line);
      }
    });
  };
  feed(child.stdout!, true);
  feed(child.stderr!, false);
  return p;
}

export function running(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined;
}

/** The last `n` lines `p` printed, indented and prefixed with its name (for error messages). */
export function tail(p: Proc, n = 30): string {
  return p.lines.slice(-n).map((l) => `    ${p.name}| ${l}`).join('\n');
}

/**
 * Resolves with the first line (already seen or to come) that `pick` maps
 * to a value; rejects with the process's last lines when it exits first or
 * after `timeoutMs`.
 */
export function waitFor<T>(p: Proc, what: string, pick: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
  for (const line of p.lines) {
    const v = pick(line);
    if (v !== undefined) return Promise.resolve(v);
  }
  return new Promise<T>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      p.onLine.delete(onLine);
    };
    const onLine = (line: string) => {
      const v = pick(line);
      if (v !== undefined) {
        done();
        resolve(v);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${p.name}: no ${what} within ${timeoutMs} ms\n${tail(p)}`));
    }, timeoutMs);
    p.onLine.add(onLine);
    void p.exited.then(() => {
      done();
      reject(new Error(`${p.name} exited (${p.child.signalCode ?? `code ${p.child.exitCode}`}) before ${what}\n${tail(p)}`));
    });
  });
}

/** Stops a process: `signal`, then SIGKILL after `graceMs`. Stopping a stopped process is not an error. */
export async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  if (running(p)) {
    p.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([
      p.exited.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (killed && running(p)) {
      process.stderr.write(`bench: ${p.name} did not stop within ${graceMs} ms of ${signal}; killing it\n`);
      p.child.kill('SIGKILL');
      await p.exited;
    }
  }
  procs.delete(p);
}

/** Throws naming the first of `ps` that is no longer running, with its last lines. */
export function assertRunning(ps: Proc[], when: string): void {
  for (const p of ps) {
    if (!running(p)) throw new Error(`${p.name} exited ${when}\n${tail(p)}`);
  }
}

let cleaning: Promise<void> | null = null;
/** Stops every registered process, ends the watchdog and removes the temp dirs. Idempotent. */
export function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    await Promise.all([...procs].map((p) => stop(p, 'SIGTERM', 10_000).catch(() => {})));
    watchdog?.stdin?.end();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  })());
}

/**
 * Runs a bench's `main`: on SIGINT/SIGTERM/SIGHUP it cleans up and exits
 * with 130; a failure prints "BENCH FAILED: ..." and sets exit code 1;
 * everything started is stopped in every case.
 */
export async function runBench(main: () => Promise<void>): Promise<void> {
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      process.stderr.write(`\nbench: ${sig}; stopping every process it started\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    // The example plugins import `hookgate/sdk`, which resolves to the checkout's lib/ (up to date: a no-op).
    const build = spawnSync(process.execPath, [join(ROOT, 'scripts/build-package.ts')], { stdio: 'inherit' });
    if (build.status !== 0) throw new Error(`scripts/build-package.ts failed (exit ${build.status ?? build.signal}): the example plugins need lib/`);
    await main();
  } catch (err) {
    if (!interrupted) {
      const e = err as Error;
      process.stderr.write(`\n${e.message?.startsWith('BENCH FAILED') ? e.message : `BENCH FAILED: ${e.stack ?? e}`}\n`);
      process.exitCode = 1;
    }
  } finally {
    await cleanup();
  }
}

// ------------------------------------------------------------------ helpers

/** A port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The path of `cmd` on PATH (then in `extra` dirs), or null. */
export function which(cmd: string, extra: string[] = []): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extra]) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return null;
}

/** The first non-empty line `cmd args` prints (stdout, then stderr): a version string. */
export function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim())?.trim() ?? '';
}

/**
 * GET over a new connection with a 5 s deadline: the status, the whole body
 * as text and the response headers. For https, `ca` is the PEM the server's
 * certificate must chain to (the benches' self-signed one).
 *
 * @example
 * const r = await get('https://127.0.0.1:8443/x', { authorization: 'Bearer t' }, { ca: readFileSync(certFile, 'utf8') });
 */
export function get(url: string, headers: Record<string, string> = {}, opts: { ca?: string } = {}): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  const send = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { headers, agent: false, ca: opts.ca, signal: AbortSignal.timeout(5000) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `fn` every 100 ms until it returns a value; throws naming `what` (and the last error) after `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${last})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `JSON.parse(line)` when the line is JSON, else undefined (for `waitFor` picks). */
function jsonLine<T>(line: string): T | undefined {
  try {
    return JSON.parse(line) as T;
  } catch {
    return undefined;
  }
}

/** Runs bench/setup.sh (installs wrk and nginx from Debian when missing); throws when it fails. */
export function setupTools(): void {
  const setup = spawnSync('bash', [here('./setup.sh')], { stdio: 'inherit' });
  if (setup.status !== 0) throw new Error(`bench/setup.sh failed (exit ${setup.status ?? setup.signal}): wrk and nginx are needed`);
}

// --------------------------------------------------------------- services

/** `node bench/<script>`, waited for until it prints `{"port":N}`. */
export async function startService(name: string, script: string, extraEnv: Record<string, string> = {}): Promise<{ proc: Proc; port: number }> {
  const proc = start(name, process.execPath, [here(script)], { env: { ...process.env, ...extraEnv } });
  const port = await waitFor(proc, 'port', (l) => jsonLine<{ port?: number }>(l)?.port, 10_000);
  return { proc, port };
}

/** A running `hookgate serve`: its base URLs (`runner` when the config has `runner.listen`) and config file. */
export interface Hookgate {
  proc: Proc;
  gateway: string;
  admin: string;
  runner?: string;
  config: string;
}

/**
 * `node [nodeArgs] node-runner/cli/cli.ts serve --config <dir>/<name>.json5
 * --state-dir <dir>/<name>.state` (one state dir, so one keeper, per
 * instance), waited for until each listener has logged its URL and the
 * admin's /readyz says 200 (every plugin ready).
 */
export async function startHookgate(name: string, config: object, dir: string, nodeArgs: string[] = []): Promise<Hookgate> {
  const file = join(dir, `${name}.json5`);
  writeFileSync(file, `// generated by ${SCRIPT}\n${JSON.stringify(config, null, 2)}\n`);
  const proc = start(name, process.execPath, [...nodeArgs, join(ROOT, 'node-runner/cli/cli.ts'), 'serve', '--config', file, '--state-dir', join(dir, `${name}.state`)], {
    env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info' },
  });
  const listening = (what: string) =>
    waitFor(proc, `"${what} listening"`, (l) => {
      const j = jsonLine<{ msg?: string; url?: string }>(l);
      return j?.msg === `${what} listening` ? j.url : undefined;
    }, 30_000);
  const withRunner = (config as { runner?: { listen?: string } }).runner?.listen !== undefined;
  const [gateway, admin, runner] = await Promise.all([listening('gateway'), listening('admin'), withRunner ? listening('runner') : undefined]);
  await until(`${name}: GET ${admin}/readyz = 200`, 30_000, async () => {
    if (!running(proc)) throw new Error(`${name} exited\n${tail(proc)}`);
    const r = await get(`${admin}/readyz`);
    return r.status === 200 ? true : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}\n${tail(proc)}`);
  });
  return { proc, gateway, admin, runner, config: file };
}

// --------------------------------------------------------------------- wrk

/** What wrk reports for one run (latencies in ms). */
export interface WrkRun {
  requests: number;
  seconds: number;
  rps: number;
  p50_ms: number;
  p75_ms: number;
  p90_ms: number;
  p99_ms: number;
  non_2xx_3xx: number;
  socket_errors: { connect: number; read: number; write: number; timeout: number };
}

/** One wrk load: threads, connections, duration and request headers ("Name: value"). */
export interface WrkLoad {
  threads: number;
  connections: number;
  duration: string;
  headers: string[];
}

export function wrkArgs(load: WrkLoad, url: string): string[] {
  return ['-t', String(load.threads), '-c', String(load.connections), '-d', load.duration, '--latency', ...load.headers.flatMap((h) => ['-H', h]), url];
}

/** Arguments as a shell would need them quoted (for messages and reports). */
export function shellArgs(args: string[]): string {
  return args.map((a) => (/[\s'"$]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a)).join(' ');
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : NaN;
}

/** Reads wrk's `--latency` output; throws with the output when it cannot. */
export function parseWrk(out: string): WrkRun {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? +toMs(m[1], m[2]).toFixed(3) : NaN;
  };
  const done = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const run: WrkRun = {
    requests: done ? Number(done[1]) : NaN,
    seconds: done ? toMs(done[2], done[3]) / 1000 : NaN,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50_ms: pct('50'),
    p75_ms: pct('75'),
    p90_ms: pct('90'),
    p99_ms: pct('99'),
    non_2xx_3xx: /Non-2xx or 3xx responses: (\d+)/.test(out) ? num(/Non-2xx or 3xx responses: (\d+)/) : 0,
    socket_errors: se
      ? { connect: Number(se[1]), read: Number(se[2]), write: Number(se[3]), timeout: Number(se[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
  };
  if ([run.requests, run.rps, run.p50_ms, run.p99_ms].some(Number.isNaN)) throw new Error(`cannot read wrk's output:\n${out}`);
  return run;
}

/** wrk on PATH (after `setupTools`), else plain "wrk". */
export function wrkPath(): string {
  return which('wrk') ?? 'wrk';
}

/** One bounded wrk run; throws (loudly) on any non-2xx response or socket error. */
export async function wrk(label: string, url: string, load: WrkLoad): Promise<WrkRun> {
  const p = start(`wrk ${label}`, wrkPath(), wrkArgs(load, url));
  let timer: NodeJS.Timeout | undefined;
  const limit = (seconds(load.duration) + 30) * 1000;
  const late = await Promise.race([
    p.exited.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), limit))),
  ]);
  clearTimeout(timer);
  if (late) {
    await stop(p, 'SIGKILL', 1000);
    throw new Error(`wrk for ${label} did not finish within ${limit / 1000} s`);
  }
  procs.delete(p);
  if (p.child.exitCode !== 0) throw new Error(`wrk for ${label} failed (exit ${p.child.exitCode ?? p.child.signalCode})\n${p.out}\n${tail(p)}`);
  const run = parseWrk(p.out);
  const se = run.socket_errors;
  const errors = se.connect + se.read + se.write + se.timeout;
  if (run.non_2xx_3xx > 0 || errors > 0 || run.requests === 0) {
    throw new Error(
      `BENCH FAILED: ${label}: ${run.non_2xx_3xx} non-2xx/3xx responses, socket errors connect ${se.connect} read ${se.read} write ${se.write} timeout ${se.timeout}, ${run.requests} requests; the numbers would be meaningless.\nwrk ${shellArgs(wrkArgs(load, url))}\n${p.out}`,
    );
  }
  return run;
}

/** The median of `xs` (the mean of the middle two for an even count); NaN for none. */
export function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The run with the median req/s (the lower middle one for an even count). */
export function median(xs: WrkRun[]): WrkRun {
  const s = [...xs].sort((a, b) => a.rps - b.rps);
  return s[Math.floor((s.length - 1) / 2)];
}

// ------------------------------------------------------------ the report

/**
 * The machine a bench ran on: CPU, cores, memory, kernel, node, the
 * versions in `tools` (name: version line), wrk's version and the load
 * average now.
 */
export function describeMachine<T extends Record<string, string>>(tools: T) {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mem_gib: +(totalmem() / 2 ** 30).toFixed(1),
    kernel: release(),
    node: process.version,
    ...tools,
    wrk: firstLine(wrkPath(), ['-v']).replace(/\s*Copyright.*$/, ''),
    loadavg_before: loadNow(),
  };
}

/** The 1, 5 and 15 minute load averages, two decimals. */
export function loadNow(): number[] {
  return loadavg().map((x) => +x.toFixed(2));
}

/** bench/results/<kind>-<ISO time>.json (the dir is created) and the time it is named after. */
export function resultsFile(kind: string): { file: string; stamp: string } {
  mkdirSync(here('./results'), { recursive: true });
  const stamp = new Date().toISOString();
  return { file: here(`./results/${kind}-${stamp.replace(/[:.]/g, '-')}.json`), stamp };
}

/**
 * Writes `report` as indented JSON (again after each addition, so a late
 * failure keeps what was measured). Paths of this checkout and of the temp
 * dirs are written as `<repo>/...` and `<tmp>/...`: a committed result
 * names no path of the machine it ran on.
 */
export function writeJson(file: string, report: unknown): void {
  let text = JSON.stringify(report, null, 2);
  for (const dir of dirs) text = text.replaceAll(dir, '<tmp>');
  text = text.replaceAll(ROOT, '<repo>/');
  writeFileSync(file, text + '\n');
}
