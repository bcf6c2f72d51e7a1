/**
 * Bad configs are refused before anything serves: `hookgate validate` and
 * `hookgate serve` print every problem with the path of its field and
 * exit 1.
 */

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, runCli, writeConfig } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';

/** One file with several independent problems; each must be reported. */
const MANY_PROBLEMS = `// several mistakes at once
{
  gateway: { listen: "nowhere" },
  routes: [
    { plugins: ["ghost"], action: { type: "static" } },
    { match: { domain: "api..example.com" }, action: { type: "static" } },
    { action: { type: "proxy" } },
    { action: "nope" },
  ],
}
`;
const EXPECTED = [
  'gateway.listen: expected "host:port"',
  'routes[0].plugins[0]: no plugin named "ghost" in plugins',
  'routes[1].match.domain: "api..example.com": empty label',
  'routes[2].action.upstream: required field is missing',
  'routes[3].action: no action named "nope" in actions',
];

const problemLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim());

// Two CLIs at a time: every run is a Node start-up, and more at once only fight over the cores.
describe('bad configs', { concurrency: 2, timeout: 60_000 }, () => {
  for (const cmd of ['validate', 'serve'] as const) {
    const args = (file: string) => (cmd === 'validate' ? ['validate', file] : ['serve', '--config', file]);

    test(`${cmd}: exits 1 and prints every problem with its field path (unknown plugin, bad domain pattern, missing upstream, ...)`, async (t) => {
      const file = writeConfig(tempDir(scope(t)), MANY_PROBLEMS);
      const res = await runCli(args(file));
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, /invalid config/);
      const lines = problemLines(res.stderr);
      for (const want of EXPECTED) assert.ok(lines.some((l) => l.startsWith(want)), `missing "${want}" in:\n${res.stderr}`);
      assert.equal(lines.length, EXPECTED.length, `one line per problem:\n${res.stderr}`);
    });

    test(`${cmd}: exits 1 on a file that is not JSON5, saying where`, async (t) => {
      const file = writeConfig(tempDir(scope(t)), '{ routes: [ { action: "x" ');
      const res = await runCli(args(file));
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, /not valid JSON5/);
      assert.match(res.stderr, /\d+:\d+/, 'the position is given');
    });

    test(`${cmd}: exits 1 on a file that does not exist`, async (t) => {
      const res = await runCli(args(join(tempDir(scope(t)), 'missing.json5')));
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, /cannot read the file \(ENOENT\)/);
    });
  }

  test('validate: a good config exits 0 and says so', async (t) => {
    const file = writeConfig(tempDir(scope(t)), baseConfig({ routes: [{ action: { type: 'static', body: 'ok' } }] }));
    const res = await runCli(['validate', file]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /ok \(1 routes, 0 plugins\)/);
  });

  test('serve: an invalid config starts no plugin', async (t) => {
    const dir = tempDir(scope(t));
    const pids = join(dir, 'pids');
    const file = writeConfig(
      dir,
      baseConfig({
        routes: [{ plugins: ['fx'], action: 'missing' }],
        plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_PID_FILE: pids } } },
      }),
    );
    const res = await runCli(['serve', '--config', file]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /routes\[0\]\.action: no action named "missing"/);
    assert.doesNotMatch(res.stderr, /plugin started/, 'the runner logged a plugin start');
    assert.ok(!existsSync(pids), 'a plugin was started');
  });

  test('serve: a listen address in use exits 1, saying so, and leaves no plugin running', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    s.defer(() => new Promise<void>((r) => busy.close(() => r())));
    const pids = join(dir, 'pids');
    const file = writeConfig(dir, {
      gateway: { listen: `127.0.0.1:${(busy.address() as AddressInfo).port}` },
      admin: { listen: '127.0.0.1:0' },
      routes: [{ plugins: ['fx'], action: { type: 'static' } }],
      plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_PID_FILE: pids } } },
    });
    const res = await runCli(['serve', '--config', file]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /already in use/);
    if (existsSync(pids)) {
      for (const pid of readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number)) {
        assert.ok(!isAlive(pid), `plugin ${pid} outlived the failed start`);
      }
    }
  });
});
