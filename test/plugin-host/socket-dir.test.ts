/**
 * Plugin host, socket folders: the runner makes each plugin process a
 * private folder (HOOKGATE_PLUGIN_SOCKET_DIR, mode 0700) that both SDKs put
 * their socket in, and removes it when the process is gone, also when it
 * was SIGKILLed and could not clean up itself.
 */

import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/http.ts';
import { applyReady, Harness, route, SDK_FIXTURES, statusOf } from '../helpers/plugin-host.ts';

const T = { timeout: 60_000 };

for (const [lang, fixture] of Object.entries(SDK_FIXTURES)) {
  test(`a ${lang} SDK plugin listens in the folder the runner made for it, and a SIGKILL leaves no folder behind`, T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { sdk: fixture(h) }, routes: [route('api', ['sdk'])] }, ['sdk']);
    const { socket, pid } = statusOf(m, 'sdk');
    const dir = dirname(socket!);
    assert.match(basename(dir), /^hookgate-plugin-/);
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'a private folder');

    process.kill(pid!, 'SIGKILL');
    await waitFor(() => h.logs('plugin exited', { plugin: 'sdk' }).length === 1, { what: 'the exit' });

    assert.equal(existsSync(dir), false, `${dir} was removed`);
    await waitFor(() => statusOf(m, 'sdk').ready && statusOf(m, 'sdk').pid !== pid, { what: 'the restarted plugin' });
    assert.notEqual(dirname(statusOf(m, 'sdk').socket!), dir, 'a new folder for the new process');
  });
}
