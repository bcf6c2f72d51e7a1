/**
 * The demo's upstream: a small HTTP server that says which instance
 * answered and echoes what the gateway sent it (method, path, the headers
 * plugins add), so the demo's curl commands show allow, deny and balancing.
 * Usage: node examples/demo/upstream.ts [port...]   (default 3001 3002)
 */
import { createServer, type Server } from 'node:http';

/** Starts one demo upstream on 127.0.0.1:port. */
export function startUpstream(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    let size = 0;
    req.on('data', (c: Buffer) => (size += c.length));
    req.on('end', () => {
      const seen: Record<string, string | undefined> = {
        'x-user': req.headers['x-user'] as string | undefined,
        'x-forwarded-for': req.headers['x-forwarded-for'] as string | undefined,
        'x-forwarded-host': req.headers['x-forwarded-host'] as string | undefined,
      };
      const body = JSON.stringify({ served_by: `upstream :${port}`, method: req.method, url: req.url, body_bytes: size, headers: seen }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': String(port) });
      res.end(body + '\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

if (import.meta.main) {
  const ports = process.argv.slice(2).map(Number);
  for (const p of ports.length ? ports : [3001, 3002]) await startUpstream(p);
  process.stderr.write('demo upstreams listening\n');
}
