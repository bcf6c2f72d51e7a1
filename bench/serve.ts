/**
 * The lifecycle shared by the benchmark's small servers (upstream, auth
 * service): listen on 127.0.0.1, print `{"port":N}` on stdout, and exit
 * when stdin ends (the bench died) or on SIGTERM/SIGINT.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens on `port` (0: any free one) and ties the process's life to the bench's. */
export function serveForBench(server: Server, port: number): void {
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
