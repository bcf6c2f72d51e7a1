/**
 * `npm run bench`: the gateway benchmark. In ONE run, with the same
 * upstream (bench/upstream.ts, a 100-byte JSON body over keep-alive) and
 * the same load (wrk, fixed threads, connections and duration, after a
 * warmup per case), it measures req/s, p50 and p99 of
 *
 *   (a) the upstream directly,
 *   (b) hookgate proxying with no hook,
 *   (c) hookgate with an on_request auth hook (examples/plugins/auth.ts),
 *   (d) nginx with auth_request to an HTTP auth service with the same logic
 *       (bench/auth-service.ts), passing X-User upstream,
 *   (e) nginx proxying without auth,
 *
 * prints a table and the ratios c/d and c/b, and writes the results to
 * bench/results/gateway-<time>.json. The machine is noisy (2 cores shared by
 * wrk, the upstream and the proxy under test): compare the ratios of one
 * run, not absolute numbers across runs. Then, unless --no-profile, it
 * profiles the gateway process of case (c) under a separate wrk run and
 * prints the top functions by self time ("where the time goes").
 *
 * wrk and nginx come from Debian; bench/setup.sh installs them when missing.
 * Every process started here is stopped at the end, on failure and on
 * Ctrl-C too; a watchdog process stops them if this process is killed.
 * Any non-2xx response or socket error in any run fails the bench: the
 * numbers would be meaningless.
 *
 * Options (or env): --duration 10s (BENCH_DURATION), --warmup 3s
 * (BENCH_WARMUP), --connections 64 (BENCH_CONNECTIONS), --threads 2
 * (BENCH_THREADS), --rounds 1 (BENCH_ROUNDS; >1 takes each case's median),
 * --nginx-workers 1 (BENCH_NGINX_WORKERS; a number or "auto"),
 * --no-profile (BENCH_PROFILE=0), --keep-profile (copy the .cpuprofile to
 * bench/results/ for DevTools).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatSummary, summarizeProfile, type CpuProfile, type ProfileSummary } from './profile-top.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const t0 = performance.now();

// ---------------------------------------------------------------- options

const { values: argv } = parseArgs({
  allowNegative: true,
  options: {
    profile: { type: 'boolean' },
    'keep-profile': { type: 'boolean', default: false },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    threads: { type: 'string' },
    rounds: { type: 'string' },
    'nginx-workers': { type: 'string' },
  },
});
const env = process.env;
const opt = {
  profile: argv.profile ?? !['0', 'false', 'no', 'off'].includes((env.BENCH_PROFILE ?? '1').toLowerCase()),
  keepProfile: argv['keep-profile'],
  duration: argv.duration ?? env.BENCH_DURATION ?? '10s',
  warmup: argv.warmup ?? env.BENCH_WARMUP ?? '3s',
  connections: Number(argv.connections ?? env.BENCH_CONNECTIONS ?? 64),
  threads: Number(argv.threads ?? env.BENCH_THREADS ?? 2),
  rounds: Number(argv.rounds ?? env.BENCH_ROUNDS ?? 1),
  nginxWorkers: argv['nginx-workers'] ?? env.BENCH_NGINX_WORKERS ?? '1',
};
for (const k of ['duration', 'warmup'] as const) if (Number.isNaN(seconds(opt[k]))) usage(`--${k}: expected a duration such as "10s", got "${opt[k]}"`);
for (const k of ['connections', 'threads', 'rounds'] as const) if (!Number.isInteger(opt[k]) || opt[k] < 1) usage(`--${k}: expected a positive integer`);
if (opt.connections < opt.threads) usage('--connections must be at least --threads (wrk needs a connection per thread)');
if (!/^(auto|[1-9]\d*)$/.test(opt.nginxWorkers)) usage('--nginx-workers: expected a number or "auto"');

function usage(msg: string): never {
  process.stderr.write(`bench/gateway.ts: ${msg}\n`);
  process.exit(2);
}

/** wrk's durations: "10s", "2m", "500ms"? wrk takes s/m/h; a bare number is seconds. */
function seconds(d: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(d.trim());
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'm' ? 60 : m[2] === 'h' ? 3600 : 1);
}

const TOKEN = 'bench-token';
const USER = 'bench';
const PATH = '/api/items/42';
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const UPSTREAM_BODY_BYTES = 100;

