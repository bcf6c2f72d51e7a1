/**
 * The upstream of `bench/gateway.ts` and `bench/edge.ts`: a small, fast
 * Node HTTP server with keep-alive that answers every request with the
 * same 100-byte JSON body.
 * `GET /__whoami` (and any path ending in `/__whoami`, for proxies that
 * route by prefix) answers with the request's X-User header instead (the
 * benches check with it that an auth proxy really passed the user on; it is
 * never on the measured path).
 *
 * Usage: node bench/upstream.ts [port]   (default 0: any free port)
 * Prints `{"port":N}` on stdout when listening; exits when stdin ends
 * (so it does not outlive the bench) or on SIGTERM/SIGINT.
 */
import { createServer } from 'node:http';
import { serveForBench } from './serve.ts';

/** Exactly 100 bytes of JSON. */
const BODY = Buffer.from(JSON.stringify({ ok: true, id: 42, name: 'bench-item', tags: ['a', 'b', 'c'], pad: 'x'.repeat(31) }));
if (BODY.length !== 100) throw new Error(`the upstream body is ${BODY.length} bytes, expected 100`);

const HEADERS = { 'content-type': 'application/json', 'content-length': String(BODY.length) };

const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
  if (req.url?.endsWith('/__whoami')) {
    const user = String(req.headers['x-user'] ?? '');
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(user)) });
    res.end(user);
    return;
  }
  // Drain a request body, if any, before answering; GETs have none.
  if (req.headers['content-length'] || req.headers['transfer-encoding']) req.resume();
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
serveForBench(server, Number(process.argv[2] ?? 0));
