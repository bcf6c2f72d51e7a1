/**
 * The auth service behind nginx's `auth_request` in `bench/gateway.ts`: the
 * same logic as the example plugin examples/plugins/auth.ts, as an HTTP
 * service. Tokens come from HOOKGATE_AUTH_TOKENS (`token:user` pairs,
 * comma-separated; default `demo-token:demo`). A request with
 * `Authorization: Bearer <token>` gets 200 and `X-User: <user>` (nginx
 * passes it upstream with auth_request_set); anything else gets 401.
 * Tokens are compared in constant time, as the plugin does.
 *
 * `GET /__count` answers the number of auth checks made so far (the bench
 * reads it around a run to see how many reached the service, e.g. past
 * nginx's cache); nginx never sends that path, it only sends its
 * subrequest.
 *
 * Usage: node bench/auth-service.ts [port]   (default 0: any free port)
 * Prints `{"port":N}` on stdout when listening; exits when stdin ends or
 * on SIGTERM/SIGINT.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { serveForBench } from './serve.ts';

const tokens = (process.env.HOOKGATE_AUTH_TOKENS ?? 'demo-token:demo')
  .split(',')
  .map((pair) => pair.trim())
  .filter(Boolean)
  .map((pair) => {
    const i = pair.lastIndexOf(':');
    return { token: Buffer.from(i > 0 ? pair.slice(0, i) : pair), user: i > 0 ? pair.slice(i + 1) : 'user' };
  });

let checks = 0;

const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
  if (req.url === '/__count') {
    const body = String(checks);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
    return;
  }
  checks++;
  const auth = req.headers.authorization ?? '';
  let user = '';
  if (auth.startsWith('Bearer ')) {
    const given = Buffer.from(auth.slice(7).trim());
    for (const t of tokens) if (t.token.length === given.length && timingSafeEqual(t.token, given)) user = t.user;
  }
  if (user) {
    res.writeHead(200, { 'x-user': user, 'content-length': '0' });
    res.end();
  } else {
    const body = 'unauthorized\n';
    res.writeHead(401, { 'www-authenticate': 'Bearer', 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
  }
});
serveForBench(server, Number(process.argv[2] ?? 0));