// ------------------------------------------------------ processes we start

interface Proc {
  name: string;
  child: ChildProcess;
  /** the last lines of stdout and stderr */
  lines: string[];
  out: string;
  exited: Promise<void>;
  onLine: Set<(line: string) => void>;
}

const procs = new Set<Proc>();
let tmp = '';
let watchdog: ChildProcess | null = null;

/**
 * A watchdog process: if this process dies without cleaning up (SIGKILL),
 * its stdin ends and it stops every pid still registered with it (lines
 * "<pid>" register, "-<pid>" unregister) and removes the temp dir ("dir <path>").
 */
const WATCHDOG = `
const pids = new Set(); let buf = ''; let dir = '';
process.on('SIGINT', () => {}); process.on('SIGTERM', () => {}); process.on('SIGHUP', () => {});
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d; let i;
  while ((i = buf.indexOf('\\n')) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); if (l.startsWith('dir ')) { dir = l.slice(4); continue; } const n = Number(l); if (n > 0) pids.add(n); else if (n < 0) pids.delete(-n); }
});
const kill = (sig) => { for (const p of pids) { try { process.kill(p, sig); } catch { pids.delete(p); } } };
const rm = () => { if (dir) process.getBuiltinModule('node:fs').rmSync(dir, { recursive: true, force: true }); };
process.stdin.on('end', () => { if (!pids.size) { rm(); process.exit(0); } kill('SIGTERM'); setTimeout(() => { kill('SIGKILL'); rm(); process.exit(0); }, 5000); });
process.stdin.resume();
`;

function startWatchdog(): void {
  watchdog = spawn(process.execPath, ['-e', WATCHDOG], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
  watchdog.stdin!.on('error', () => {});
  watchdog.unref();
}

function start(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const p: Proc = { name, child, lines: [], out: '', exited: once(child, 'close').then(() => {}), onLine: new Set() };
  child.on('error', (err) => p.lines.push(`(cannot start ${cmd}: ${err.message})`));
  child.stdin!.on('error', () => {});
  procs.add(p);
  if (child.pid) watchdog?.stdin?.write(`${child.pid}\n`);
  void p.exited.then(() => {
    if (child.pid) watchdog?.stdin?.write(`-${child.pid}\n`);
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

function running(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined;
}

function tail(p: Proc, n = 30): string {
  return p.lines.slice(-n).map((l) => `    ${p.name}| ${l}`).join('\n');
}

/** Resolves with the first line (already seen or to come) that `pick` maps to a value. */
function waitFor<T>(p: Proc, what: string, pick: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
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

/** Stops a process: `signal`, then SIGKILL after `graceMs`. */
async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
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

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    await Promise.all([...procs].map((p) => stop(p, 'SIGTERM', 10_000).catch(() => {})));
    watchdog?.stdin?.end();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  })());
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}; stopping every process it started\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ------------------------------------------------------------------ helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function which(cmd: string, extra: string[] = []): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extra]) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return null;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim())?.trim() ?? '';
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
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

// --------------------------------------------------------------- services

async function startService(name: string, script: string, extraEnv: Record<string, string> = {}): Promise<{ proc: Proc; port: number }> {
  const proc = start(name, process.execPath, [here(script)], { env: { ...process.env, ...extraEnv } });
  const port = await waitFor(proc, 'port', (l) => {
    try {
      return (JSON.parse(l) as { port?: number }).port;
    } catch {
      return undefined;
    }
  }, 10_000);
  return { proc, port };
}

interface Hookgate { proc: Proc; gateway: string; admin: string; config: string }

function hookgateConfig(upstreamPort: number, withAuth: boolean): object {
  return {
    gateway: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    routes: [
      {
        id: 'bench',
        ...(withAuth ? { plugins: ['auth'] } : {}),
        balancer: { targets: [`127.0.0.1:${upstreamPort}`] },
        action: { type: 'proxy', upstream: 'http://{target}' },
      },
    ],
    ...(withAuth
      ? { plugins: { auth: { path: join(ROOT, 'examples/plugins/auth.ts'), env: { HOOKGATE_AUTH_TOKENS: `${TOKEN}:${USER}` } } } }
      : {}),
  };
}

