/**
 * The admin status page in a real headless Chromium (Debian's chromium,
 * driven by playwright-core): it loads without console errors or CSP
 * violations, lists the routes and plugins of a real `hookgate serve`, and
 * shows a plugin's restart after it was killed. With admin.keys it asks for
 * the key and then shows the same. Skips, saying so, only when no
 * Chromium is installed (`.ci/run` installs it).
 */

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { request, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, startGateway } from '../helpers/processes.ts';
import { scope, type Scope } from '../helpers/scope.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

async function browser(s: Scope): Promise<Browser> {
  const b = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  s.defer(() => b.close());
  return b;
}

const CONFIG = baseConfig({
  routes: [
    { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'ok\n' } },
    { id: 'lb', match: { path: '/lb/*' }, balancer: { type: 'leastconn', targets: ['127.0.0.1:9'] }, action: { type: 'proxy', upstream: 'http://{target}' } },
  ],
  plugins: { auth: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request' } } },
});

describe('admin status page (headless Chromium)', { concurrency: true, timeout: 120_000, skip: CHROMIUM ? false : 'no Chromium installed (apt-get install chromium; .ci/run does)' }, () => {
  test('loads without console errors, lists routes and plugins, and shows a plugin restart', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, CONFIG);
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'ready' });
    const page = await (await browser(s)).newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    const res = await page.goto(`${gw.admin}/`);
    assert.equal(res?.status(), 200);
    assert.match(String(res?.headers()['content-security-policy']), /default-src 'none'/);
    await page.waitForFunction(() => document.querySelectorAll('#routes tbody tr').length === 2, undefined, { timeout: 30_000 });
    const routes = await page.$$eval('#routes tbody tr', (trs) => trs.map((tr) => tr.textContent ?? ''));
    assert.match(routes[0], /^api/);
    assert.match(routes[1], /^lb.*leastconn: 127\.0\.0\.1:9/);
    const plugin = await page.$eval('#plugins tbody tr', (tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent));
    assert.equal(plugin[0], 'auth');
    assert.equal(plugin[1], 'ready');
    assert.equal(plugin[3], '0');
    assert.equal(await page.textContent('#ready'), 'ready');

    const pid = Number(plugin[2]);
    process.kill(pid, 'SIGKILL');
    await page.waitForFunction(() => document.querySelector('#plugins tbody tr td:nth-child(4)')?.textContent === '1', undefined, { timeout: 30_000 });
    assert.deepEqual(problems, [], 'no console errors, CSP violations or page errors');
  });

  test('with admin.keys the page asks for the key once, then shows the data', async (t) => {
    const s = scope(t);
    const key = 'admin-key-for-the-page-0123';
    const gw = await startGateway(s, { ...CONFIG, admin: { listen: '127.0.0.1:0', keys: [{ id: 'ops', secret_env: 'HG_ADMIN_KEY' }] } }, { env: { HG_ADMIN_KEY: key } });
    const page = await (await browser(s)).newPage();
    let asked = 0;
    page.on('dialog', (d) => {
      asked++;
      void d.accept(key);
    });
    await page.goto(`${gw.admin}/`);
    await page.waitForFunction(() => document.querySelectorAll('#plugins tbody tr').length === 1, undefined, { timeout: 30_000 });
    assert.equal(asked, 1, 'asked once; the key is kept for the session');
  });
});
