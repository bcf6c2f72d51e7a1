/**
 * @module gateway/client-hello
 * Reads the SNI name (and the ALPN list) from the first bytes a TLS
 * client sends, before any handshake, so that a TLS listener can choose
 * between relaying the connection (`pass`) and terminating it. Plain
 * parsing of RFC 8446 §4.1.2 / RFC 6066 §3 / RFC 7301, bounded: the
 * ClientHello may span several records, but at most `MAX_HELLO` bytes of
 * handshake are read; anything that is not a well-formed ClientHello is
 * `bad` (the listener closes it) and never throws. Waiting for the bytes,
 * with a deadline, is `readClientHello`'s.
 */

import type { Socket } from 'node:net';

/** The largest ClientHello read (handshake bytes, without record headers): 16 KiB, far above any real one (~2 KB). */
export const MAX_HELLO = 16 * 1024;

/** What the bytes so far say. */
export type HelloParse =
  | { kind: 'more' }
  | { kind: 'hello'; sni: string | null; alpn: string[] }
  | { kind: 'bad'; reason: string };

const RECORD_HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
/** a host name as SNI carries it: ASCII labels (underscores seen in the wild), at most 253 characters */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/**
 * Parses the start of a TLS connection.
 *
 * @example
 * parseClientHello(firstBytes) // { kind: 'hello', sni: 'db.example.com', alpn: ['h2', 'http/1.1'] }
 */
export function parseClientHello(buf: Buffer): HelloParse {
  // Reassemble the handshake message from its records.
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need < 0 || have < need) {
    if (buf.length - off < 5) return buf.length - off === 0 || buf[off] === RECORD_HANDSHAKE ? { kind: 'more' } : { kind: 'bad', reason: 'not a TLS handshake record' };
    if (buf[off] !== RECORD_HANDSHAKE) return { kind: 'bad', reason: 'not a TLS handshake record' };
    if (buf[off + 1] !== 3) return { kind: 'bad', reason: 'not a TLS record version' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384) return { kind: 'bad', reason: 'bad TLS record length' };
    if (buf.length - off - 5 < len) {
      if (need < 0 && parts.length === 0 && buf.length - off - 5 >= 4) {
        // The handshake header is in: refuse an oversize hello without waiting for it.
        const n = buf.readUIntBE(off + 6, 3);
        if (buf[off + 5] !== CLIENT_HELLO) return { kind: 'bad', reason: 'the first handshake message is not a ClientHello' };
        if (n > MAX_HELLO) return { kind: 'bad', reason: 'ClientHello too large' };
      }
      return { kind: 'more' };
    }
    const frag = buf.subarray(off + 5, off + 5 + len);
    off += 5 + len;
    parts.push(frag);
    have += frag.length;
    if (need < 0) {
      if (have < 4) continue;
      const head = parts.length === 1 ? frag : Buffer.concat(parts);
      if (head[0] !== CLIENT_HELLO) return { kind: 'bad', reason: 'the first handshake message is not a ClientHello' };
      need = 4 + head.readUIntBE(1, 3);
      if (need - 4 > MAX_HELLO) return { kind: 'bad', reason: 'ClientHello too large' };
    }
  }
  const msg = (parts.length === 1 ? parts[0] : Buffer.concat(parts)).subarray(4, need);
  return parseHelloBody(msg);
}

