/**
 * `npm run bench`: the gateway benchmark, side by side in one run. With the
 * same upstream (bench/upstream.ts, a 100-byte JSON body over keep-alive)
 * and the same load (wrk, fixed threads, connections and duration, after a
 * warmup per run), it measures req/s, p50, p99 and CPU per request of
 *
 *   (a)  the upstream directly (reference),
 *   (b)  hookgate proxying with no hook,
 *   (c)  hookgate with an on_request auth hook (examples/plugins/auth.ts),
 *   (d)  nginx with auth_request to an HTTP auth service with the same logic
 *        (bench/auth-service.ts), passing X-User upstream,
 *   (e)  nginx proxying without auth,
 *
 * and the pairs the later performance work needs, each run only when
 * hookgate supports the config field it needs (checked with `hookgate
 * validate` on the case's own config; otherwise listed as "skipped: why"):
 *
 *   (c2) hookgate + hook with `gateway: { workers: 2 }`   vs (d2) nginx + auth_request, worker_processes 2;
 *   (cc) hookgate + hook, binding `cache: { ttl: "30s" }` vs (dc) nginx + auth_request with proxy_cache on
 *        the auth location keyed on the Authorization header (every request a hit after warmup);
 *   (bm), (cm) hookgate without / with the hook, `metrics: { requests: false }`, vs (b) and (c) with
 *        request metrics on (the default): what recording costs;
 *   (ct) hookgate + hook over TLS (`gateway.tls`)           vs (dt) nginx + auth_request over TLS
 *        (one self-signed P-256 certificate made with openssl for both; wrk keeps its connections).
 *
 * The nginx side of a skipped pair is still generated, checked by `nginx -t`
 * and by its sanity requests; it is measured when named in --cases.
 *
 * CPU per request: the user+system time of every process of the setup
 * (hookgate: the serve process and everything under it, i.e. gateway
 * workers, keeper, plugins; nginx: master, workers and the auth service),
 * read from /proc before and after each measured run (bench/cpu.ts), over
 * the requests wrk completed. The shared upstream counts for neither (it is
 * the setup of (a)); wrk counts for none.
 *
 * Rounds are interleaved (a b c d e, a b c d e, ...): each number in the
 * table is the median over the rounds, and each ratio is also given per
 * round (x/y of the same round: min, median, max). The goals are judged on
 * the median of the per-round ratios. The machine is noisy (2 cores shared
 * by wrk, the upstream and the proxy under test): compare the ratios of one
 * run, not absolute numbers across runs. Then, unless --no-profile, it
 * profiles the gateway process of case (c) under a separate wrk run (at least
 * 10 s, so start-up does not dominate) and
 * prints the top functions by self time ("where the time goes").
 *
 * wrk and nginx come from Debian; bench/setup.sh installs them when missing.
 * Every process started here is stopped at the end, on failure and on
 * Ctrl-C too; a watchdog process stops them if this process is killed
 * (bench/lib.ts). Any non-2xx response or socket error in any run fails
 * the bench: the numbers would be meaningless.
 *
 * Options (or env): --duration 5s (BENCH_DURATION), --warmup 1s
 * (BENCH_WARMUP; the first run of each case warms up for at least 3 s),
 * --connections 64 (BENCH_CONNECTIONS), --threads 2 (BENCH_THREADS),
 * --rounds N (BENCH_ROUNDS; default: as many as fit in about 140 s of
 * load), --cases LIST (BENCH_CASES; groups base, workers2, cache, tls, metrics
 * and/or case ids, comma-separated; default all groups), --nginx-workers 1
 * (BENCH_NGINX_WORKERS: nginx of (d) and (e); a number or "auto"),
 * --no-profile (BENCH_PROFILE=0), --keep-profile (copy the .cpuprofile to
 * bench/results/ for DevTools).
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { cpuSeconds, cpuSecondsByRole, machineCpuSeconds } from './cpu.ts';
import {
  LOAD_OPTIONS, ROOT, assertRunning, describeMachine, elapsedSeconds, firstLine, freePort, get, loadNow, loadOptions, medianOf, resultsFile,
  runBench, seconds, setupTools, shellArgs, start, startHookgate, startService, stop, tail, tempDir, until, usage, which, wrk as runWrk,
  wrkArgs, writeJson, type Hookgate, type Proc, type WrkLoad, type WrkRun,
} from './lib.ts';
import { formatSummary, summarizeProfile, type CpuProfile, type ProfileSummary } from './profile-top.ts';

// ------------------------------------------------------------------- cases

type Group = 'base' | 'workers2' | 'cache' | 'tls' | 'metrics';
type Kind = 'upstream' | 'hookgate' | 'nginx';

interface CaseDef {
  id: string;
  group: Group;
  name: string;
  kind: Kind;
  /** the upstream sees X-User from the auth step, and requests without a valid token get 401 */
  auth: boolean;
  tls: boolean;
  /** hookgate: the gateway's workers (undefined: the config does not say); nginx: 'base' (--nginx-workers) or 2 */
  workers?: number;
  /** hookgate: the on_request binding caches verdicts; nginx: proxy_cache on the auth location */
  cache: boolean;
  /** hookgate: the config field this case needs beyond today's, checked with `hookgate validate` */
  needs?: string;
  /** hookgate: `metrics: { requests: false }` (every other hookgate case runs with request metrics on, the default) */
  metricsOff?: boolean;
}

