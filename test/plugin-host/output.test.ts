/**
 * Plugin host, bounded plugin output: what a plugin prints costs the runner
 * a bounded amount. Lines it makes the runner log are capped per second
 * (the excess is counted and summarised), stderr lines written together
 * are one record (a stack trace is one record, up to 64 lines), over-long
 * lines are warned about once (never dropped silently), and reading pauses
 * when a plugin floods. Time is driven where it is the subject.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { applyReady, config, Harness, request, route } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

test('lines a plugin makes the runner log are capped at 100 a second; the excess is counted and summarised once', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await applyReady(m, { plugins: { loud: h.fixture('loud', { FIXTURE_FLOOD: '1000' }) }, routes: [route('api', ['loud'])] }, ['loud']);

  const ignored = () => h.logs('ignored a stdout line that is not a JSON object', { plugin: 'loud' });
  assert.equal(ignored().length, 100, '100 lines a second');
  assert.equal(h.logs('over the log rate cap', { plugin: 'loud' }).length, 0, 'summarised after the second');
  clock.advance(1000);
  const summary = h.logs('over the log rate cap', { plugin: 'loud' });
  assert.equal(summary.length, 1);
  assert.equal(summary[0].not_logged, 900);
  assert.equal(summary[0].level, 'warn');
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true, 'the plugin works');
  clock.advance(5000);
  assert.equal(h.logs('over the log rate cap', { plugin: 'loud' }).length, 1, 'no summary for a quiet second');
});

test('stderr lines written together are one log record, at most 64 lines each (a stack trace is one record)', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await applyReady(m, { plugins: { trace: h.fixture('trace', { FIXTURE_STDERR_LINES: '100' }) }, routes: [route('api', ['trace'])] }, ['trace']);
  const records = () => h.log.entries.filter((e) => e.stream === 'stderr' && e.plugin === 'trace');
  await waitFor(() => records().length === 1, { what: 'the first 64 lines' });
  await waitFor(() => clock.pendingDelays().includes(50), { what: 'the rest to wait for more lines' });

  clock.advance(50);

  const got = records();
  assert.deepEqual(got.map((e) => e.lines), [64, 36]);
  assert.equal(String(got[0].msg).split('\n')[0], '    at frame 0');
  assert.equal(String(got[1].msg).split('\n').at(-1), '    at frame 99');
});

test('an over-long stdout or stderr line is dropped with one warning per stream, and the plugin works', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, { plugins: { long: h.fixture('long', { FIXTURE_LONG: '1' }) }, routes: [route('api', ['long'])] }, ['long']);
  await waitFor(() => h.logs('after the long line', { plugin: 'long' }).length === 1, { what: 'the stderr line after the long one' });

  assert.deepEqual(h.logs('line over 1 MiB', { plugin: 'long' }).map((e) => [e.level, e.stream]).sort(), [['warn', 'stderr'], ['warn', 'stdout']]);
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true);
});

test('a plugin flooding its stdout is read at a bounded rate: the reading pauses for the rest of a second once 2000 lines were read', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  // Silent but for the flood: no ack, so no push-only grace timer to tell apart from the throttle's.
  await m.apply(config({ plugins: { flood: h.fixture('flood', { FIXTURE_START: 'silent', FIXTURE_FLOOD: 'forever' }) }, routes: [route('api', ['flood'])] }));
  const read = () => h.logs('ignored a stdout line', { plugin: 'flood' }).length;
  // Two timers within the second: the log budget's summary, and the reading's pause.
  await waitFor(() => read() === 100 && clock.pendingDelays().filter((d) => d <= 1000).length === 2, { what: 'the reading to pause' });
  assert.ok(read() <= 100, 'logging capped meanwhile');
  clock.advance(1000);
  const summary = h.logs('over the log rate cap', { plugin: 'flood' });
  assert.equal(summary.length, 1);
  // Read in that second: at most the budget plus what one chunk already held.
  const n = Number(summary[0].not_logged) + read();
  assert.ok(n >= 2000 && n < 2000 + 65_536 / 28 + 1, `lines read in the first second: ${n}`);
});
