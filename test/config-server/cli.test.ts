/**
 * `hookgate config-server` started as a process, as users start it: it
 * refuses to start without a usable key, with an invalid config, with a
 * literal key secret, or with plain http off loopback (a clear message, a
 * non-zero exit), logs its URL when listening, serves the
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

describe('hookgate config-server (process)', { concurrency: true, timeout: 90_000 }, () => {
  test('serves the stream at the URL it logs and exits 0 on SIGTERM', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), GOOD);
    const p = run(s, ['--config', file, '--listen', '127.0.0.1:0', '--key-env', 'HG_CONFIG_KEY'], KEY);
    const line = await waitFor(
      () => p.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; url?: string }).find((l) => l.msg === 'config server listening'),
      { what: 'the listening log line', timeoutMs: 60_000 },
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

// After the first group, not alongside it: starting many processes at once
// on a loaded machine only slows each of them down.
describe('hookgate config-server refuses what runners would refuse (process)', { concurrency: true, timeout: 30_000 }, () => {
  test('refuses plain http on an address that is not loopback (runners would refuse it), and a certificate without its key', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), GOOD);
    const open = run(s, ['--config', file, '--listen', '0.0.0.0:0', '--key-env', 'HG_CONFIG_KEY'], KEY);
    const half = run(s, ['--config', file, '--listen', '127.0.0.1:0', '--key-env', 'HG_CONFIG_KEY', '--tls-cert', file], KEY);
    const [o, h] = await Promise.all([open.exited, half.exited]);
    assert.equal(o.code, 2);
    assert.match(open.stderr(), /--listen 0\.0\.0\.0:0 is not a loopback address: serve TLS with --tls-cert and --tls-key .* or pass --insecure-http/);
    assert.equal(h.code, 2);
    assert.match(half.stderr(), /--tls-cert and --tls-key go together/);
  });

  test('refuses to serve a key with a literal secret: runners only take references (secret_env)', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), { ...GOOD, runner: { keys: [{ id: 'edge', secret: 'literal-secret-0123456789' }] } });
    const p = run(s, ['--config', file, '--listen', '127.0.0.1:0', '--key-env', 'HG_CONFIG_KEY'], KEY);
    assert.equal((await p.exited).code, 1);
    assert.match(p.stderr(), /runner\.keys\[0\]\.secret: a key from a config stream must be a reference: name the environment variable that holds it with "secret_env"/);
  });
});