const CASES: CaseDef[] = [
  { id: 'a', group: 'base', name: 'upstream directly', kind: 'upstream', auth: false, tls: false, cache: false },
  { id: 'b', group: 'base', name: 'hookgate, no hook', kind: 'hookgate', auth: false, tls: false, cache: false },
  { id: 'c', group: 'base', name: 'hookgate + auth hook (SDK plugin)', kind: 'hookgate', auth: true, tls: false, cache: false },
  { id: 'd', group: 'base', name: 'nginx + auth_request (Node auth service)', kind: 'nginx', auth: true, tls: false, cache: false },
  { id: 'e', group: 'base', name: 'nginx, no auth', kind: 'nginx', auth: false, tls: false, cache: false },
  { id: 'c2', group: 'workers2', name: 'hookgate + auth hook, 2 workers', kind: 'hookgate', auth: true, tls: false, cache: false, workers: 2, needs: 'gateway.workers' },
  { id: 'd2', group: 'workers2', name: 'nginx + auth_request, 2 workers', kind: 'nginx', auth: true, tls: false, cache: false, workers: 2 },
  { id: 'cc', group: 'cache', name: 'hookgate + auth hook, cached verdicts', kind: 'hookgate', auth: true, tls: false, cache: true, needs: 'cache on a plugin binding' },
  { id: 'dc', group: 'cache', name: 'nginx + auth_request + proxy_cache', kind: 'nginx', auth: true, tls: false, cache: true },
  { id: 'ct', group: 'tls', name: 'hookgate + auth hook, TLS', kind: 'hookgate', auth: true, tls: true, cache: false, needs: 'gateway.tls' },
  { id: 'bm', group: 'metrics', name: 'hookgate, no hook, request metrics off', kind: 'hookgate', auth: false, tls: false, cache: false, metricsOff: true, needs: 'metrics.requests' },
  { id: 'cm', group: 'metrics', name: 'hookgate + auth hook, metrics off', kind: 'hookgate', auth: true, tls: false, cache: false, metricsOff: true, needs: 'metrics.requests' },
  { id: 'dt', group: 'tls', name: 'nginx + auth_request, TLS', kind: 'nginx', auth: true, tls: true, cache: false },
];
const GROUPS: Group[] = ['base', 'workers2', 'cache', 'tls', 'metrics'];

/**
 * What the bench compares, x/y of the same round. `goal` is the acceptance
 * of the performance work: at least `min` (throughput) or at most `max`
 * (latency); none for the ones printed for information.
 */
interface Comparison {
  x: string;
  y: string;
  metric: 'rps' | 'p99_ms' | 'cpu_us_per_req';
  what: string;
  goal?: { min?: number; max?: number };
}
const COMPARISONS: Comparison[] = [
  { x: 'c', y: 'd', metric: 'rps', what: 'hookgate+hook vs nginx+auth_request', goal: { min: 1.0 } },
  { x: 'c', y: 'b', metric: 'rps', what: "the hook's own cost", goal: { min: 0.9 } },
  { x: 'c', y: 'd', metric: 'p99_ms', what: 'p99 latency, hookgate+hook vs nginx+auth_request', goal: { max: 1.0 } },
  { x: 'c', y: 'd', metric: 'cpu_us_per_req', what: 'CPU per request (>1: hookgate spends more)' },
  { x: 'b', y: 'e', metric: 'rps', what: 'hookgate vs nginx, no auth' },
  { x: 'b', y: 'e', metric: 'cpu_us_per_req', what: 'CPU per request, no auth' },
  { x: 'd', y: 'e', metric: 'rps', what: "auth_request's own cost in nginx" },
  { x: 'c2', y: 'd2', metric: 'rps', what: '2 workers: hookgate+hook vs nginx+auth_request', goal: { min: 1.0 } },
  { x: 'c2', y: 'd2', metric: 'p99_ms', what: '2 workers: p99 latency' },
  { x: 'c2', y: 'd2', metric: 'cpu_us_per_req', what: '2 workers: CPU per request' },
  { x: 'cc', y: 'dc', metric: 'rps', what: 'cached verdicts: hookgate vs nginx proxy_cache', goal: { min: 1.0 } },
  { x: 'cc', y: 'b', metric: 'rps', what: 'cached verdicts vs hookgate without a hook', goal: { min: 0.95 } },
  { x: 'cc', y: 'dc', metric: 'cpu_us_per_req', what: 'cached verdicts: CPU per request' },
  { x: 'ct', y: 'dt', metric: 'rps', what: 'TLS: hookgate+hook vs nginx+auth_request' },
  { x: 'ct', y: 'dt', metric: 'cpu_us_per_req', what: 'TLS: CPU per request' },
  { x: 'b', y: 'bm', metric: 'rps', what: 'request metrics on (default) vs off, no hook' },
  { x: 'b', y: 'bm', metric: 'cpu_us_per_req', what: 'request metrics on vs off: CPU per request, no hook' },
  { x: 'c', y: 'cm', metric: 'rps', what: 'request metrics on (default) vs off, auth hook' },
  { x: 'c', y: 'cm', metric: 'cpu_us_per_req', what: 'request metrics on vs off: CPU per request, auth hook' },
];