/** The body of a ClientHello (after its 4-byte handshake header). */
function parseHelloBody(b: Buffer): HelloParse {
  const bad = (reason: string): HelloParse => ({ kind: 'bad', reason: `malformed ClientHello: ${reason}` });
  let p = 2 + 32; // legacy_version, random
  if (b.length < p + 1) return bad('too short');
  p += 1 + b[p]; // session id
  if (b.length < p + 2) return bad('truncated before cipher suites');
  const suites = b.readUInt16BE(p);
  if (suites < 2 || suites % 2) return bad('bad cipher suites length');
  p += 2 + suites;
  if (b.length < p + 1) return bad('truncated before compression methods');
  const comp = b[p];
  if (comp < 1) return bad('no compression method');
  p += 1 + comp;
  if (p > b.length) return bad('truncated compression methods');
  if (p === b.length) return { kind: 'hello', sni: null, alpn: [] };
  if (b.length < p + 2) return bad('truncated extensions length');
  const extEnd = p + 2 + b.readUInt16BE(p);
  if (extEnd !== b.length) return bad('extensions length does not match');
  p += 2;
  let sni: string | null = null;
  let alpn: string[] = [];
  const seen = new Set<number>();
  while (p < extEnd) {
    if (extEnd - p < 4) return bad('truncated extension');
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return bad('extension overruns the hello');
    if (seen.has(type)) return bad(`extension ${type} appears twice`);
    seen.add(type);
    const data = b.subarray(p, p + len);
    p += len;
    if (type === EXT_SERVER_NAME) {
      if (len === 0) continue; // a server's echo form; a client should not send it empty, but it names nobody
      const r = serverName(data);
      if (typeof r !== 'string' && r !== null) return bad(r.reason);
      sni = r;
    } else if (type === EXT_ALPN) {
      const r = alpnList(data);
      if (!Array.isArray(r)) return bad(r.reason);
      alpn = r;
    }
  }
  return { kind: 'hello', sni, alpn };
}

function serverName(d: Buffer): string | null | { reason: string } {
  if (d.length < 2 || d.readUInt16BE(0) !== d.length - 2) return { reason: 'bad server_name list length' };
  let p = 2;
  let name: string | null = null;
  while (p < d.length) {
    if (d.length - p < 3) return { reason: 'truncated server_name entry' };
    const type = d[p];
    const len = d.readUInt16BE(p + 1);
    p += 3;
    if (p + len > d.length) return { reason: 'server_name entry overruns its list' };
    if (type === 0) {
      if (name !== null) return { reason: 'two host names in server_name' };
      const s = d.toString('latin1', p, p + len);
      if (!HOST_NAME.test(s)) return { reason: 'server_name is not a host name' };
      name = s.toLowerCase().replace(/\.$/, '');
    }
    p += len;
  }
  return name;
}

function alpnList(d: Buffer): string[] | { reason: string } {
  if (d.length < 2 || d.readUInt16BE(0) !== d.length - 2) return { reason: 'bad ALPN list length' };
  const out: string[] = [];
  let p = 2;
  while (p < d.length) {
    const len = d[p];
    if (len === 0 || p + 1 + len > d.length) return { reason: 'bad ALPN protocol length' };
    out.push(d.toString('latin1', p + 1, p + 1 + len));
    p += 1 + len;
  }
  return out;
}

/** What `readClientHello` read: the parse, and every byte taken from the socket (to replay). */
export interface PeekedHello {
  parse: HelloParse | { kind: 'timeout' } | { kind: 'closed' };
  bytes: Buffer;
}

/**
 * Reads from `socket` until the ClientHello is complete, bad, over
 * `MAX_HELLO`, or `deadlineMs` passes (0: no deadline), then stops
 * reading (the socket is paused, its listeners removed) so the bytes can
 * be replayed: `socket.unshift(bytes)` before handing it to TLS, or
 * written upstream first when relayed.
 *
 * @example
 * const { parse, bytes } = await readClientHello(socket, 10_000);
 * if (parse.kind !== 'hello') return socket.destroy();
 */
export function readClientHello(socket: Socket, deadlineMs: number): Promise<PeekedHello> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | null = null;
    const done = (parse: PeekedHello['parse']) => {
      if (timer) clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      resolve({ parse, bytes: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      const all = chunks.length === 1 ? c : Buffer.concat(chunks);
      const r = parseClientHello(all);
      if (r.kind !== 'more') return done(r);
      // Record headers and one record's slack on top of the hello itself.
      if (size > MAX_HELLO + 16384 + 5 * 8) done({ kind: 'bad', reason: 'ClientHello too large' });
    };
    const onEnd = () => done({ kind: 'closed' });
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onEnd);
    if (deadlineMs > 0) timer = setTimeout(() => done({ kind: 'timeout' }), deadlineMs);
  });
}
