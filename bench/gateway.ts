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
 * Ctrl-C too; a watchdog process stops them if this process is killed
 * (the process, wrk and report machinery is shared with bench/edge.ts in
 * bench/lib.ts).
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
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  LOAD_OPTIONS, ROOT, assertRunning, describeMachine, elapsedSeconds, firstLine, freePort, get, loadOptions, median, resultsFile,
  runBench, seconds, setupTools, shellArgs, start, startHookgate, startService, stop, tail, tempDir, until, usage, which, wrk as runWrk,
  wrkArgs, writeJson, type WrkLoad, type WrkRun,
} from './lib.ts';
import { formatSummary, summarizeProfile, type CpuProfile, type ProfileSummary } from './profile-top.ts';

// ---------------------------------------------------------------- options

const { values: argv } = parseArgs({
  allowNegative: true,
  options: {
    profile: { type: 'boolean' },
    'keep-profile': { type: 'boolean', default: false },
    ...LOAD_OPTIONS,
    'nginx-workers': { type: 'string' },
  },
});
const env = process.env;
const opt = {
  profile: argv.profile ?? !['0', 'false', 'no', 'off'].includes((env.BENCH_PROFILE ?? '1').toLowerCase()),
  keepProfile: argv['keep-profile'],
  ...loadOptions(argv, { duration: '10s', warmup: '3s', connections: 64, threads: 2, rounds: 1 }),
  nginxWorkers: argv['nginx-workers'] ?? env.BENCH_NGINX_WORKERS ?? '1',
};
if (!/^(auto|[1-9]\d*)$/.test(opt.nginxWorkers)) usage('--nginx-workers: expected a number or "auto"');

const TOKEN = 'bench-token';
const USER = 'bench';
const PATH = '/api/items/42';
const AUTH_HEADER = `Authorization: Bearer ${TOKEN}`;
const UPSTREAM_BODY_BYTES = 100;

let tmp = '';

// --------------------------------------------------------------- services

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

/** The gateway under test: `startHookgate` with its config in the temp dir. */
const startGateway = (name: string, config: object, nodeArgs: string[] = []) => startHookgate(name, config, tmp, nodeArgs);

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

/** Every case gets the same load and the same request (the token too, where no one checks it). */
const load = (duration: string): WrkLoad => ({ threads: opt.threads, connections: opt.connections, duration, headers: [AUTH_HEADER] });
const wrk = (label: string, url: string, duration: string): Promise<WrkRun> => runWrk(label, url, load(duration));

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

// -------------------------------------------------------------------- main

async function main(): Promise<void> {
  setupTools();
  const NGINX = which('nginx', ['/usr/sbin', '/usr/local/sbin']);
  if (!NGINX) throw new Error('nginx not found after bench/setup.sh');

  const machine = describeMachine({ nginx: firstLine(NGINX, ['-v']).replace(/^nginx version:\s*/, '') });

  tmp = tempDir('hookgate-gwbench-');
  chmodSync(tmp, 0o755); // nginx workers run as nobody when started by root

  const upstream = await startService('upstream', './upstream.ts');
  const auth = await startService('auth-service', './auth-service.ts', { HOOKGATE_AUTH_TOKENS: `${TOKEN}:${USER}` });
  const [hgB, hgC] = await Promise.all([
    startGateway('hookgate-b', hookgateConfig(upstream.port, false)),
    startGateway('hookgate-c', hookgateConfig(upstream.port, true)),
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

  const wrkCmd = `wrk ${shellArgs(wrkArgs(load(opt.duration), '<url>'))}`;
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
  assertRunning([hgB.proc, hgC.proc, nginx, upstream.proc, auth.proc], 'during the bench');

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

  const { file, stamp } = resultsFile('gateway');
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
  const save = () => writeJson(file, report);
  save();

  // The gateways and nginx are not needed any more: the profile run has the machine to itself.
  await Promise.all([hgB.proc, hgC.proc, nginx, auth.proc].map((p) => stop(p)));

  if (opt.profile) {
    const profDir = join(tmp, 'cpuprofile');
    mkdirSync(profDir);
    // The flags go to the serve process only; its plugin processes are not profiled.
    const hp = await startGateway('hookgate-profile', hookgateConfig(upstream.port, true), ['--cpu-prof', '--cpu-prof-dir', profDir]);
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