// ---------------------------------------------------------------- options

const { values: argv } = parseArgs({
  allowNegative: true,
  options: {
    profile: { type: 'boolean' },
    'keep-profile': { type: 'boolean', default: false },
    ...LOAD_OPTIONS,
    cases: { type: 'string' },
    'nginx-workers': { type: 'string' },
  },
});
const env = process.env;
const roundsGiven = argv.rounds ?? env.BENCH_ROUNDS;
const opt = {
  profile: argv.profile ?? !['0', 'false', 'no', 'off'].includes((env.BENCH_PROFILE ?? '1').toLowerCase()),
  keepProfile: argv['keep-profile'],
  ...loadOptions(argv, { duration: '5s', warmup: '1s', connections: 64, threads: 2, rounds: 1 }),
  cases: argv.cases ?? env.BENCH_CASES ?? GROUPS.join(','),
  nginxWorkers: argv['nginx-workers'] ?? env.BENCH_NGINX_WORKERS ?? '1',
};
if (!/^(auto|[1-9]\d*)$/.test(opt.nginxWorkers)) usage('--nginx-workers: expected a number or "auto"');

/** The case ids --cases selects, and the ones it names one by one (those run even when their partner is skipped). */
function selectCases(list: string): { selected: Set<string>; named: Set<string> } {
  const selected = new Set<string>();
  const named = new Set<string>();
  for (const word of list.split(',').map((w) => w.trim()).filter(Boolean)) {
    if ((GROUPS as string[]).includes(word)) {
      for (const c of CASES) if (c.group === word) selected.add(c.id);
    } else if (CASES.some((c) => c.id === word)) {
      selected.add(word);
      named.add(word);
    } else {
      usage(`--cases: unknown "${word}"; expected groups (${GROUPS.join(', ')}) and/or case ids (${CASES.map((c) => c.id).join(', ')})`);
    }
  }
  if (!selected.size) usage('--cases: no case selected');
  return { selected, named };
}
const selection = selectCases(opt.cases);

/** The longest warmup: the first run of each case, when the JIT and the connection pools are cold. */
const FIRST_WARMUP_S = Math.max(3, seconds(opt.warmup));
/** The profiled run of (c): at least 10 s, so the process's start-up does not dominate its profile. */
const PROFILE_DURATION = `${Math.max(10, seconds(opt.duration))}s`;
/** Load time (warmups included) the default number of rounds is chosen to fit in, so a default run stays under ~3 minutes. */
const LOAD_BUDGET_S = 140;

const TOKEN = 'bench-token';
const USER = 'bench';
const PATH = '/api/items/42';
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const UPSTREAM_BODY_BYTES = 100;
/** How long the cached cases keep a verdict (hookgate's binding and nginx's proxy_cache_valid). */
const CACHE_TTL = '30s';

/**
 * Metrics: every hookgate case measures with request metrics on (the
 * default) but (bm) and (cm), which turn them off (`metrics: { requests:
 * false }`) to show what recording costs; printed with the results and
 * written to the report.
 */
const METRICS_NOTE = 'request metrics on (the default) in every hookgate case but (bm) and (cm): metrics: { requests: false }';

let tmp = '';

// --------------------------------------------------------------- hookgate

interface HookgateVariant {
  auth: boolean;
  workers?: number;
  cache: boolean;
  tls?: { cert: string; key: string };
  metricsOff?: boolean;
}

function hookgateConfig(upstreamPort: number, v: HookgateVariant): object {
  const binding = v.cache ? { plugin: 'auth', cache: { ttl: CACHE_TTL } } : 'auth';
  return {
    gateway: { listen: '127.0.0.1:0', ...(v.workers !== undefined ? { workers: v.workers } : {}), ...(v.tls ? { tls: v.tls } : {}) },
    admin: { listen: '127.0.0.1:0' },
    ...(v.metricsOff ? { metrics: { requests: false } } : {}),
    routes: [
      {
        id: 'bench',
        ...(v.auth ? { plugins: [binding] } : {}),
        balancer: { targets: [`127.0.0.1:${upstreamPort}`] },
        action: { type: 'proxy', upstream: 'http://{target}' },
      },
    ],
    ...(v.auth
      ? { plugins: { auth: { path: join(ROOT, 'examples/plugins/auth.ts'), env: { HOOKGATE_AUTH_TOKENS: `${TOKEN}:${USER}` } } } }
      : {}),
  };
}

const execFileP = promisify(execFile);

/**
 * `hookgate validate` on `config` (written to the temp dir as `<name>.json5`):
 * undefined when valid, else the problems it printed (one line).
 */
async function validateProblems(name: string, config: object): Promise<string | undefined> {
  const file = join(tmp, `${name}.validate.json5`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  try {
    await execFileP(process.execPath, [join(ROOT, 'node-runner/cli/cli.ts'), 'validate', file], { cwd: ROOT, encoding: 'utf8' });
    return undefined;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const problems = (e.stderr ?? '').split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim());
    return problems.length ? problems.join('; ') : (e.stderr?.trim() || e.message);
  }
}

// ------------------------------------------------------------------ nginx

