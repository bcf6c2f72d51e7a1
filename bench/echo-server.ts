/**
 * The floor of `bench/hooks.ts`: a trivial Unix-socket server that answers
 * every frame with a fixed frame of the given payload size, doing no
 * decoding at all. Usage: node bench/echo-server.ts <socket> <replyBytes>
 */
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';

const [socket, size] = process.argv.slice(2);
const reply = Buffer.alloc(4 + Number(size), 0x61);
reply.writeUInt32BE(Number(size), 0);
rmSync(socket, { force: true });
const server = createServer((c) => {
  let need = -1;
  let buf: Buffer = Buffer.alloc(0);
  c.on('error', () => {});
  c.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (need < 0) {
        if (buf.length < 4) return;
        need = buf.readUInt32BE(0);
        buf = buf.subarray(4);
      }
      if (buf.length < need) return;
      buf = buf.subarray(need);
      need = -1;
      c.write(reply);
    }
  });
});
server.listen(socket, () => process.stdout.write('ready\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
