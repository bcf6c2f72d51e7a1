/**
 * The Python SDK the way docs/sdk.md tells users to use it: the first
 * plugin of that page, run by `hookgate serve` from a config folder of its
 * own, finding `hookgate_plugin` once copied next to it and once through a
 * relative PYTHONPATH in the plugin's `env`.
 */

import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { request } from '../helpers/http.ts';
import { PY_SDK_DIR, ROOT } from '../helpers/paths.ts';
import { baseConfig, startGateway, whenReady, writeConfig, type Gateway } from '../helpers/processes.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';

const files = suiteScope();
let gw: Gateway;

/** The first Python block of docs/sdk.md: the page's first plugin. */
function firstPythonExample(): string {
  const m = /```python\n([\s\S]*?)```/.exec(readFileSync(join(ROOT, 'docs/sdk.md'), 'utf8'));
  assert.ok(m, 'docs/sdk.md has a Python example');
  return m[1];
}

function writePlugin(dir: string, withSdk: boolean): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'auth.py'), firstPythonExample());
  chmodSync(join(dir, 'auth.py'), 0o755);
  if (withSdk) copyFileSync(join(PY_SDK_DIR, 'hookgate_plugin.py'), join(dir, 'hookgate_plugin.py'));
}

before(async () => {
  const dir = tempDir(files, 'hg-pysdk-');
  writePlugin(join(dir, 'next-to'), true);
  writePlugin(join(dir, 'on-path'), false);
  mkdirSync(join(dir, 'lib'));
  copyFileSync(join(PY_SDK_DIR, 'hookgate_plugin.py'), join(dir, 'lib', 'hookgate_plugin.py'));
  const config = baseConfig({
    routes: [
      { id: 'next-to', match: { path: '/next-to/*' }, plugins: ['next-to'], action: 'ok' },
      { id: 'on-path', match: { path: '/on-path/*' }, plugins: ['on-path'], action: 'ok' },
    ],
    actions: { ok: { type: 'static', body: 'ok\n' } },
    plugins: {
      'next-to': { path: './next-to/auth.py' },
      'on-path': { path: './on-path/auth.py', env: { PYTHONPATH: './lib' } },
    },
  });
  gw = await startGateway(files, writeConfig(dir, config));
  await whenReady(gw);
});

for (const how of ['next-to', 'on-path'] as const) {
  test(`the docs' first Python plugin with the SDK ${how === 'next-to' ? 'copied next to it' : 'on a relative PYTHONPATH'}: 401 without the token, 200 with it`, { timeout: 30_000 }, async () => {
    const denied = await request(`${gw.url}/${how}/me`);
    const allowed = await request(`${gw.url}/${how}/me`, { headers: { authorization: 'Bearer s3cret' } });

    assert.equal(denied.status, 401);
    assert.equal(denied.headers['www-authenticate'], 'Bearer');
    assert.equal(denied.text, 'unauthorized\n');
    assert.equal(allowed.status, 200);
    assert.equal(allowed.text, 'ok\n');
  });
}
