/**
 * ConfigStream in process, driven by a fake clock and a scripted fetch:
 * reconnect timing (exponential backoff from 1 s to 30 s with ±20 %
 * jitter, reset by a complete valid put or after a minute of healthy stream; a refused credential is
 * retried every 60 s and logged once; `stop()` ends everything), and a put
 * equal to the config in force not reaching the runner while its versions
 * are still persisted.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { recordingLogger } from '../../node-runner/log.ts';
import { ConfigStream } from '../../node-runner/config/config-stream.ts';
import type { Config } from '../../src/core/config/config.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

/** Lets pending promise callbacks and I/O callbacks run. */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

type Answer = 'refused' | 401 | 'open';

/** A fetch answering from `script` (one answer per call, the last repeated); open streams can be ended. */
function scriptedFetch(script: Answer[]) {
  const calls: number[] = [];
  const open: Array<ReadableStreamDefaultController<Uint8Array>> = [];
  let n = 0;
  const fake = (async (_url: string, init: RequestInit) => {
    const answer = script[Math.min(n++, script.length - 1)];
    calls.push(n);
    if (answer === 'refused') throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
    if (answer === 401) return new Response(null, { status: 401 });
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        open.push(c);
        init.signal?.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  }) as unknown as typeof fetch;
  return { fetch: fake, calls, open };
}

function streamWith(answers: Answer[], random: () => number) {
  const clock = new FakeClock();
  const log = recordingLogger();
  const f = scriptedFetch(answers);
  const stream = new ConfigStream({
    url: 'http://source.invalid/v1/stream',
    key: 'k',
    local: {},
    onConfig: async () => {},
    logger: log,
    clock,
    fetch: f.fetch,
    readTimeoutMs: 1e9,
    random,
  });
  return { clock, log, stream, ...f };
}

/** The reconnect delay now pending (the one timer that is not the read timeout). */
const pendingSleep = (clock: FakeClock) => clock.pendingDelays().filter((d) => d !== 1e9);

describe('config stream: reconnect timing', () => {
  test('failures back off from 1 s doubling to 30 s; a stream up for a minute resets the delay', async () => {
    const { clock, stream, calls, open } = streamWith([...Array<Answer>(8).fill('refused'), 'open', 'refused'], () => 0.5);
    stream.start();
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      await settle();
      const [d] = pendingSleep(clock);
      delays.push(d);
      clock.advance(d);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    await settle();
    assert.equal(calls.length, 9, 'the ninth attempt connected');
    assert.equal(open.length, 1);
    clock.advance(60_000);
    open[0].close();
    await settle();
    assert.deepEqual(pendingSleep(clock), [1000], 'a minute of healthy stream reset the backoff');
    await stream.stop();
    assert.deepEqual(clock.pendingDelays(), [], 'stop clears every timer');
  });

  test('a stream that delivered a complete valid put resets the delay at once: the next interruption is retried after 1 s', async () => {
    const { clock, log, stream, calls, open } = streamWith([...Array<Answer>(6).fill('refused'), 'open', 'open'], () => 0.5);
    stream.start();
    for (let i = 0; i < 6; i++) {
      await settle();
      clock.advance(pendingSleep(clock)[0]);
    }
    await settle();
    assert.equal(calls.length, 7, 'the seventh attempt connected');
    const send = (event: string, data: unknown) => open[0].enqueue(new TextEncoder().encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
    send('put', { routes: { a: { match: { path: '/a' }, action: { type: 'nonsense' }, version: 1, order: 0 } } });
    await settle();
    assert.equal(log.entries.filter((e) => e.msg.includes('config from the stream refused')).length, 1);
    send('put', { routes: { a: { match: { path: '/a' }, action: { type: 'static', body: 'A' }, version: 1, order: 0 } } });
    await settle();
    assert.equal(log.entries.filter((e) => e.msg === 'config applied from the stream').length, 1);
    open[0].close();
    await settle();
    assert.deepEqual(pendingSleep(clock), [1000], 'the source is back: no 30 s wait for the next change');
    await stream.stop();
  });

  test('a stream that only delivered an invalid put keeps the delay growing', async () => {
    const { clock, stream, calls, open } = streamWith([...Array<Answer>(3).fill('refused'), 'open', 'refused'], () => 0.5);
    stream.start();
    for (let i = 0; i < 3; i++) {
      await settle();
      clock.advance(pendingSleep(clock)[0]);
    }
    await settle();
    assert.equal(calls.length, 4);
    open[0].enqueue(new TextEncoder().encode(`event: put\ndata: ${JSON.stringify({ routes: { a: { action: { type: 'nonsense' }, version: 1, order: 0 } } })}\n\n`));
    await settle();
    open[0].close();
    await settle();
    assert.deepEqual(pendingSleep(clock), [8000]);
    await stream.stop();
  });

  test('jitter stays within ±20 % and never exceeds the maximum', async () => {
    for (const [random, first, capped] of [
      [0, 800, 24_000],
      [0.999999, 1200, 30_000],
    ] as const) {
      const { clock, stream } = streamWith(['refused'], () => random);
      stream.start();
      const delays: number[] = [];
      for (let i = 0; i < 7; i++) {
        await settle();
        const [d] = pendingSleep(clock);
        delays.push(d);
        clock.advance(d);
      }
      assert.equal(delays[0], first);
      assert.equal(delays[6], capped);
      await stream.stop();
    }
  });

  test('a refused credential is retried every 60 s and logged once per change', async () => {
    const { clock, log, stream, calls } = streamWith([401, 401, 401, 'open'], () => 0.5);
    stream.start();
    for (let i = 0; i < 3; i++) {
      await settle();
      assert.deepEqual(pendingSleep(clock), [60_000]);
      clock.advance(60_000);
    }
    await settle();
    assert.equal(calls.length, 4);
    assert.equal(log.entries.filter((e) => e.msg.includes('refused the credential')).length, 1);
    assert.equal(log.entries.filter((e) => e.msg.includes('accepts the credential again')).length, 1);
    await stream.stop();
    await stream.stop();
  });
});

describe('config stream: applying in process', () => {
  test('a put equal to the config in force does not reach the runner, but its versions are persisted and reload', async (t) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'hookgate-unit-'));
    t.after(() => rmSync(stateDir, { recursive: true, force: true }));
    const applied: Config[] = [];
    const f = scriptedFetch(['open']);
    const stream = new ConfigStream({
      url: 'http://source.invalid/v1/stream',
      key: 'k',
      local: { gateway: { listen: '127.0.0.1:0' } },
      onConfig: async (c) => void applied.push(c),
      stateDir,
      logger: recordingLogger(),
      clock: new FakeClock(),
      fetch: f.fetch,
      readTimeoutMs: 1e9,
    });
    stream.start();
    await settle();
    const route = (version: number) => ({ match: { path: '/a' }, action: { type: 'static', body: 'A' }, version, order: 0 });
    const send = (event: string, data: unknown) => f.open[0].enqueue(new TextEncoder().encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
    send('put', { routes: { a: route(1) } });
    await settle();
    send('put', { routes: { a: route(2) } });
    await settle();
    assert.equal(applied.length, 1, 'the equal put was not passed on');
    assert.equal(applied[0].routes[0].id, 'a');
    assert.equal(applied[0].gateway.listen, '127.0.0.1:0', 'local settings are merged in');
    let version: number | undefined;
    for (let i = 0; i < 100 && version !== 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
      version = ConfigStream.loadPersisted(stateDir)?.doc.items.routes.get('a')?.version;
    }
    assert.equal(version, 2, 'the new version was persisted');
    await stream.stop();
  });
});
