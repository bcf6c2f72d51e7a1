/**
 * etcd as the config source (issue 13): real 3-member etcd clusters on
 * loopback (Debian's etcd-server, installed when missing), real
 * `hookgate serve --config-etcd` runners, configs written with the real
 * `hookgate config push`. Shown: a push reaches every runner; a change of
 * several keys in one transaction applies as one version that no request
 * sees half of; the leader killed, changes still arrive; the whole cluster
 * down, runners keep serving and a restarted runner serves its last good
 * config, then catches up; a compaction while a runner was away means a
 * full read.
 */

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startConfigServer, startStreamRunner } from '../config-stream/harness.ts';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.ts';
import { request, waitFor } from '../helpers/http.ts';
import { baseConfig, runCli, startGateway, writeConfig, type Gateway } from '../helpers/processes.ts';
import { scope, tempDir, type Scope } from '../helpers/scope.ts';

const ENV = { HOOKGATE_STREAM_BACKOFF_MS: '50', HOOKGATE_STREAM_BACKOFF_MAX_MS: '300' };

/** A config whose /a answers `body` (through an action named after it) and /b answers "b". */
function config(body: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    routes: [
      { id: 'a', match: { path: '/a' }, action: `act-${body}` },
      { id: 'b', match: { path: '/b' }, action: { type: 'static', body: 'b\n' } },
    ],
    actions: { [`act-${body}`]: { type: 'static', body: `${body}\n` } },
    ...extra,
  };
}

/** `hookgate config push` of `cfg`; resolves with the revision it printed. */
async function push(dir: string, endpoints: string, cfg: Record<string, unknown>, args: string[] = []): Promise<number> {
  const file = join(dir, `push-${Date.now()}-${Math.random().toString(36).slice(2)}.json5`);
  writeFileSync(file, JSON.stringify(cfg));
  const res = await runCli(['config', 'push', file, '--etcd', endpoints, ...args]);
  assert.equal(res.code, 0, `config push failed:\n${res.stderr}`);
  const m = /at revision (\d+)/.exec(res.stdout);
  assert.ok(m, res.stdout);
  return Number(m[1]);
}

/** A runner following `endpoints`, its state in `stateDir` (a fresh one by default). */
function runner(s: Scope, endpoints: string, opts: { stateDir?: string; bootstrap?: string } = {}): Promise<Gateway> {
  const dir = tempDir(s);
  const stateDir = opts.stateDir ?? join(dir, 'state');
  return startGateway(s, opts.bootstrap ?? writeConfig(dir, baseConfig({})), { args: ['--config-etcd', endpoints, '--state-dir', stateDir], env: ENV });
}

const body = async (gw: Gateway, path: string) => (await request(`${gw.url}${path}`)).text;
const serves = (gw: Gateway, path: string, want: string) => waitFor(async () => (await body(gw, path)) === want, { timeoutMs: 60_000, what: `${gw.url}${path} to answer ${JSON.stringify(want)}` });