/** `node [nodeArgs] node-runner/cli.ts serve --config <file>`, waited for until /readyz says 200. */
async function startHookgate(name: string, config: object, nodeArgs: string[] = []): Promise<Hookgate> {
  const file = join(tmp, `${name}.json5`);
  writeFileSync(file, `// generated by bench/gateway.ts\n${JSON.stringify(config, null, 2)}\n`);
  const proc = start(name, process.execPath, [...nodeArgs, join(ROOT, 'node-runner/cli.ts'), 'serve', '--config', file], {
    env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info' },
  });
  const listening = (what: string) => (l: string) => {
    try {
      const j = JSON.parse(l) as { msg?: string; url?: string };
      return j.msg === `${what} listening` ? j.url : undefined;
    } catch {
      return undefined;
    }
  };
  const [gateway, admin] = await Promise.all([
    waitFor(proc, '"gateway listening"', listening('gateway'), 30_000),
    waitFor(proc, '"admin listening"', listening('admin'), 30_000),
  ]);
  await until(`${name}: GET ${admin}/readyz = 200`, 30_000, async () => {
    if (!running(proc)) throw new Error(`${name} exited\n${tail(proc)}`);
    const r = await get(`${admin}/readyz`);
    return r.status === 200 ? true : undefined;
  });
  return { proc, gateway, admin, config: file };
}

function nginxConf(dir: string, p: { workers: string; upstream: number; auth: number; d: number; e: number }): string {
  // Headers sent upstream: the same as hookgate's (Host passed through, X-Forwarded-*).
  // A proxy_set_header in a location drops the inherited ones, so each
  // location that sets one repeats them all.
  const forward = [
    'proxy_http_version 1.1;',
    'proxy_set_header Connection "";',
    'proxy_set_header Host $http_host;',
    'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    'proxy_set_header X-Forwarded-Proto $scheme;',
    'proxy_set_header X-Forwarded-Host $http_host;',
  ];
  const ind = (lines: string[], n: number) => lines.map((l) => ' '.repeat(n) + l).join('\n');
  return `# generated by bench/gateway.ts
worker_processes ${p.workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    # clients (wrk) keep their connections for the whole run, as with hookgate,
    # which limits neither requests per connection nor per upstream connection
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;

    upstream app {
        server 127.0.0.1:${p.upstream};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    upstream auth {
        server 127.0.0.1:${p.auth};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    # (e) proxy, no auth
    server {
        listen 127.0.0.1:${p.e};
        location / {
${ind(forward, 12)}
            proxy_pass http://app;
        }
    }

    # (d) proxy with auth_request to bench/auth-service.ts
    server {
        listen 127.0.0.1:${p.d};
        location / {
            auth_request /_auth;
            auth_request_set $auth_user $upstream_http_x_user;
${ind(forward, 12)}
            proxy_set_header X-User $auth_user;
            proxy_pass http://app;
        }
        location = /_auth {
            internal;
            proxy_pass_request_body off;
${ind(forward, 12)}
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_pass http://auth;
        }
    }
}
`;
}

// --------------------------------------------------------------------- wrk