interface NginxServer {
  id: string;
  port: number;
  auth: boolean;
  cache: boolean;
  tls?: { cert: string; key: string };
}

function nginxConf(dir: string, p: { workers: string; upstream: number; auth: number; servers: NginxServer[] }): string {
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
  const server = (s: NginxServer) => {
    const listen = s.tls
      ? [
          `listen 127.0.0.1:${s.port} ssl;`,
          `ssl_certificate ${s.tls.cert};`,
          `ssl_certificate_key ${s.tls.key};`,
          'ssl_protocols TLSv1.2 TLSv1.3;',
          'ssl_session_cache shared:SSL:1m;',
        ]
      : [`listen 127.0.0.1:${s.port};`];
    if (!s.auth) {
      return `    # (${s.id}) proxy, no auth
    server {
${ind(listen, 8)}
        location / {
${ind(forward, 12)}
            proxy_pass http://app;
        }
    }`;
    }
    // The cache of verdicts: the auth service's 200 (with its X-User), keyed on
    // the Authorization header alone, as a verdict cache keyed on the token would be.
    const cache = s.cache
      ? ['proxy_cache auth_verdicts;', 'proxy_cache_key $http_authorization;', `proxy_cache_valid 200 ${CACHE_TTL};`, 'proxy_cache_lock on;']
      : [];
    return `    # (${s.id}) proxy with auth_request to bench/auth-service.ts${s.cache ? ', verdicts cached' : ''}${s.tls ? ', TLS' : ''}
    server {
${ind(listen, 8)}
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
${ind(cache, 12)}
            proxy_pass http://auth;
        }
    }`;
  };
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
${p.servers.some((s) => s.cache) ? `    proxy_cache_path ${dir}/auth_cache levels=1 keys_zone=auth_verdicts:1m max_size=10m inactive=60s;\n` : ''}
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

${p.servers.map(server).join('\n\n')}
}
`;
}

interface Nginx {
  proc: Proc;
  conf: string;
  dir: string;
}

/** Writes the config to `<tmp>/<name>/nginx.conf`, checks it with `nginx -t` and starts nginx in the foreground. */
function startNginx(bin: string, name: string, p: Parameters<typeof nginxConf>[1]): Nginx {
  const dir = join(tmp, name);
  mkdirSync(dir, { mode: 0o755 });
  const conf = nginxConf(dir, p);
  const confFile = join(dir, 'nginx.conf');
  writeFileSync(confFile, conf);
  const args = ['-c', confFile, '-p', dir, '-e', join(dir, 'error.log')];
  const test = spawnSync(bin, [...args, '-t', '-q'], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx rejects the generated config ${confFile}:\n${test.stderr}${test.stdout}`);
  return { proc: start(name, bin, [...args, '-g', 'daemon off;']), conf, dir };
}

/** A self-signed P-256 certificate for 127.0.0.1 in the temp dir (both TLS cases use it). */
function makeCert(): { cert: string; key: string } {
  const cert = join(tmp, 'cert.pem');
  const key = join(tmp, 'key.pem');
  const r = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make the TLS cases' certificate (exit ${r.status ?? r.error?.message}):\n${r.stderr}`);
  return { cert, key };
}

// --------------------------------------------------------------------- wrk

/** Every case gets the same load and the same request (the token too, where no one checks it). */
const load = (duration: string): WrkLoad => ({ threads: opt.threads, connections: opt.connections, duration, headers: [AUTH_HEADER] });

// ----------------------------------------------------------------- running

/** A case ready to measure: where it listens and which processes are its setup. */
interface Live extends CaseDef {
  base: string;
  /** roots of the process trees whose CPU counts for this case */
  pids: number[];
  /** for the nginx cases with auth: the auth service, whose checks are counted around each run */
  authService?: string;
}

/** Before loading a case: a request gets the upstream's body; with auth, the user reaches the upstream and no token or a wrong one gets 401. */
async function sanity(c: Live, ca: string | undefined): Promise<void> {
  const req = (path: string, token?: string) => get(`${c.base}${path}`, token ? { authorization: `Bearer ${token}` } : {}, { ca });
  const ok = await until(`(${c.id}) ${c.name}: GET ${c.base}${PATH} = 200`, 15_000, async () => {
    const r = await req(PATH, TOKEN);
    return r.status === 200 ? r : undefined;
  });
  if (Buffer.byteLength(ok.body) !== UPSTREAM_BODY_BYTES) throw new Error(`(${c.id}) ${c.name}: expected the upstream's ${UPSTREAM_BODY_BYTES}-byte body, got ${JSON.stringify(ok.body)}`);
  if (!c.auth) return;
  const who = await req('/__whoami', TOKEN);
  if (who.status !== 200 || who.body !== USER) throw new Error(`(${c.id}) ${c.name}: the upstream should see X-User: ${USER}; got ${who.status} ${JSON.stringify(who.body)}`);
  const none = await req(PATH);
  if (none.status !== 401) throw new Error(`(${c.id}) ${c.name}: a request without a token should get 401, got ${none.status}`);
  const bad = await req(PATH, 'wrong-token');
  if (bad.status !== 401) throw new Error(`(${c.id}) ${c.name}: a request with a wrong token should get 401, got ${bad.status}`);
  if (c.cache && c.authService) {
    // The verdict is cached by now: more requests with the token reach the auth service no more.
    const before = await authChecks(c.authService);
    for (let i = 0; i < 3; i++) {
      const r = await req('/__whoami', TOKEN);
      if (r.status !== 200 || r.body !== USER) throw new Error(`(${c.id}) ${c.name}: a cached verdict should still pass X-User: ${USER}; got ${r.status} ${JSON.stringify(r.body)}`);
    }
    const after = await authChecks(c.authService);
    if (after !== before) throw new Error(`(${c.id}) ${c.name}: the verdict should be cached, but ${after - before} of 3 requests reached the auth service`);
  }
}

