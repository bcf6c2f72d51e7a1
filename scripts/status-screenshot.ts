/**
 * `node scripts/status-screenshot.ts [out.png]`: the README's picture of
 * the status page. Runs the demo (`hookgate demo`, ports 8080/9090/8787
 * and 3001/3002), sends it a bounded trickle of traffic (allowed, denied
 * and public requests, at most 60 s), waits until the page's request-rate
 * chart has a dozen points, and takes a screenshot in Debian's headless
 * Chromium (playwright-core) into docs/status-page.png. The demo is
 * stopped at the end, on failure too.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv[2] ?? `${ROOT}docs/status-page.png`;
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
if (!CHROMIUM) {
  process.stderr.write('status-screenshot: no Chromium (apt-get install chromium)\n');
  process.exit(2);
}
const GW = 'http://127.0.0.1:8080';
const ADMIN = 'http://127.0.0.1:9090';

const demo = spawn(process.execPath, [`${ROOT}node-runner/cli/cli.ts`, 'demo'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, HOOKGATE_LOG_LEVEL: 'warn' } });
const exited = new Promise<void>((r) => demo.once('exit', () => r()));
let stop = false;
try {
  const until = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`${ADMIN}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (demo.exitCode !== null || Date.now() > until) throw new Error('the demo did not get ready');
    await new Promise((r) => setTimeout(r, 200));
  }
  const traffic = (async () => {
    const end = Date.now() + 60_000;
    for (let i = 0; !stop && Date.now() < end; i++) {
      const path = i % 5 === 0 ? '/api/me' : i % 2 ? '/public/hello' : '/api/items';
      const headers: Record<string, string> = i % 5 === 0 ? {} : { authorization: 'Bearer demo-token' };
      await fetch(`${GW}${path}`, { headers }).then((r) => r.arrayBuffer(), () => null);
      await new Promise((r) => setTimeout(r, 20 + 30 * (1 + Math.sin(i / 15))));
    }
  })();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
    page.on('pageerror', (err) => process.stderr.write(`status page error: ${err.message}\n`));
    page.on('console', (m) => m.type() === 'error' && process.stderr.write(`status page console: ${m.text()}\n`));
    await page.goto(`${ADMIN}/`);
    await page.waitForFunction(() => (document.querySelector('#rate polyline')?.getAttribute('points') ?? '').split(' ').length >= 12, null, { timeout: 60_000, polling: 500 });
    await page.screenshot({ path: out, fullPage: true });
    process.stdout.write(`status page screenshot: ${out}\n`);
  } finally {
    stop = true;
    await browser.close();
    await traffic;
  }
} finally {
  demo.kill('SIGTERM');
  await exited;
}