interface WrkRun {
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

function wrkArgs(url: string, duration: string): string[] {
  return ['-t', String(opt.threads), '-c', String(opt.connections), '-d', duration, '--latency', '-H', AUTH_HEADER, url];
}

function shellArgs(args: string[]): string {
  return args.map((a) => (/[\s'"$]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a)).join(' ');
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : NaN;
}

function parseWrk(out: string): WrkRun {
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

/** One bounded wrk run; throws (loudly) on any non-2xx response or socket error. */
async function wrk(label: string, url: string, duration: string): Promise<WrkRun> {
  const p = start(`wrk ${label}`, WRK, wrkArgs(url, duration));
  let timer: NodeJS.Timeout | undefined;
  const limit = (seconds(duration) + 30) * 1000;
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
      `BENCH FAILED: ${label}: ${run.non_2xx_3xx} non-2xx/3xx responses, socket errors connect ${se.connect} read ${se.read} write ${se.write} timeout ${se.timeout}, ${run.requests} requests; the numbers would be meaningless.\nwrk ${shellArgs(wrkArgs(url, duration))}\n${p.out}`,
    );
  }
  return run;
}

// ------------------------------------------------------------------- cases

interface Case {
  id: 'a' | 'b' | 'c' | 'd' | 'e';
  name: string;
  base: string;
  /** the upstream sees X-User from the auth step */
  auth: boolean;
}

/** Before loading a case: a request gets the upstream's body; with auth, the user reaches the upstream and no token gets 401. */
async function sanity(c: Case): Promise<void> {
  const ok = await until(`(${c.id}) ${c.name}: GET ${c.base}${PATH} = 200`, 15_000, async () => {
    const r = await get(`${c.base}${PATH}`, { authorization: `Bearer ${TOKEN}` });
    return r.status === 200 ? r : undefined;
  });
  if (Buffer.byteLength(ok.body) !== UPSTREAM_BODY_BYTES) throw new Error(`(${c.id}) ${c.name}: expected the upstream's ${UPSTREAM_BODY_BYTES}-byte body, got ${JSON.stringify(ok.body)}`);
  if (!c.auth) return;
  const who = await get(`${c.base}/__whoami`, { authorization: `Bearer ${TOKEN}` });
  if (who.status !== 200 || who.body !== USER) throw new Error(`(${c.id}) ${c.name}: the upstream should see X-User: ${USER}; got ${who.status} ${JSON.stringify(who.body)}`);
  const none = await get(`${c.base}${PATH}`);
  if (none.status !== 401) throw new Error(`(${c.id}) ${c.name}: a request without a token should get 401, got ${none.status}`);
  const bad = await get(`${c.base}${PATH}`, { authorization: 'Bearer wrong-token' });
  if (bad.status !== 401) throw new Error(`(${c.id}) ${c.name}: a request with a wrong token should get 401, got ${bad.status}`);
}

function median(xs: WrkRun[]): WrkRun {
  const s = [...xs].sort((a, b) => a.rps - b.rps);
  return s[Math.floor((s.length - 1) / 2)];
}

// -------------------------------------------------------------------- main

let WRK = 'wrk';

async function main(): Promise<void> {
  const setup = spawnSync('bash', [here('./setup.sh')], { stdio: 'inherit' });
  if (setup.status !== 0) throw new Error(`bench/setup.sh failed (exit ${setup.status ?? setup.signal}): wrk and nginx are needed`);
  WRK = which('wrk') ?? 'wrk';
  const NGINX = which('nginx', ['/usr/sbin', '/usr/local/sbin']);
  if (!NGINX) throw new Error('nginx not found after bench/setup.sh');

  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mem_gib: +(totalmem() / 2 ** 30).toFixed(1),
    kernel: release(),
    node: process.version,
    nginx: firstLine(NGINX, ['-v']).replace(/^nginx version:\s*/, ''),
    wrk: firstLine(WRK, ['-v']).replace(/\s*Copyright.*$/, ''),
    loadavg_before: loadavg().map((x) => +x.toFixed(2)),
  };

  tmp = mkdtempSync(join(tmpdir(), 'hookgate-gwbench-'));
  chmodSync(tmp, 0o755); // nginx workers run as nobody when started by root
  startWatchdog();
  watchdog!.stdin!.write(`dir ${tmp}\n`);

  const upstream = await startService('upstream', './upstream.ts');
  const auth = await startService('auth-service', './auth-service.ts', { HOOKGATE_AUTH_TOKENS: `${TOKEN}:${USER}` });
  const [hgB, hgC] = await Promise.all([
    startHookgate('hookgate-b', hookgateConfig(upstream.port, false)),
    startHookgate('hookgate-c', hookgateConfig(upstream.port, true)),
  ]);

  const ngDir = join(tmp, 'nginx');
  mkdirSync(ngDir, { mode: 0o755 });
  const ports = { d: await freePort(), e: await freePort() };
  const conf = nginxConf(ngDir, { workers: opt.nginxWorkers, upstream: upstream.port, auth: auth.port, ...ports });
  const confFile = join(ngDir, 'nginx.conf');
  writeFileSync(confFile, conf);
  const ngArgs = ['-c', confFile, '-p', ngDir, '-e', join(ngDir, 'error.log')];
  const test = spawnSync(NGINX, [...ngArgs, '-t', '-q'], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx rejects the generated config ${confFile}:\n${test.stderr}${test.stdout}`);
  const nginx = start('nginx', NGINX, [...ngArgs, '-g', 'daemon off;']);

  const cases: Case[] = [
    { id: 'a', name: 'upstream directly', base: `http://127.0.0.1:${upstream.port}`, auth: false },
    { id: 'b', name: 'hookgate, no hook', base: hgB.gateway, auth: false },
    { id: 'c', name: 'hookgate + auth hook (SDK plugin)', base: hgC.gateway, auth: true },
    { id: 'd', name: 'nginx + auth_request (Node auth service)', base: `http://127.0.0.1:${ports.d}`, auth: true },
    { id: 'e', name: 'nginx, no auth', base: `http://127.0.0.1:${ports.e}`, auth: false },
  ];
  try {
    for (const c of cases) await sanity(c);
  } catch (err) {
    const logs = readFileSafe(join(ngDir, 'error.log'));
    throw new Error(`${(err as Error).message}${logs ? `\nnginx error.log:\n${logs}` : ''}`);
  }

  const wrkCmd = `wrk ${shellArgs(wrkArgs('<url>', opt.duration))}`;
  console.log(`\ngateway bench: ${machine.cores} cores (${machine.cpu}), node ${machine.node}, nginx ${machine.nginx} (worker_processes ${opt.nginxWorkers}), ${machine.wrk}`);
  console.log(`load per case: warmup ${opt.warmup}, then ${wrkCmd}  (path ${PATH}), ${opt.rounds} round(s)\n`);

  const runs = new Map<Case['id'], WrkRun[]>(cases.map((c) => [c.id, []]));
  for (let round = 0; round < opt.rounds; round++) {
    // Each round starts at another case, so slow drift of the machine does not always favor the same one.
    const order = cases.map((_, i) => cases[(i + round) % cases.length]);
    for (const c of order) {
      const url = `${c.base}${PATH}`;
      if (seconds(opt.warmup) > 0) await wrk(`(${c.id}) ${c.name} warmup`, url, opt.warmup);
      const r = await wrk(`(${c.id}) ${c.name}`, url, opt.duration);
      runs.get(c.id)!.push(r);
      process.stderr.write(`  ${opt.rounds > 1 ? `round ${round + 1}: ` : ''}(${c.id}) ${Math.round(r.rps)} req/s\n`);
    }
  }
  for (const p of [hgB.proc, hgC.proc, nginx, upstream.proc, auth.proc]) {
    if (!running(p)) throw new Error(`${p.name} exited during the bench\n${tail(p)}`);
  }

  const results = cases.map((c) => {
    const m = median(runs.get(c.id)!);
    return { case: c.id, name: c.name, url: `${c.base}${PATH}`, rps: Math.round(m.rps), p50_ms: m.p50_ms, p99_ms: m.p99_ms, median_run: m, runs: runs.get(c.id)! };
  });
  const by = Object.fromEntries(results.map((r) => [r.case, r])) as Record<Case['id'], (typeof results)[number]>;
  const ratio = (x: number, y: number) => +(x / y).toFixed(3);
  const ratios = {
    c_over_d_rps: ratio(by.c.rps, by.d.rps),
    c_over_b_rps: ratio(by.c.rps, by.b.rps),
    b_over_e_rps: ratio(by.b.rps, by.e.rps),
    d_over_e_rps: ratio(by.d.rps, by.e.rps),
    b_over_a_rps: ratio(by.b.rps, by.a.rps),
    e_over_a_rps: ratio(by.e.rps, by.a.rps),
    c_over_d_p99: ratio(by.c.p99_ms, by.d.p99_ms),
  };

  console.log('case                                              req/s    p50 ms    p99 ms');
  for (const r of results) {
    console.log(`(${r.case}) ${r.name.padEnd(42)} ${String(r.rps).padStart(9)} ${r.p50_ms.toFixed(2).padStart(9)} ${r.p99_ms.toFixed(2).padStart(9)}`);
  }
  const goal = (v: number, g: number) => `${v.toFixed(3)}  (goal >= ${g}: ${v >= g ? 'met' : 'NOT met'})`;
  console.log('');
  console.log(`c/d throughput (hookgate+hook vs nginx+auth_request): ${goal(ratios.c_over_d_rps, 1.0)}`);
  console.log(`c/b throughput (the hook's own cost):                 ${goal(ratios.c_over_b_rps, 0.9)}`);
  console.log(`b/e throughput (hookgate vs nginx, no auth):          ${ratios.b_over_e_rps.toFixed(3)}`);
  console.log(`d/e throughput (auth_request's own cost in nginx):    ${ratios.d_over_e_rps.toFixed(3)}`);
  console.log(`c/d p99 latency:                                      ${ratios.c_over_d_p99.toFixed(3)}`);

  mkdirSync(here('./results'), { recursive: true });
  const stamp = new Date().toISOString();
  const file = here(`./results/gateway-${stamp.replace(/[:.]/g, '-')}.json`);
  const report: Record<string, unknown> = {
    bench: 'gateway',
    date: stamp,
    machine,
    wrk: {
      threads: opt.threads,
      connections: opt.connections,
      duration: opt.duration,
      warmup: opt.warmup,
      latency: true,
      timeout: '2s (wrk default)',
      header: AUTH_HEADER,
      path: PATH,
      command: `${wrkCmd}; warmup: the same with -d ${opt.warmup}`,
    },
    rounds: opt.rounds,
    upstream: { body_bytes: UPSTREAM_BODY_BYTES, server: 'bench/upstream.ts (node:http, keep-alive)' },
    hookgate: { command: 'node node-runner/cli.ts serve --config <file>', config_b: hookgateConfig(upstream.port, false), config_c: hookgateConfig(upstream.port, true) },
    nginx: { worker_processes: opt.nginxWorkers, config: conf },
    cases: results,
    ratios,
    goals: { c_over_d_rps: 1.0, c_over_b_rps: 0.9 },
  };
  const save = () => writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  save();

  // The gateways and nginx are not needed any more: the profile run has the machine to itself.
  await Promise.all([hgB.proc, hgC.proc, nginx, auth.proc].map((p) => stop(p)));

  if (opt.profile) {
    const profDir = join(tmp, 'cpuprofile');
    mkdirSync(profDir);
    // The flags go to the serve process only; its plugin processes are not profiled.
    const hp = await startHookgate('hookgate-profile', hookgateConfig(upstream.port, true), ['--cpu-prof', '--cpu-prof-dir', profDir]);
    const pc: Case = { id: 'c', name: 'hookgate + auth hook, profiled', base: hp.gateway, auth: true };
    await sanity(pc);
    const pr = await wrk(`(c) profiled`, `${pc.base}${PATH}`, opt.duration);
    await stop(hp.proc, 'SIGTERM', 20_000);
    if (hp.proc.child.exitCode !== 0) throw new Error(`the profiled gateway did not exit cleanly on SIGTERM (${hp.proc.child.signalCode ?? `code ${hp.proc.child.exitCode}`})\n${tail(hp.proc)}`);
    const mine = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${hp.proc.child.pid}.`));
    if (mine.length !== 1) throw new Error(`expected one .cpuprofile of pid ${hp.proc.child.pid} in ${profDir}, found: ${readdirSync(profDir).join(', ') || 'none'}`);
    const profFile = join(profDir, mine[0]);
    const summary: ProfileSummary = summarizeProfile(JSON.parse(readFileSync(profFile, 'utf8')) as CpuProfile, 15);
    console.log(`\nwhere the time goes: CPU profile of the hookgate gateway process, case (c), under ${wrkCmd.replace('<url>', `${pc.base}${PATH}`)}`);
    console.log(`(profiled run: ${Math.round(pr.rps)} req/s, p50 ${pr.p50_ms} ms, p99 ${pr.p99_ms} ms; the profile covers the whole process: startup, load, shutdown)\n`);
    console.log(formatSummary(summary));
    let kept: string | undefined;
    if (opt.keepProfile) {
      kept = file.replace(/\.json$/, '.cpuprofile');
      copyFileSync(profFile, kept);
      console.log(`\nprofile kept: ${kept} (open it in Chrome DevTools > Performance)`);
    }
    report.profile = { case: 'c', wrk: pr, summary, file: kept };
    save();
  }
  report.run_seconds = +((performance.now() - t0) / 1000).toFixed(1);
  save();
  console.log(`\nresults written to ${file}`);
  console.log(`whole run took ${report.run_seconds} s`);
}

function readFileSafe(f: string): string {
  try {
    return readFileSync(f, 'utf8').trim();
  } catch {
    return '';
  }
}

try {
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
