/**
 * The ClientHello reader (node-runner/gateway/client-hello.ts) on real
 * hellos from Node's TLS client, split across records and cut at every
 * length, and on mutated bytes: it finds the SNI name and ALPN list, says
 * "more" for a prefix, "bad" for garbage, and never throws.
 */

import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { test } from 'node:test';
import { MAX_HELLO, parseClientHello } from '../node-runner/gateway/client-hello.ts';

/** The first bytes Node's TLS client sends for `servername` (its ClientHello records). */
async function realHello(servername: string | undefined, alpn?: string[]): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (c: Buffer) => (resolve(c), s.destroy()))));
    const c = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, ALPNProtocols: alpn, rejectUnauthorized: false });
    c.on('error', () => {});
    const bytes = await got;
    c.destroy();
    return bytes;
  } finally {
    server.close();
  }
}

/** The same hello with its handshake split over two records at `at`. */
function split(hello: Buffer, at: number): Buffer {
  const body = hello.subarray(5);
  const rec = (b: Buffer) => Buffer.concat([Buffer.from([0x16, 3, 1, b.length >> 8, b.length & 0xff]), b]);
  return Buffer.concat([rec(body.subarray(0, at)), rec(body.subarray(at))]);
}

test('finds the SNI name and ALPN list of a real ClientHello, also split over records', async () => {
  const hello = await realHello('DB.Example.com', ['h2', 'http/1.1']);
  assert.deepEqual(parseClientHello(hello), { kind: 'hello', sni: 'db.example.com', alpn: ['h2', 'http/1.1'] });
  for (const at of [1, 3, 4, 40, 100]) assert.deepEqual(parseClientHello(split(hello, at)), { kind: 'hello', sni: 'db.example.com', alpn: ['h2', 'http/1.1'] }, `split at ${at}`);
  assert.deepEqual(parseClientHello(await realHello(undefined)), { kind: 'hello', sni: null, alpn: [] }, 'no SNI');
});

test('every prefix of a hello is "more" (never a wrong answer), and a cut followed by other bytes is never a crash', async () => {
  const hello = split(await realHello('a.example.com'), 50);
  for (let n = 0; n < hello.length; n++) assert.equal(parseClientHello(hello.subarray(0, n)).kind, 'more', `prefix of ${n}`);
  for (let n = 6; n < hello.length; n += 7) assert.doesNotThrow(() => parseClientHello(Buffer.concat([hello.subarray(0, n), Buffer.alloc(400, 0xff)])));
});

test('mutated hellos are parsed or refused, never thrown on', async () => {
  const hello = await realHello('fuzz.example.com', ['h2']);
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 3000; i++) {
    const m = Buffer.from(hello);
    for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) m[5 + Math.floor(rand() * (m.length - 5))] = Math.floor(rand() * 256);
    const r = parseClientHello(m);
    assert.ok(['hello', 'bad', 'more'].includes(r.kind));
    if (r.kind === 'hello' && r.sni !== null) assert.match(r.sni, /^[a-z0-9_.-]+$/, 'a name that is not a host name is refused');
  }
});

test('refuses what is not a ClientHello, and an oversize one as soon as its length is known', () => {
  assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'bad');
  assert.equal(parseClientHello(Buffer.from([0x16, 3, 1, 0x40, 0x01])).kind, 'bad', 'a record over 16 KiB');
  const big = MAX_HELLO + 1;
  assert.deepEqual(parseClientHello(Buffer.from([0x16, 3, 1, 0x40, 0, 1, big >> 16, (big >> 8) & 0xff, big & 0xff])), { kind: 'bad', reason: 'ClientHello too large' });
  assert.equal(parseClientHello(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0])).kind, 'bad', 'a ServerHello');
});
