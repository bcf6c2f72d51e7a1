/**
 * @module commands/demo
 * `hookgate demo` (npm start): the demo in examples/demo, with its two
 * upstreams, served with the runner's own plugin children (no keeper, no
 * state dir written into the examples folder).
 */

import { fileURLToPath } from 'node:url';
import { command, LOG_FORMAT_OPTION } from './kit.ts';
import { serveFile } from './serve.ts';

export default command({
  help: `usage: hookgate demo

Serves the demo in examples/demo (npm start): two upstreams, the example
auth plugin and a push-only plugin; prints curl commands to try.
--log-format json|pretty sets HOOKGATE_LOG_FORMAT (default: pretty on a
terminal, else json).
`,
  positionals: 0,
  options: { ...LOG_FORMAT_OPTION },
  async run() {
    const config = fileURLToPath(new URL('../../../examples/demo/hookgate.json5', import.meta.url));
    const { startUpstream } = await import('../../../examples/demo/upstream.ts');
    try {
      await Promise.all([startUpstream(3001), startUpstream(3002)]);
    } catch (err) {
      process.stderr.write(`hookgate demo: cannot start the demo upstreams on 127.0.0.1:3001 and :3002 (${(err as Error).message})\n`);
      return 1;
    }
    return serveFile(config, null, (runner) => {
      const gw = runner.urls.gateway;
      process.stdout.write(`
hookgate demo is running (Ctrl-C stops it). Try:

  curl -i ${gw}/api/me                                           # 401: the auth plugin denies
  curl -i -H 'Authorization: Bearer demo-token' ${gw}/api/me     # 200: allowed, upstream sees X-User: demo
  curl -s ${gw}/public/hello; curl -s ${gw}/public/hello         # balanced: served_by alternates :3001 / :3002
  curl -i ${gw}/old/page                                         # 308 redirect to /public/page
  curl -s ${runner.urls.admin}/readyz                                 # readiness and plugin states

config: ${config}
`);
    });
  },
});