async function authChecks(base: string): Promise<number> {
  return Number((await get(`${base}/__count`)).body);
}

/** One measured run: wrk's numbers, and the CPU the setup, the upstream and the machine spent meanwhile. */
interface Run extends WrkRun {
  cpu_s: number;
  cpu_us_per_req: number;
  /** the setup's CPU seconds per second of the run */
  cores: number;
  upstream_cpu_us_per_req: number;
  /** cpu_us_per_req split by process (`roleOf`): where a setup's CPU goes */
  cpu_us_per_req_by_process: Record<string, number>;
  /** busy cores of the whole machine during the run (everyone's work, other engineers' included) */
  machine_busy_cores: number;
  /** nginx cases with auth: checks that reached the auth service during the run */
  auth_checks?: number;
}

/** Which part of a setup a process is, from its command line. */
function roleOf(cmd: string): string {
  if (cmd.includes('gateway-worker')) return 'workers';
  if (cmd.includes('keeper')) return 'keeper';
  if (cmd.includes('plugins/')) return 'plugin';
  if (cmd.includes('cli.ts') || cmd.includes('cli.js')) return 'serve';
  if (cmd.includes('auth-service')) return 'auth service';
  if (cmd.startsWith('nginx')) return 'nginx';
  return 'other';
}

async function measure(c: Live, upstreamPid: number, duration: string, label: string): Promise<Run> {
  const authBefore = c.authService ? await authChecks(c.authService) : undefined;
  const groups = { setup: c.pids, upstream: [upstreamPid] };
  const roles0 = cpuSecondsByRole(c.pids, roleOf);
  const cpu0 = cpuSeconds(groups);
  const m0 = machineCpuSeconds();
  const t0 = performance.now();
  const r = await runWrk(label, `${c.base}${PATH}`, load(duration));
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(groups);
  const roles1 = cpuSecondsByRole(c.pids, roleOf);
  const m1 = machineCpuSeconds();
  const authAfter = c.authService ? await authChecks(c.authService) : undefined;
  const cpu = cpu1.setup - cpu0.setup;
  const us = (s: number) => +((s * 1e6) / r.requests).toFixed(1);
  return {
    ...r,
    cpu_s: +cpu.toFixed(2),
    cpu_us_per_req: us(cpu),
    cores: +(cpu / wall).toFixed(2),
    upstream_cpu_us_per_req: us(cpu1.upstream - cpu0.upstream),
    cpu_us_per_req_by_process: Object.fromEntries(Object.keys(roles1).sort().map((k) => [k, us(roles1[k] - (roles0[k] ?? 0))])),
    machine_busy_cores: +((m1.busy - m0.busy) / wall).toFixed(2),
    ...(authBefore !== undefined && authAfter !== undefined ? { auth_checks: authAfter - authBefore } : {}),
  };
}

const METRICS = ['rps', 'p50_ms', 'p99_ms', 'cpu_us_per_req', 'cores'] as const;
type Summary = Record<(typeof METRICS)[number], number>;

function summarize(runs: Run[]): Summary {
  const out = {} as Summary;
  for (const m of METRICS) out[m] = medianOf(runs.map((r) => r[m]));
  out.rps = Math.round(out.rps);
  return out;
}

const fmt = (v: number, digits = 3) => (Number.isFinite(v) ? v.toFixed(digits) : '-');

// -------------------------------------------------------------------- main

