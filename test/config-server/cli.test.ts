/**
 * `hookgate config-server` started as a process, as users start it: it
 * refuses to start without a usable key or with an invalid config (a clear
 * message, a non-zero exit), logs its URL when listening, serves the
 * stream, and exits 0 on SIGTERM.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { waitFor } from '../helpers/http.ts';
import { ROOT } from '../helpers/paths.ts';
import { scope, tempDir, type Scope } from '../helpers/scope.ts';

const MAIN = fileURLToPath(new URL('../fixtures/config-server/main.ts', import.meta.url));
const KEY = 'config-key-0123456789abcdef';

interface Child {
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
}

/** Runs the config server with `args` and the key (if any) in HG_CONFIG_KEY; SIGKILLed with the scope if still running. */
function run(s: Scope, args: string[], key?: string): Child {
  const env: NodeJS.ProcessEnv = { ...process.env, HOOKGATE_LOG_LEVEL: 'info' };
  delete env.HG_CONFIG_KEY;
  if (key !== undefined) env.HG_CONFIG_KEY = key;
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => {
      done = true;
      setImmediate(() => r({ code, signal }));
    }),
  );
  s.defer(async () => {
    if (!done) child.kill('SIGKILL');
    await exited;
  });
  return { stderr: () => stderr, exited, kill: (sig) => child.kill(sig) };
}

function writeConfig(dir: string, config: unknown): string {
  const file = join(dir, 'hookgate.json5');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

const GOOD = { routes: [{ id: 'hello', action: { type: 'static', body: 'hi' } }] };

describe('hookgate config-server (process)', { concurrency: true, timeout: 30_000 }, () => {
  test('serves the stream at the URL it logs and exits 0 on SIGTERM', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), GOOD);
    const p = run(s, ['--config', file, '--listen', '127.0.0.1:0', '--key-env', 'HG_CONFIG_KEY'], KEY);
    const line = await waitFor(
      () => p.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; url?: string }).find((l) => l.msg === 'config server listening'),
      { what: 'the listening log line', timeoutMs: 10_000 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; stderr:\n${p.stderr()}`);
    });
    assert.match(String(line.url), /^http:\/\/127\.0\.0\.1:\d+\/v1\/stream$/);

    const put = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(String(line.url), { headers: { authorization: `Bearer ${KEY}` } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
          if (text.includes('\n\n')) {
            req.destroy();
            resolve(text);
          }
        });
      });
      req.on('error', reject);
      req.end();
    });
    const [event, data] = put.split('\n');
    assert.equal(event, 'event: put');
    const body = JSON.parse(data.replace(/^data: /, ''));
    assert.deepEqual(body.routes.hello, { action: { type: 'static', body: 'hi' }, order: 0, version: 1 });

    p.kill('SIGTERM');
    assert.deepEqual(await p.exited, { code: 0, signal: null });
  });

  test('refuses to start when the key variable is unset or the key is short', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), GOOD);
    const args = ['--config', file, '--listen', '127.0.0.1:0', '--key-env', 'HG_CONFIG_KEY'];
    const unset = run(s, args);
    const short = run(s, args, 'short-key');
    const [u, sh] = await Promise.all([unset.exited, short.exited]);
    assert.notEqual(u.code, 0);
    assert.match(unset.stderr(), /HG_CONFIG_KEY .*is not set/);
    assert.notEqual(sh.code, 0);
    assert.match(short.stderr(), /key in HG_CONFIG_KEY has 9 characters; use at least 16/);
  });

  test('exits 1 listing every problem of an invalid config file', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), { routes: [{ id: 'x', action: 'nope' }], plugins: { p: {} } });
    const p = run(s, ['--config', file, '--listen', '127.0.0.1:0', '--key-env', 'HG_CONFIG_KEY'], KEY);
    assert.equal((await p.exited).code, 1);
    assert.match(p.stderr(), /invalid config/);
    assert.match(p.stderr(), /routes\[0\]\.action: no action named "nope"/);
    assert.match(p.stderr(), /plugins\.p: expected exactly one of "path", "command" or "attach"/);
  });
});
