/**
 * `npm run dev`: the demo runner (`hookgate demo`: upstreams, plugins, the
 * hook API on 127.0.0.1:8787) and `wrangler dev` running the edge worker
 * pointed at it. Prints the worker's URL and curl commands; Ctrl-C stops
 * both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const RUNNER_KEY = 'demo-runner-key-change-me';
const PORT = process.env.DEV_PORT ?? '8788';
const children: ChildProcess[] = [];

function stop(code: number): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 3000).unref();
  Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null))).then(() => process.exit(code));
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

async function waitFor(url: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      await r.body?.cancel();
      if (r.status < 500) return true;
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

const runner = spawn(process.execPath, [join(root, 'node-runner/cli/cli.ts'), 'demo'], { stdio: ['ignore', 'ignore', 'inherit'] });
children.push(runner);
runner.on('exit', (code) => {
  process.stderr.write(`dev: the runner exited (${code})\n`);
  stop(1);
});
if (!(await waitFor('http://127.0.0.1:9090/readyz', 20_000))) {
  process.stderr.write('dev: the demo runner did not become ready (are ports 8080, 8787, 9090, 3001, 3002 free?)\n');
  stop(1);
} else {
  const wrangler = spawn(
    join(root, 'node_modules/.bin/wrangler'),
    ['dev', '--port', PORT, '--ip', '127.0.0.1', '--var', 'RUNNER_URL:http://127.0.0.1:8787', '--var', `RUNNER_KEY:${RUNNER_KEY}`, '--var', 'STATE_TTL_MS:1000'],
    { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } },
  );
  children.push(wrangler);
  wrangler.on('exit', (code) => {
    process.stderr.write(`dev: wrangler exited (${code})\n`);
    stop(1);
  });
  if (await waitFor(`http://127.0.0.1:${PORT}/health`, 60_000)) {
    const w = `http://127.0.0.1:${PORT}`;
    process.stdout.write(`
hookgate edge worker (wrangler dev) at ${w}, calling hooks on the runner at http://127.0.0.1:8787. Try:

  curl -i ${w}/api/me                                           # 401: the auth plugin denies (through the runner)
  curl -i -H 'Authorization: Bearer demo-token' ${w}/api/me     # 200: allowed, upstream sees X-User: demo
  curl -s ${w}/public/hello; curl -s ${w}/public/hello          # balanced over targets the runner's plugin pushed

Ctrl-C stops both.
`);
  } else {
    process.stderr.write('dev: wrangler dev did not answer within 60 s\n');
    stop(1);
  }
}