async function main(): Promise<void> {
  setupTools();
  const NGINX = which('nginx', ['/usr/sbin', '/usr/local/sbin']);
  if (!NGINX) throw new Error('nginx not found after bench/setup.sh');
  const machine = describeMachine({ nginx: firstLine(NGINX, ['-v']).replace(/^nginx version:\s*/, '') });

  tmp = tempDir('hookgate-gwbench-');
  chmodSync(tmp, 0o755); // nginx workers run as nobody when started by root

  const chosen = CASES.filter((c) => selection.selected.has(c.id));
  const groupsOn = new Set(chosen.map((c) => c.group));
  const tls = groupsOn.has('tls') ? makeCert() : undefined;
  const ca = tls ? readFileSync(tls.cert, 'utf8') : undefined;

  const upstream = await startService('upstream', './upstream.ts');
  const auth = await startService('auth-service', './auth-service.ts', { HOOKGATE_AUTH_TOKENS: `${TOKEN}:${USER}` });
  const authBase = `http://127.0.0.1:${auth.port}`;

  // Which hookgate cases this hookgate supports: `hookgate validate` on each case's own config.
  const variant = (c: CaseDef, workersField: boolean): HookgateVariant => ({
    auth: c.auth,
    cache: c.cache,
    metricsOff: c.metricsOff,
    // Once hookgate has workers, the 1-worker cases say so: their default may change.
    workers: c.workers ?? (workersField ? 1 : undefined),
    tls: c.tls ? tls : undefined,
  });
  const skipped = new Map<string, string>();
  const needing = CASES.filter((c) => c.kind === 'hookgate' && c.needs && groupsOn.has(c.group));
  const [workersProblem, ...problems] = await Promise.all([
    validateProblems('workers1', hookgateConfig(upstream.port, { auth: true, cache: false, workers: 1 })),
    ...needing.map((c) => validateProblems(c.id, hookgateConfig(upstream.port, variant(c, false)))),
  ]);
  const workersField = workersProblem === undefined;
  needing.forEach((c, i) => {
    if (problems[i]) skipped.set(c.id, `this hookgate has no ${c.needs} yet (validate: ${problems[i]})`);
  });
  for (const c of chosen) {
    if (c.kind !== 'nginx' || selection.named.has(c.id)) continue;
    const partner = CASES.find((p) => p.group === c.group && p.kind === 'hookgate' && p.needs);
    if (partner && skipped.has(partner.id)) skipped.set(c.id, `config checked, not measured: (${partner.id}) is skipped; --cases ${c.id} measures it alone`);
  }

  // Start what the selected cases need: hookgate per case, nginx once per worker count.
  const hookgates = new Map<string, Hookgate>();
  const toStart = chosen.filter((c) => c.kind === 'hookgate' && !skipped.has(c.id));
  await Promise.all(toStart.map(async (c) => hookgates.set(c.id, await startHookgate(`hookgate-${c.id}`, hookgateConfig(upstream.port, variant(c, workersField)), tmp))));
  const nginxCases = chosen.filter((c) => c.kind === 'nginx');
  const ports = new Map<string, number>();
  for (const c of nginxCases) ports.set(c.id, await freePort());
  const serversOf = (two: boolean): NginxServer[] =>
    nginxCases.filter((c) => (c.workers === 2) === two).map((c) => ({ id: c.id, port: ports.get(c.id)!, auth: c.auth, cache: c.cache, tls: c.tls ? tls : undefined }));
  const nginxes = new Map<'base' | 'two', Nginx>();
  for (const [key, two, workers] of [['base', false, opt.nginxWorkers], ['two', true, '2']] as const) {
    const servers = serversOf(two);
    if (servers.length) nginxes.set(key, startNginx(NGINX, `nginx-${two ? 'w2' : 'base'}`, { workers, upstream: upstream.port, auth: auth.port, servers }));
  }

  const live: Live[] = chosen.map((c) => {
    const scheme = c.tls ? 'https' : 'http';
    if (c.kind === 'upstream') return { ...c, base: `http://127.0.0.1:${upstream.port}`, pids: [upstream.proc.child.pid!] };
    if (c.kind === 'hookgate') {
      const hg = hookgates.get(c.id);
      return { ...c, base: hg?.gateway.replace(/^http:/, `${scheme}:`) ?? '', pids: hg ? [hg.proc.child.pid!] : [] };
    }
    const ng = nginxes.get(c.workers === 2 ? 'two' : 'base')!;
    return {
      ...c,
      base: `${scheme}://127.0.0.1:${ports.get(c.id)}`,
      pids: [ng.proc.child.pid!, ...(c.auth ? [auth.proc.child.pid!] : [])],
      ...(c.auth ? { authService: authBase } : {}),
    };
  });
  const checked = live.filter((c) => c.kind !== 'hookgate' || hookgates.has(c.id));
  try {
    for (const c of checked) await sanity(c, ca);
  } catch (err) {
    const logs = [...nginxes.values()].map((n) => readFileSafe(join(n.dir, 'error.log'))).filter(Boolean).join('\n');
    throw new Error(`${(err as Error).message}${logs ? `\nnginx error.log:\n${logs}` : ''}`);
  }
  const measured = live.filter((c) => !skipped.has(c.id));
  if (!measured.length) throw new Error(`no case left to measure; skipped: ${[...skipped].map(([id, why]) => `(${id}) ${why}`).join('; ')}`);

  const perRound = measured.length * (seconds(opt.warmup) + seconds(opt.duration));
  const firstExtra = measured.length * (FIRST_WARMUP_S - seconds(opt.warmup));
  const rounds = roundsGiven !== undefined ? opt.rounds : Math.max(1, Math.floor((LOAD_BUDGET_S - firstExtra) / perRound));

  const wrkCmd = `wrk ${shellArgs(wrkArgs(load(opt.duration), '<url>'))}`;
  const loadBefore = loadNow();
  console.log(`\ngateway bench: ${machine.cores} cores (${machine.cpu}), node ${machine.node}, nginx ${machine.nginx}, ${machine.wrk}`);
  console.log(`load average before: ${loadBefore.join(' ')}  (the machine is shared: compare ratios within this run)`);
  console.log(`metrics: ${METRICS_NOTE}`);
  console.log(`load per run: ${wrkCmd}  (path ${PATH}), after a warmup of ${opt.warmup} (${FIRST_WARMUP_S} s on each case's first run)`);
  console.log(`${rounds} interleaved round(s) of ${measured.map((c) => c.id).join(' ')}: about ${Math.round(firstExtra + rounds * perRound)} s of load\n`);

  const runs = new Map<string, Run[]>(measured.map((c) => [c.id, []]));
  for (let round = 0; round < rounds; round++) {
    for (const c of measured) {
      const warm = round === 0 ? `${FIRST_WARMUP_S}s` : opt.warmup;
      if (seconds(warm) > 0) await runWrk(`(${c.id}) ${c.name} warmup`, `${c.base}${PATH}`, load(warm));
      const r = await measure(c, upstream.proc.child.pid!, opt.duration, `(${c.id}) ${c.name}`);
      runs.get(c.id)!.push(r);
      process.stderr.write(`  round ${round + 1}/${rounds} (${c.id}) ${Math.round(r.rps)} req/s, p99 ${r.p99_ms} ms, ${r.cpu_us_per_req} µs CPU/req (${r.cores} cores; machine busy ${r.machine_busy_cores})\n`);
    }
  }
  assertRunning([...[...hookgates.values()].map((h) => h.proc), ...[...nginxes.values()].map((n) => n.proc), upstream.proc, auth.proc], 'during the bench');
  const loadAfter = loadNow();

  const results = measured.map((c) => ({ case: c.id, name: c.name, url: `${c.base}${PATH}`, ...summarize(runs.get(c.id)!), runs: runs.get(c.id)! }));
  const by = new Map(results.map((r) => [r.case, r]));

  console.log(`case                                             req/s   p50 ms   p99 ms  CPU µs/req  cores   (medians of ${rounds} round(s))`);
  for (const r of results) {
    console.log(`${`(${r.case})`.padEnd(5)} ${r.name.padEnd(40)} ${String(r.rps).padStart(8)} ${fmt(r.p50_ms, 2).padStart(8)} ${fmt(r.p99_ms, 2).padStart(8)} ${fmt(r.cpu_us_per_req, 1).padStart(11)} ${fmt(r.cores, 2).padStart(6)}`);
  }
  for (const c of chosen.filter((c) => skipped.has(c.id))) console.log(`${`(${c.id})`.padEnd(5)} ${c.name.padEnd(40)} skipped: ${skipped.get(c.id)}`);
  const dc = by.get('dc');
  if (dc) {
    const checks = dc.runs.reduce((s, r) => s + (r.auth_checks ?? 0), 0);
    const reqs = dc.runs.reduce((s, r) => s + r.requests, 0);
    console.log(`(dc) verdict cache: ${checks} of ${reqs} requests reached the auth service in the measured runs (hit rate ${fmt(100 * (1 - checks / reqs), 2)} %)`);
  }
  console.log(`CPU µs/req: user+sys of the setup's processes over the requests completed (hookgate: serve, workers, keeper, plugin;`);
  console.log(`nginx: master, workers, auth service; the upstream and wrk count for neither). cores: that CPU per second of the run.`);
  console.log(`CPU µs/req by process (medians over the rounds):`);
  for (const r of results) {
    const roles = [...new Set(r.runs.flatMap((x) => Object.keys(x.cpu_us_per_req_by_process)))].sort();
    const parts = roles.map((k) => `${k} ${fmt(medianOf(r.runs.map((x) => x.cpu_us_per_req_by_process[k] ?? 0)), 1)}`);
    console.log(`  ${`(${r.case})`.padEnd(5)} ${parts.join(', ')}`);
  }

  const ratios = COMPARISONS.filter((cmp) => selection.selected.has(cmp.x) && selection.selected.has(cmp.y)).map((cmp) => {
    const x = by.get(cmp.x);
    const y = by.get(cmp.y);
    const name = `${cmp.x}/${cmp.y} ${cmp.metric}`;
    if (!x || !y) {
      // Name the case that causes the skip (hookgate's), not the nginx side skipped because of it.
      const off = [cmp.x, cmp.y].filter((id) => !by.has(id));
      const causes = off.filter((id) => !skipped.get(id)?.startsWith('config checked'));
      const why = (causes.length ? causes : off).map((id) => `(${id}) ${skipped.get(id) ?? 'is not running'}`).join('; ');
      return { ratio: name, what: cmp.what, goal: cmp.goal, skipped: why };
    }
    const per = x.runs.map((rx, i) => +(rx[cmp.metric] / y.runs[i][cmp.metric]).toFixed(3));
    const med = +medianOf(per).toFixed(3);
    const met = cmp.goal ? (cmp.goal.min !== undefined ? med >= cmp.goal.min : med <= cmp.goal.max!) : undefined;
    return {
      ratio: name,
      what: cmp.what,
      of_medians: +(x[cmp.metric] / y[cmp.metric]).toFixed(3),
      per_round: { min: Math.min(...per), median: med, max: Math.max(...per), all: per },
      goal: cmp.goal,
      met,
    };
  });

  const c = opt.connections;
  console.log(`\nratio x/y                of medians   per round: min  median     max   goal (judged on the per-round median)`);
  const metricName = (m: string) => m.replace('rps', 'req/s').replace('p99_ms', `p99 @c=${c}`).replace('cpu_us_per_req', 'CPU/req');
  const skippedPairs = new Map<string, { metrics: string[]; why: string }>();
  for (const r of ratios) {
    const label = metricName(r.ratio).padEnd(24);
    const goal = r.goal ? (r.goal.min !== undefined ? `>= ${r.goal.min.toFixed(r.goal.min * 10 % 1 ? 2 : 1)}` : `<= ${r.goal.max!.toFixed(r.goal.max! * 10 % 1 ? 2 : 1)}`) : '';
    if ('skipped' in r) {
      // One line per skipped pair, naming its ratios.
      const [pair, metric] = r.ratio.split(' ');
      const entry = skippedPairs.get(pair) ?? { metrics: [] as string[], why: String(r.skipped) };
      entry.metrics.push(metricName(metric) + (goal ? ` (goal ${goal})` : ''));
      skippedPairs.set(pair, entry);
      continue;
    }
    const verdict = r.met === undefined ? '' : `${goal}: ${r.met ? 'met' : 'NOT met'}`;
    console.log(`${label} ${fmt(r.of_medians).padStart(10)} ${fmt(r.per_round.min).padStart(15)} ${fmt(r.per_round.median).padStart(7)} ${fmt(r.per_round.max).padStart(7)}   ${verdict.padEnd(18)} ${r.what}`);
  }
  for (const [pair, e] of skippedPairs) console.log(`${pair.padEnd(24)} skipped (${e.metrics.join(', ')}): ${e.why}`);
  console.log(`load average after: ${loadAfter.join(' ')}`);

  const { file, stamp } = resultsFile('gateway');
  const report: Record<string, unknown> = {
    bench: 'gateway',
    date: stamp,
    machine: { ...machine, loadavg_after: loadAfter },
    wrk: {
      threads: opt.threads,
      connections: opt.connections,
      duration: opt.duration,
      warmup: opt.warmup,
      first_warmup: `${FIRST_WARMUP_S}s`,
      latency: true,
      timeout: '2s (wrk default)',
      header: AUTH_HEADER,
      path: PATH,
      command: `${wrkCmd}; warmup: the same with -d ${opt.warmup} (${FIRST_WARMUP_S}s on each case's first run)`,
    },
    rounds,
    order: measured.map((c) => c.id),
    cpu: 'user+sys (utime+stime+cutime+cstime of /proc/<pid>/stat) of every process in the setup\'s trees, before and after each measured run, over requests completed; the upstream counts for no proxy case, wrk for none',
    metrics: METRICS_NOTE,
    upstream: { body_bytes: UPSTREAM_BODY_BYTES, server: 'bench/upstream.ts (node:http, keep-alive)' },
    hookgate: {
      command: 'node node-runner/cli/cli.ts serve --config <file> --state-dir <dir>',
      workers_field: workersField,
      configs: Object.fromEntries(chosen.filter((c) => c.kind === 'hookgate').map((c) => [c.id, hookgateConfig(upstream.port, variant(c, workersField))])),
    },
    nginx: Object.fromEntries([...nginxes].map(([k, n]) => [k, { worker_processes: k === 'two' ? '2' : opt.nginxWorkers, config: n.conf }])),
    skipped: Object.fromEntries(skipped),
    cases: results,
    ratios,
  };
  const save = () => writeJson(file, report);
  save();

  // The other setups are not needed any more: the profile run has the machine to itself.
  await Promise.all([...[...hookgates.values()].map((h) => h.proc), ...[...nginxes.values()].map((n) => n.proc), auth.proc].map((p) => stop(p)));

  if (opt.profile && by.has('c')) {
    const profDir = join(tmp, 'cpuprofile');
    mkdirSync(profDir);
    // The flags go to the serve process only; its plugin processes are not profiled.
    const cDef = CASES.find((x) => x.id === 'c')!;
    const hp = await startHookgate('hookgate-profile', hookgateConfig(upstream.port, variant(cDef, workersField)), tmp, ['--cpu-prof', '--cpu-prof-dir', profDir]);
    const pc: Live = { ...cDef, name: 'hookgate + auth hook, profiled', base: hp.gateway, pids: [hp.proc.child.pid!] };
    await sanity(pc, undefined);
    const pr = await runWrk(`(c) profiled`, `${pc.base}${PATH}`, load(PROFILE_DURATION));
    await stop(hp.proc, 'SIGTERM', 20_000);
    if (hp.proc.child.exitCode !== 0) throw new Error(`the profiled gateway did not exit cleanly on SIGTERM (${hp.proc.child.signalCode ?? `code ${hp.proc.child.exitCode}`})\n${tail(hp.proc)}`);
    const mine = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${hp.proc.child.pid}.`));
    if (mine.length !== 1) throw new Error(`expected one .cpuprofile of pid ${hp.proc.child.pid} in ${profDir}, found: ${readdirSync(profDir).join(', ') || 'none'}`);
    const profFile = join(profDir, mine[0]);
    const summary: ProfileSummary = summarizeProfile(JSON.parse(readFileSync(profFile, 'utf8')) as CpuProfile, 15);
    console.log(`\nwhere the time goes: CPU profile of the hookgate gateway process, case (c), under ${shellArgs(['wrk', ...wrkArgs(load(PROFILE_DURATION), `${pc.base}${PATH}`)])}`);
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
  report.run_seconds = elapsedSeconds();
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

await runBench(main);
