/**
 * Plugin host, failures as verdicts: a plugin that dies, hangs, answers
 * garbage or never gets ready yields its binding's `on_error` verdict, and
 * the runner keeps going (ARCHITECTURE.md "Failures are verdicts too").
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, settleTime } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { applyReady, config, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

test('a plugin SIGKILLed during concurrent calls: those calls get on_error, then it restarts, says ready again and serves', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_DELAY_MS: '5000' }) },
    routes: [route('strict', ['p'], { plugin_timeout: '8s' }), route('lenient', [{ plugin: 'p', on_error: 'allow' }], { plugin_timeout: '8s' })],
  }, ['p']);
  const oldPid = statusOf(m, 'p').pid!;

  const strict = Array.from({ length: 4 }, () => m.onRequest('strict', request({ r: 'strict' })));
  const lenient = Array.from({ length: 4 }, () => m.onRequest('lenient', request({ r: 'lenient' })));
  await waitFor(() => h.records({ ev: 'call' }).length === 8, { what: 'all 8 calls to reach the plugin' });
  process.kill(oldPid, 'SIGKILL');
  const verdicts = await Promise.all([...strict, ...lenient]);

  for (const v of verdicts.slice(0, 4)) {
    assert.equal(v.ok, false);
    assert.equal(v.s, 503);
    assert.match(v.e, /^plugin "p": /);
  }
  for (const v of verdicts.slice(4)) {
    assert.equal(v.ok, true);
    assert.equal(v.e, '');
  }

  const restarted = await waitFor(() => {
    const s = statusOf(m, 'p');
    return s.ready && s.pid !== oldPid ? s : null;
  }, { what: 'the plugin to restart and say ready' });
  const readyAgain = h.logs('plugin ready', { plugin: 'p' }).filter((e) => String(e.socket).includes(`-${restarted.pid}.sock`));
  assert.ok(readyAgain.length >= 1, 'the restarted process says ready on its own socket');
  // ready follows the first configure; the second may still be on its way.
  await waitFor(() => h.records({ ev: 'configure', pid: restarted.pid }).length === 2, { what: 'both configure lines after the restart' });
  assert.deepEqual(
    h.records({ ev: 'configure', pid: restarted.pid }).map((r) => (r.params as { route_id: string }).route_id),
    ['strict', 'lenient'],
    'configure is sent again, for every bound route, after a restart',
  );
  const after = await m.onRequest('strict', request({ r: 'strict', h: { 'X-Fixture-Delay': '0' } }));
  assert.equal(after.ok, true);
});

test('a plugin that hangs: the call ends at its deadline with on_error and its connection is never reused', T, async (t) => {
  const h = new Harness(t);
  // The deadline is the subject: time is driven.
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await applyReady(m, {
    plugins: { p: h.fixture('p', {}, { pool_size: 1 }) },
    routes: [route('api', ['p'], { plugin_timeout: '300ms' })],
  }, ['p']);

  const call = m.onRequest('api', request({ r: 'api', h: { 'X-Fixture-Reply': 'hang' } }));
  const endedAt = settleTime(clock, call);
  await waitFor(() => h.records({ ev: 'call' }).length === 1, { what: 'the call to reach the plugin' });
  clock.advance(299);
  assert.equal(await endedAt(), null, 'the call is still waiting at 299 ms');
  clock.advance(1);
  const hung = await call;
  const next = await m.onRequest('api', request({ r: 'api' }));

  assert.equal(hung.ok, false);
  assert.equal(hung.s, 503);
  assert.match(hung.e, /no reply within 300 ms/);
  assert.equal(await endedAt(), 300, 'the call ended at its deadline');
  assert.equal(next.ok, true);
  const calls = h.records({ ev: 'call' });
  assert.equal(calls.length, 2);
  assert.notEqual(calls[1].conn, calls[0].conn, 'the second call must use a new connection');
  await waitFor(() => h.records({ ev: 'conn-closed', conn: calls[0].conn }).length === 1, { what: 'the runner to close the timed-out connection' });
  assert.ok(h.logs('applying on_error', { plugin: 'p', code: 'HOOK_TIMEOUT' }).length === 1);
});

test('garbage lines on stdout are logged and ignored, stderr is forwarded tagged with the plugin name (lines written together as one record), and the plugin works', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, { plugins: { noisy: h.fixture('noisy', { FIXTURE_GARBAGE: '1' }) }, routes: [route('api', ['noisy'])] }, ['noisy']);

  const v = await m.onRequest('api', request({ r: 'api' }));

  assert.equal(v.ok, true);
  const notJson = h.logs('ignored a stdout line that is not a JSON object', { plugin: 'noisy' });
  assert.deepEqual(notJson.map((e) => e.line), ['this is not json', '[1,2,3]']);
  assert.equal(notJson[0].level, 'warn');
  assert.equal(h.logs('ignored a stdout line with an unknown method', { plugin: 'noisy' }).length, 1);
  await waitFor(() => h.logs('stderr line two', { plugin: 'noisy' }).length === 1, { what: 'the stderr lines in the log' });
  const stderr = h.log.entries.filter((e) => e.stream === 'stderr');
  assert.deepEqual(stderr.map((e) => [e.plugin, e.msg, e.lines]), [['noisy', 'noisy stderr line one\nnoisy stderr line two', 2]]);
  assert.equal(statusOf(m, 'noisy').failures, 0);
});

for (const [mode, what] of [
  ['oversize', 'a reply frame announcing more than 1 MiB'],
  ['truncated', 'a truncated reply frame followed by close'],
  ['garbage', 'a reply frame whose payload is not msgpack'],
] as const) {
  test(`${what} yields on_error; the runner survives and the next calls work`, T, async (t) => {
    const h = new Harness(t);
    // Time stands still: a call that ends at all ended by the broken reply, not at its deadline.
    const m = h.manager({ clock: new FakeClock() });
    await applyReady(m, {
      plugins: { p: h.fixture('p') },
      routes: [route('strict', ['p'], { plugin_timeout: '2s' }), route('lenient', [{ plugin: 'p', on_error: 'allow' }])],
    }, ['p']);
    const pid = statusOf(m, 'p').pid;

    const bad = await m.onRequest('strict', request({ r: 'strict', h: { 'X-Fixture-Reply': mode } }));
    const skipped = await m.onRequest('lenient', request({ r: 'lenient', h: { 'X-Fixture-Reply': mode } }));
    const good = await Promise.all([1, 2, 3].map(() => m.onRequest('strict', request({ r: 'strict' }))));

    assert.equal(bad.ok, false);
    assert.equal(bad.s, 503);
    assert.match(bad.e, /^plugin "p": ./);
    assert.equal(skipped.ok, true);
    for (const v of good) assert.equal(v.ok, true);
    assert.equal(statusOf(m, 'p').pid, pid, 'the plugin itself was not restarted');
  });
}

test('after a reply that is not msgpack, the connection it came on is closed, not reused', {
  ...T,
}, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, { plugins: { p: h.fixture('p', {}, { pool_size: 1 }) }, routes: [route('api', ['p'])] }, ['p']);

  await m.onRequest('api', request({ r: 'api', h: { 'X-Fixture-Reply': 'garbage' } }));
  await m.onRequest('api', request({ r: 'api' }));

  const calls = h.records({ ev: 'call' });
  assert.equal(calls.length, 2);
  assert.notEqual(calls[1].conn, calls[0].conn, 'docs/protocol.md §1.4: a connection whose call failed is closed, never reused');
});

test('a plugin that never says ready: its route fails closed and whenReady rejects with a clear message', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await m.apply(config({
    plugins: { mute: h.fixture('mute', { FIXTURE_START: 'silent' }, { ready_timeout: '10s' }) },
    routes: [route('api', ['mute']), route('lenient', [{ plugin: 'mute', on_error: 'allow' }])],
  }));
  await waitFor(() => h.records({ ev: 'configure' }).length === 2, { what: 'the plugin to be running and configured' });

  const strict = await m.onRequest('api', request({ r: 'api' }));
  const lenient = await m.onRequest('lenient', request({ r: 'lenient' }));
  const waited = await m.whenReady('mute', 200).then(() => null, (err: Error) => err);

  assert.ok(m.hooksOf('api') !== 0, 'a plugin that has not declared its hooks counts as having all of them');
  assert.equal(strict.ok, false);
  assert.equal(strict.s, 503);
  assert.match(strict.e, /plugin "mute": plugin is not ready/);
  assert.equal(lenient.ok, true);
  assert.ok(waited instanceof Error, 'whenReady must reject');
  assert.match(waited.message, /plugin "mute" did not become ready within 200 ms/);
  assert.equal(statusOf(m, 'mute').ready, false);
});

test('a plugin that says nothing at all before its ready_timeout is killed and restarted', T, async (t) => {
  const h = new Harness(t);
  // ready_timeout is the subject: time is driven, so a slow start-up cannot race it.
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await m.apply(config({
    plugins: { mute: h.fixture('mute', { FIXTURE_START: 'silent' }, { ready_timeout: '300ms' }) },
    routes: [route('api', ['mute'])],
  }));
  const first = await waitFor(() => h.records({ ev: 'start' })[0], { what: 'the first start' });
  clock.advance(299);
  assert.equal(h.logs('plugin sent nothing before its ready_timeout; killing it', { plugin: 'mute' }).length, 0, 'not killed before its ready_timeout');

  clock.advance(1);
  await waitFor(() => h.logs('plugin will be restarted', { plugin: 'mute' }).length >= 1, { what: 'a restart to be scheduled' });
  clock.advance(1000);
  const second = await waitFor(() => h.records({ ev: 'start' })[1], { what: 'a restart' });

  assert.notEqual(second.pid, first.pid);
  assert.equal(h.logs('plugin sent nothing before its ready_timeout; killing it', { plugin: 'mute' }).length, 1);
  assert.ok(h.logs('plugin exited', { plugin: 'mute', signal: 'SIGKILL' }).length >= 1);
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).s, 503);
});
