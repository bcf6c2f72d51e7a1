/**
 * A `hookgate serve` signalled while it starts: its gateway listener has
 * said "listening" but the admin listener and the rest are still coming.
 * SIGTERM then must still be a clean stop (exit 0, plugins stopped), and
 * SIGHUP a reload, never the default action that ends the process.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isAlive, writeConfig, type Exit } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { waitFor } from '../helpers/http.ts';

const CLI = fileURLToPath(new URL('../../node-runner/cli/cli.ts', import.meta.url));
const AUTH = fileURLToPath(new URL('../../examples/plugins/auth.ts', import.meta.url));

/** Starts serve and sends `signal` the moment the gateway says it listens; resolves with the exit and the log. */
function signalledAtListen(t: Parameters<typeof scope>[0], signal: NodeJS.Signals, then?: NodeJS.Signals) {
  const s = scope(t);
  const dir = tempDir(s, 'hookgate-early-signal-');
  const config = writeConfig(dir, {
    gateway: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'x\n' } }],
    plugins: { auth: { path: AUTH, env: { HOOKGATE_AUTH_TOKENS: 't:a' } } },
  });
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config, '--state-dir', join(dir, 'state')], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOOKGATE_LOG_FORMAT: 'json' } });
  const exited = new Promise<Exit>((r) => child.on('exit', (code, sig) => r({ code, signal: sig })));
  s.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let out = '';
  let sent = false;
  const onData = (d: Buffer) => {
    out += d;
    if (!sent && out.includes('"gateway listening"')) {
      sent = true;
      child.kill(signal);
      // The second signal once the first one's reload has happened (or, failing that, at the wait's bound).
      if (then) void waitFor(() => out.includes('config reloaded'), { what: 'the reload' }).finally(() => child.kill(then)).catch(() => {});
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return { exited, log: () => out };
}

describe('signals while serve starts', () => {
  test('a SIGTERM right after the gateway listens stops it cleanly (exit 0) and its plugins with it', async (t) => {
    const { exited, log } = signalledAtListen(t, 'SIGTERM');
    const exit = await exited;
    assert.deepEqual(exit, { code: 0, signal: null }, log().slice(-2000));
    const pids = [...log().matchAll(/"pid":(\d+),"msg":"plugin started"/g)].map((m) => Number(m[1]));
    for (const pid of pids) await waitFor(() => !isAlive(pid), { what: `plugin ${pid} to be gone` });
  });

  test('a SIGHUP right after the gateway listens is a reload, not the end of the process', async (t) => {
    const { exited, log } = signalledAtListen(t, 'SIGHUP', 'SIGTERM');
    const exit = await exited;
    assert.deepEqual(exit, { code: 0, signal: null }, log().slice(-2000));
    assert.match(log(), /config reloaded/);
  });
});
