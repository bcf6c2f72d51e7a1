/**
 * Bounded plugin output through the keeper (issue 17): a plugin flooding
 * its stdout costs the runner and the keeper a bounded amount (the keeper
 * stops reading it while the runner pushes back, and both read it at a
 * bounded rate), its log lines are capped and summarised, and over-long
 * lines are reported, never dropped silently. Real `hookgate serve`, real
 * keeper, real plugins; every test kills what it left behind.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request, waitFor } from '../helpers/http.ts';
import { CONFIGURABLE } from '../helpers/paths.ts';
import { runnerConfig, startRunner } from '../helpers/processes.ts';
import { keepersOf, killKeepersAtEnd } from '../helpers/keepers.ts';
import { scope, tempDir } from '../helpers/scope.ts';

const T = { timeout: 90_000 };

/** Resident set size of `pid`, in MiB. */
function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

function setup(t: import('node:test').TestContext, plugin: Record<string, string>) {
  const s = scope(t);
  const dir = tempDir(s);
  killKeepersAtEnd(s, join(dir, '.hookgate-state'));
  const config = runnerConfig({
    routes: [
      { id: 'noisy', match: { path: '/noisy/*' }, plugins: ['noisy'], action: { type: 'static', body: 'noisy\n' } },
      { id: 'plain', match: { path: '/plain/*' }, action: { type: 'static', body: 'plain\n' } },
    ],
    plugins: { noisy: { path: CONFIGURABLE, env: { FIXTURE_NAME: 'noisy', FIXTURE_DIR: dir, ...plugin } } },
  });
  return { s, dir, config };
}

test('under the keeper, an over-long stdout or stderr line is reported with one warning per stream, not dropped silently', T, async (t) => {
  const { s, dir, config } = setup(t, { FIXTURE_LONG: '1' });
  const runner = await startRunner(s, config, { dir });
  await runner.waitForLog((l) => l.plugin === 'noisy' && l.msg === 'after the long line');
  const warned = runner.logs.filter((l) => l.plugin === 'noisy' && /line over 1 MiB/.test(l.msg));
  assert.deepEqual(warned.map((l) => l.stream).sort(), ['stderr', 'stdout']);
  assert.equal((await request(`${runner.gateway}/noisy/x`)).status, 200);
});

test('under the keeper, a plugin flooding stdout: keeper memory stays bounded, the runner logs at most ~100 of its lines a second, and other routes are served', T, async (t) => {
  const { s, dir, config } = setup(t, { FIXTURE_FLOOD: 'forever' });
  const runner = await startRunner(s, config, { dir, ready: false });
  const [keeper] = await waitFor(() => (keepersOf(join(dir, '.hookgate-state')).length ? keepersOf(join(dir, '.hookgate-state')) : null), { what: 'the keeper' });
  // Three summaries: the flood has gone on for three seconds at least.
  await waitFor(() => runner.logs.filter((l) => /over the log rate cap/.test(l.msg)).length >= 3, { what: 'three log-cap summaries' });

  const rss = rssMiB(keeper);
  t.diagnostic(`keeper RSS ${rss.toFixed(1)} MiB`);
  assert.ok(rss < 150, `keeper RSS ${rss.toFixed(1)} MiB (it buffered the flood)`);
  const logged = runner.logs.filter((l) => l.plugin === 'noisy' && /ignored a stdout line/.test(l.msg)).length;
  const summaries = runner.logs.filter((l) => /over the log rate cap/.test(l.msg));
  assert.ok(logged <= 100 * (summaries.length + 2), `${logged} flood lines logged over ${summaries.length} summarised seconds`);
  assert.ok(summaries.every((l) => Number(l.not_logged) > 0 && l.cap_per_s === 100));
  for (let i = 0; i < 20; i++) assert.equal((await request(`${runner.gateway}/plain/x`)).status, 200);
  assert.equal((await request(`${runner.gateway}/noisy/x`)).status, 200, 'the flooding plugin answers its hooks too');
});