describe('etcd as the config source', { concurrency: true, timeout: 180_000 }, () => {
  test('a push reaches every runner; a change of several keys in one transaction applies as one version, and no request sees half of it', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 3);
    const dir = tempDir(s);
    await push(dir, etcd.endpoints, config('v1'));
    const runners = await Promise.all([runner(s, etcd.endpoints), runner(s, etcd.endpoints)]);
    for (const r of runners) await serves(r, '/a', 'v1\n');

    // Traffic while the change lands: every answer is the old config's or the new one's.
    const seen = new Map<string, number>();
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const res = await request(`${runners[0].url}/a`);
        const k = `${res.status} ${res.text.trim()}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
    })();
    const marks = runners.map((r) => r.logs.length);
    // One transaction: a new action, the route pointing at it, the old action deleted.
    const started = Date.now();
    const revision = await push(dir, etcd.endpoints, config('v2'));
    for (const r of runners) await serves(r, '/a', 'v2\n');
    const took = Date.now() - started;
    stop = true;
    await traffic;
    t.diagnostic(`push to applied on 2 runners: ${took} ms`);
    assert.deepEqual([...seen.keys()].filter((k) => k !== '200 v1' && k !== '200 v2'), [], `answers: ${JSON.stringify([...seen])}`);
    for (const [i, r] of runners.entries()) {
      const applied = r.logs.slice(marks[i]).filter((l) => l.msg === 'config applied from etcd');
      assert.deepEqual(applied.map((l) => l.revision), [revision], 'one version, the transaction\'s revision');
      assert.ok(!r.logs.some((l) => String(l.msg).includes('refused')), 'no half-applied (invalid) intermediate config');
    }
  });

  test('the leader killed: changes still arrive', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 3);
    const dir = tempDir(s);
    await push(dir, etcd.endpoints, config('v1'));
    const r = await runner(s, etcd.endpoints);
    await serves(r, '/a', 'v1\n');
    const leader = await etcd.leader();
    await etcd.kill(leader);
    const rest = etcd.members.filter((m) => m !== leader).map((m) => m.client).join(',');
    await waitFor(() => etcd.leader().then((m) => m !== leader).catch(() => false), { timeoutMs: 90_000, what: 'a new etcd leader' });
    await push(dir, rest, config('v2'));
    await serves(r, '/a', 'v2\n');
  });

  test('all members down: the runner keeps serving, a restarted runner serves its last good config, and both catch up when etcd is back', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 3);
    const dir = tempDir(s);
    await push(dir, etcd.endpoints, config('v1'));
    const stateDir = join(tempDir(s), 'state');
    const bootstrap = writeConfig(tempDir(s), baseConfig({}));
    const first = await runner(s, etcd.endpoints, { stateDir, bootstrap });
    await serves(first, '/a', 'v1\n');
    const other = await runner(s, etcd.endpoints);
    await serves(other, '/a', 'v1\n');

    const mark = other.logs.length;
    for (const m of etcd.members) await etcd.kill(m);
    await other.waitForLog((l) => /lost the etcd watch|cannot read the config from etcd/.test(String(l.msg)), { from: mark, timeoutMs: 60_000 });
    assert.equal(await body(other, '/a'), 'v1\n', 'the config in force keeps serving');

    await first.stop();
    const again = await runner(s, etcd.endpoints, { stateDir, bootstrap });
    assert.equal(await body(again, '/a'), 'v1\n', 'the restarted runner serves its last good config with etcd down');

    await etcd.restart(...etcd.members);
    await push(dir, etcd.endpoints, config('v3'));
    await serves(again, '/a', 'v3\n');
    await serves(other, '/a', 'v3\n');
  });

  test('a compaction while a runner was away: it reads the whole config again and catches up', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 3);
    const dir = tempDir(s);
    await push(dir, etcd.endpoints, config('v1'));
    const [m1, m2, m3] = etcd.members;
    const r = await runner(s, m3.client);
    await serves(r, '/a', 'v1\n');

    await etcd.kill(m3);
    const others = `${m1.client},${m2.client}`;
    await push(dir, others, config('v2'));
    await push(dir, others, config('v3', { routes: [{ id: 'a', match: { path: '/a' }, action: 'act-v3' }, { id: 'c', match: { path: '/c' }, action: 'act-v3' }] }));
    await etcd.compact(await etcd.revision());
    const mark = r.logs.length;
    await etcd.restart(m3);
    await serves(r, '/a', 'v3\n');
    assert.equal((await request(`${r.url}/b`)).status, 404, 'the route deleted while away is gone');
    assert.equal(await body(r, '/c'), 'v3\n');
    assert.ok(r.logs.slice(mark).some((l) => String(l.msg).includes('reading the whole config again')), 'a full read after the compaction');
  });
});

describe('what a runner accepts from etcd', { concurrency: true, timeout: 120_000 }, () => {
  test('a plugin not in the runner\'s allow-list is refused, naming the item, and the previous config keeps serving', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 1);
    const dir = tempDir(s);
    await push(dir, etcd.endpoints, config('v1'));
    const r = await runner(s, etcd.endpoints);
    await serves(r, '/a', 'v1\n');
    const mark = r.logs.length;
    await push(dir, etcd.endpoints, { ...config('v2'), plugins: { evil: { command: ['/bin/sh', '-c', 'touch /tmp/pwned'], autostart: true } } });
    const refused = await r.waitForLog('config from etcd refused', { from: mark });
    assert.ok((refused.problems as string[]).some((p) => p.startsWith('plugins/evil') && p.includes('runner.plugins_allowed')), JSON.stringify(refused.problems));
    assert.equal(await body(r, '/a'), 'v1\n', 'the previous config keeps serving');
  });
});

describe('a config server fed from etcd', { concurrency: true, timeout: 180_000 }, () => {
  test('streams the same versions to SSE followers: one item changed is a patch, a transaction of several is one put', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 3);
    const dir = tempDir(s);
    await push(dir, etcd.endpoints, config('v1'));
    // two config servers on the same cluster, as behind one name
    const [one, two] = await Promise.all([startConfigServer(s, { etcd: etcd.endpoints }, '127.0.0.1:0'), startConfigServer(s, { etcd: etcd.endpoints }, '127.0.0.1:0')]);
    const r1 = await startStreamRunner(s, one.url, { env: ENV });
    const r2 = await startStreamRunner(s, two.url, { env: ENV });
    const get = async (r: { gateway: string }, path: string) => (await request(`${r.gateway}${path}`)).text;
    for (const r of [r1, r2]) await waitFor(async () => (await get(r, '/a')) === 'v1\n', { timeoutMs: 30_000, what: 'v1 through the config server' });

    // several keys in one transaction: one put, applied as one config
    let marks = [r1.logs.length, r2.logs.length];
    await push(dir, etcd.endpoints, config('v2'));
    for (const r of [r1, r2]) await waitFor(async () => (await get(r, '/a')) === 'v2\n', { timeoutMs: 30_000, what: 'v2 through the config server' });
    for (const [i, r] of [r1, r2].entries()) {
      const applied = r.logs.slice(marks[i]).filter((l) => l.msg === 'config applied from the stream');
      assert.deepEqual(applied.map((l) => l.event), ['put'], 'the transaction arrived as one put');
    }

    // one key: a patch, with the same version from both servers (the key's mod_revision)
    marks = [r1.logs.length, r2.logs.length];
    const revision = await push(dir, etcd.endpoints, { ...config('v2'), routes: [{ id: 'a', match: { path: '/a' }, action: 'act-v2' }, { id: 'b', match: { path: '/b' }, action: { type: 'static', body: 'b2\n' } }] });
    for (const r of [r1, r2]) await waitFor(async () => (await get(r, '/b')) === 'b2\n', { timeoutMs: 30_000, what: 'b2 through the config server' });
    for (const [i, r] of [r1, r2].entries()) {
      const applied = r.logs.slice(marks[i]).filter((l) => l.msg === 'config applied from the stream');
      assert.deepEqual(applied.map((l) => [l.event, l.path]), [['patch', 'routes/b']]);
    }
    const versionOf = (r: { stateDir: string }) => JSON.parse(readFileSync(join(r.stateDir, 'last-good.json'), 'utf8')).items.routes.b.version;
    await waitFor(() => versionOf(r1) === revision && versionOf(r2) === revision, { timeoutMs: 10_000, what: 'both runners to hold routes/b at the etcd revision' });
  });
});

describe('hookgate config push / get', { concurrency: true, timeout: 120_000 }, () => {
  let etcd: EtcdCluster;
  test('push writes the items (not the listeners), get prints them back; an invalid file or a literal secret writes nothing', async (t) => {
    const s = scope(t);
    etcd = await startEtcdCluster(s, 1);
    const dir = tempDir(s);
    const rev = await push(dir, etcd.endpoints, { ...baseConfig({}), ...config('v1'), runner: { keys: [{ id: 'edge', secret_env: 'EDGE_KEY' }] } });
    const got = await runCli(['config', 'get', '--etcd', etcd.endpoints]);
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, new RegExp(`^// etcd revision ${rev}, prefix /hookgate/`));
    const printed = JSON.parse(got.stdout.slice(got.stdout.indexOf('\n') + 1));
    assert.deepEqual(printed.routes.map((r: { id: string }) => r.id), ['a', 'b']);
    assert.deepEqual(Object.keys(printed.actions), ['act-v1']);
    assert.deepEqual(printed.runner, { keys: [{ secret_env: 'EDGE_KEY', id: 'edge' }] });
    assert.equal(printed.gateway, undefined, 'listeners stay out of etcd');

    const bad = join(dir, 'bad.json5');
    writeFileSync(bad, JSON.stringify({ routes: [{ id: 'a', action: 'missing' }] }));
    const refused = await runCli(['config', 'push', bad, '--etcd', etcd.endpoints]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /invalid config/);
    assert.match(refused.stderr, /missing/);

    writeFileSync(bad, JSON.stringify({ ...config('x'), runner: { keys: [{ id: 'k', secret: 'a-literal-secret-value' }] } }));
    const literal = await runCli(['config', 'push', bad, '--etcd', etcd.endpoints]);
    assert.equal(literal.code, 1);
    assert.match(literal.stderr, /secret/);

    const after = await runCli(['config', 'get', '--etcd', etcd.endpoints]);
    assert.match(after.stdout, new RegExp(`^// etcd revision ${rev},`), 'nothing was written');
  });

  test('a config needing more operations than one transaction may hold is refused before anything is written', async (t) => {
    const s = scope(t);
    const one = await startEtcdCluster(s, 1);
    const dir = tempDir(s);
    const file = join(dir, 'c.json5');
    writeFileSync(file, JSON.stringify(config('v1')));
    const res = await runCli(['config', 'push', file, '--etcd', one.endpoints, '--max-txn-ops', '2']);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /needs 3 etcd operations .* one transaction may hold 2; start etcd with a larger --max-txn-ops/);
    assert.match(res.stderr, /nothing was written/);
    const got = await runCli(['config', 'get', '--etcd', one.endpoints]);
    assert.deepEqual(JSON.parse(got.stdout.slice(got.stdout.indexOf('\n') + 1)).routes, []);
  });

  test('wrong calls are one line, exit 2: no --etcd, plain http off loopback, two sources for serve', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['config', 'get'], /get needs --etcd/],
      [['config', 'push'], /push needs the config file/],
      [['config', 'frob'], /unknown subcommand "frob"/],
      [['config', 'get', '--etcd', 'http://10.1.2.3:2379'], /refusing plain http to 10\.1\.2\.3:2379/],
      [['serve', '--config-etcd', 'http://127.0.0.1:2379', '--config-url', 'http://127.0.0.1:1/v1/stream'], /pick one/],
      [['serve', '--config', 'x.json5', '--etcd-prefix', '/x/'], /--etcd-prefix goes with --config-etcd/],
      [['serve', '--config-etcd', 'http://127.0.0.1:2379', '--etcd-prefix', 'nope'], /expected a prefix ending in "\/"/],
    ];
    for (const [args, want] of cases) {
      const res = await runCli(args);
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
      assert.match(res.stderr, want, args.join(' '));
      assert.equal(res.stderr.trim().split('\n').length, 1, `one line: ${res.stderr}`);
    }
  });
});
