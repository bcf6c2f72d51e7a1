/**
 * @module bench/etcd
 * From `config push` to applied, on a fleet: a 3-member etcd cluster on
 * loopback (Debian's etcd-server; `bench/setup.sh`-style install when
 * missing), N runners (`hookgate serve --config-etcd`, default 10), and
 * `--pushes` changes (default 10), each one transaction of three keys
 * (a new action, the route pointing at it, the old action deleted), made
 * the way `hookgate config push` makes it (`writeAll`). For each push: the
 * time from starting the transaction to each runner's "config applied from
 * etcd" line for that revision (the runner's own clock: same machine).
 * Prints p50 / p90 / max over all runners and pushes, and the slowest
 * runner per push; writes bench/results/etcd-<time>.json.
 *
 * `npm run bench:etcd [-- --runners N --pushes N]`
 */

import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { itemsOf } from '../src/core/config/config-doc.ts';
import { etcdSettings, openEtcd, writeAll } from '../node-runner/config/etcd.ts';
import { freePort, get, resultsFile, ROOT, runBench, start, tempDir, until, waitFor, writeJson, type Proc } from './lib.ts';

const { values } = parseArgs({ options: { runners: { type: 'string', default: '10' }, pushes: { type: 'string', default: '10' } } });
const RUNNERS = Math.max(1, Number(values.runners) || 10);
const PUSHES = Math.max(1, Number(values.pushes) || 10);

function ensureEtcd(): string {
  if (existsSync('/usr/bin/etcd')) return '/usr/bin/etcd';
  if (process.getuid?.() !== 0) throw new Error('BENCH FAILED: etcd is not installed (apt-get install etcd-server)');
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  spawnSync('apt-get', ['install', '-y', '-qq', 'etcd-server'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return '/usr/bin/etcd';
}

const config = (n: number) => ({
  routes: [{ id: 'a', match: { path: '/a' }, action: `v${n}` }],
  actions: { [`v${n}`]: { type: 'static', body: `v${n}\n` } },
});

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

await runBench(async () => {
  const bin = ensureEtcd();
  const dir = tempDir('hookgate-bench-etcd-');
  const members = await Promise.all([1, 2, 3].map(async (i) => ({ name: `m${i}`, client: `http://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}` })));
  const cluster = members.map((m) => `${m.name}=${m.peer}`).join(',');
  for (const m of members) {
    start(`etcd-${m.name}`, bin, [
      '--name', m.name, '--data-dir', join(dir, m.name),
      '--listen-client-urls', m.client, '--advertise-client-urls', m.client,
      '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer,
      '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--log-level', 'error',
    ]);
  }
  for (const m of members) await until(`${m.name} healthy`, 30_000, async () => ((await get(`${m.client}/health`).catch(() => null))?.status === 200 ? true : undefined));
  const endpoints = members.map((m) => m.client).join(',');
  const settings = etcdSettings(endpoints, '--etcd', {});
  const client = await openEtcd(settings);
  try {
    await writeAll(client, settings.prefix, itemsOf(config(0)));

    const runners: Array<{ proc: Proc; gateway: string }> = [];
    for (let i = 0; i < RUNNERS; i++) {
      const boot = join(dir, `r${i}.json5`);
      writeFileSync(boot, JSON.stringify({ gateway: { listen: '127.0.0.1:0' }, admin: { listen: '127.0.0.1:0' } }));
      const proc = start(`runner-${i}`, process.execPath, [join(ROOT, 'node-runner/cli/cli.ts'), 'serve', '--config-etcd', endpoints, '--config', boot, '--state-dir', join(dir, `r${i}.state`)], {
        env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info', HOOKGATE_LOG_FORMAT: 'json' },
      });
      const gateway = await waitFor(proc, 'gateway listening', (l) => (l.includes('"gateway listening"') ? (JSON.parse(l) as { url: string }).url : undefined), 60_000);
      runners.push({ proc, gateway });
    }
    for (const r of runners) await until(`${r.gateway}/a = v0`, 60_000, async () => ((await get(`${r.gateway}/a`).catch(() => null))?.body === 'v0\n' ? true : undefined));

    const perPush: Array<{ revision: number; commit_ms: number; applied_ms: number[] }> = [];
    for (let n = 1; n <= PUSHES; n++) {
      const t0 = Date.now();
      const { revision } = await writeAll(client, settings.prefix, itemsOf(config(n)));
      const commitMs = Date.now() - t0;
      const applied = await Promise.all(
        runners.map((r) =>
          waitFor(r.proc, `config applied from etcd at revision ${revision}`, (l) => {
            if (!l.includes('"config applied from etcd"')) return undefined;
            const j = JSON.parse(l) as { revision?: number; time?: number };
            return j.revision === revision ? (j.time ?? 0) - t0 : undefined;
          }, 60_000),
        ),
      );
      perPush.push({ revision, commit_ms: commitMs, applied_ms: applied });
    }
    const all = perPush.flatMap((p) => p.applied_ms);
    const summary = { p50_ms: pct(all, 50), p90_ms: pct(all, 90), max_ms: Math.max(...all), slowest_runner_per_push_ms: perPush.map((p) => Math.max(...p.applied_ms)) };
    const report = {
      bench: 'etcd',
      command: `npm run bench:etcd -- --runners ${RUNNERS} --pushes ${PUSHES}`,
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, kernel: release(), node: process.version, etcd: spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0], loadavg: loadavg().map((x) => +x.toFixed(2)) },
      what: 'ms from the start of a 3-key etcd transaction to each runner logging "config applied from etcd" for its revision',
      runners: RUNNERS,
      pushes: perPush,
      summary,
    };
    const { file } = resultsFile('etcd');
    writeJson(file, report);
    console.log(`\npush → applied on ${RUNNERS} runners, ${PUSHES} pushes (3-member etcd, load ${report.machine.loadavg.join(' ')})`);
    console.log(`p50 ${summary.p50_ms} ms   p90 ${summary.p90_ms} ms   max ${summary.max_ms} ms`);
    console.log(`slowest runner per push: ${summary.slowest_runner_per_push_ms.join(', ')} ms`);
    console.log(`\n${file}`);
  } finally {
    client.close();
  }
});
