/**
 * @module serve
 * The runtime-neutral rules of the `serve` action: which file a request
 * names, and what the answer for a file is (conditional requests, ranges,
 * HEAD). No file system here: reading directories, resolving symlinks and
 * streaming bytes are the Node data plane's (`node-runner/gateway/serve.ts`);
 * the edge worker serves no files (it answers 501, `EDGE_UNSUPPORTED`).
 *
 * Which file (`servePath`): the request's path is already in normal form
 * (`routing/path.ts`, the one normaliser: dot segments resolved, `%2e%2e` decoded
 * and resolved, `%00`, raw `\` and malformed escapes refused). Here the
 * route's prefix is dropped (the segments of the matched pattern before its
 * `*`; all of them for an exact pattern), and each remaining segment is
 * percent-decoded once into a file name. A name that could still climb or
 * hide (`.`, `..`, one holding `/`, `\` or NUL after decoding, a dot file
 * other than `.well-known`, bytes that are not UTF-8) refuses the request
 * (404): it never reaches the file system. Decoding only once means
 * `%252e%252e` names a file literally called `%2e%2e`.
 *
 * What answer (`fileAnswer`): strong ETags from size and mtime,
 * Last-Modified, the preconditions of RFC 9110 §13.2.2 in their order
 * (If-Match, If-Unmodified-Since → 412; If-None-Match, If-Modified-Since →
 * 304), then one byte range (206, or 416 when it cannot be satisfied).
 * Several ranges in one Range header are answered with the whole file
 * (200), which RFC 9110 allows; so is a Range that does not parse, or whose
 * If-Range no longer matches.
 */

import type { Action } from '../config/config.ts';
import { listGet } from '../protocol/headers.ts';
import { contentTypeOf } from './mime.ts';
import type { HeaderList } from '../gateway/pipeline.ts';
import type { TokenBucket } from '../gateway/throttle.ts';

/** A serve action, as validated. */
export type ServeActionConfig = Extract<Action, { type: 'serve' }>;

/**
 * What `Pipeline.step` plans for a serve action; the data plane finds the
 * file (`servePath`) and answers (`fileAnswer`).
 */
export interface ServeStep {
  kind: 'serve';
  action: ServeActionConfig;
  /**
   * which file: the request's normal path with the route's prefix still on
   * (`prefixed`), or a plugin's `rp`, normalised, naming the file below the
   * root as it is; null when that `rp` is not a path (404)
   */
  path: string | null;
  prefixed: boolean;
  /** the download speed limit (verdict `sp`, else a pushed one) */
  download: TokenBucket | null;
}

/** The answer of the edge worker for an action it cannot carry out (`serve`; `pass` uses it too). */
export function edgeUnsupportedBody(type: string): string {
  return `not implemented: this route's action is "${type}", which only the self-hosted gateway (hookgate serve) can carry out, not the edge worker\n`;
}

/** A file name segment that may be served although it starts with a dot (RFC 8615). */
const WELL_KNOWN = '.well-known';

/** What a request names under a serve action's root. */
export interface ServePath {
  /** file names, decoded, below the root (empty: the root itself) */
  segments: string[];
  /** the request's path ended with "/" */
  trailingSlash: boolean;
  /**
   * whether adding a "/" to the request's path still matches the route
   * (false for an exact pattern naming the directory itself), so a
   * directory may be redirected to its slashed form
   */
  canAddSlash: boolean;
}

/** The number of path segments an `mp` (a matched path pattern as written) covers before its `*`; every one for an exact pattern. */
function prefixLength(mp: string): { n: number; prefix: boolean } {
  if (mp === '') return { n: 0, prefix: true };
  const segs = mp.slice(1).split('/');
  const prefix = segs[segs.length - 1] === '*';
  if (prefix) segs.pop();
  return { n: segs.filter((s) => s !== '').length, prefix };
}

/** One segment of a normal path as a file name, or null when it must not reach the file system. */
function fileName(seg: string): string | null {
  let name: string;
  try {
    name = seg.includes('%') ? decodeURIComponent(seg) : seg;
  } catch {
    return null;
  }
  if (name === '' || name === '.' || name === '..') return null;
  if (name.includes('/') || name.includes('\\') || name.includes('\0')) return null;
  if (name.charCodeAt(0) === 46 /* . */ && name !== WELL_KNOWN) return null;
  return name;
}

/**
 * The file names a request's normal path names below a serve action's
 * root, once the route's prefix (`mp`, the pattern that matched; '' for a
 * route without a path) is dropped; null when a name is refused (see the
 * module). `rewritten`: the path is a plugin's `rp`, which names the file
 * below the root as it is (no prefix dropped).
 *
 * The prefix is dropped by counting: routing already compared it, on the
 * path without `;` parameters, so segments whose name is empty once their
 * parameters are cut (`/;x/static/...`) do not count.
 *
 * @example
 * servePath('/static/css/app.css', '/static/*') // { segments: ['css', 'app.css'], trailingSlash: false, canAddSlash: true }
 * servePath('/static/a%20b.txt', '/static/*')   // { segments: ['a b.txt'], ... }
 * servePath('/static/.env', '/static/*')        // null
 */
export function servePath(path: string, mp: string, rewritten = false): ServePath | null {
  const { n, prefix } = rewritten ? { n: 0, prefix: true } : prefixLength(mp);
  const segs = path.split('/').slice(1);
  const trailingSlash = segs.length > 0 && segs[segs.length - 1] === '';
  if (trailingSlash) segs.pop();
  let dropped = 0;
  let i = 0;
  while (i < segs.length && dropped < n) {
    const semi = segs[i].indexOf(';');
    if ((semi < 0 ? segs[i] : segs[i].slice(0, semi)) !== '') dropped++;
    i++;
  }
  const segments: string[] = [];
  for (; i < segs.length; i++) {
    const name = fileName(segs[i]);
    if (name === null) return null;
    segments.push(name);
  }
  return { segments, trailingSlash, canAddSlash: prefix || segments.length > 0 };
}

/** What the data plane knows of the file it opened. */
export interface FileFacts {
  size: number;
  mtimeMs: number;
  /** its name (for the Content-Type) */
  name: string;
}

/** What to send for a file: the head, and which bytes of the file follow (none for HEAD, 304, 412, 416). */
export interface FilePlan {
  status: number;
  headers: HeaderList;
  /** inclusive byte offsets of the body, or null when no body follows */
  body: { start: number; end: number } | null;
}

/**
 * The strong ETag of a file version: its mtime (ms) and size, in hex.
 *
 * @example
 * etagOf({ size: 5, mtimeMs: 1700000000000.5, name: 'a' }) // '"18bcfe56800-5"'
 */
export function etagOf(file: Pick<FileFacts, 'size' | 'mtimeMs'>): string {
  return `"${Math.floor(file.mtimeMs).toString(16)}-${file.size.toString(16)}"`;
}

/** The entity tags of an If-Match / If-None-Match value; null for `*`. */
function tagsOf(value: string): string[] | null {
  if (value.trim() === '*') return null;
  return [...value.matchAll(/(W\/)?"[^"]*"/g)].map((m) => m[0]);
}

/** If-None-Match: weak comparison (`W/` ignored). */
function noneMatch(value: string, etag: string): boolean {
  const tags = tagsOf(value);
  return tags === null || tags.some((t) => (t.startsWith('W/') ? t.slice(2) : t) === etag);
}

/** If-Match: strong comparison (a weak tag never matches). */
function anyMatch(value: string, etag: string): boolean {
  const tags = tagsOf(value);
  return tags === null || tags.includes(etag);
}

/** A HTTP date as whole seconds since the epoch, or NaN. */
function dateSeconds(value: string): number {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? NaN : Math.floor(ms / 1000);
}

/** A single satisfiable range, 'unsatisfiable', or null (no Range, several ranges, or one that does not parse: the whole file). */
function rangeOf(value: string, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * The answer for a file (GET or HEAD; other methods are refused before).
 * `headers` is the request's header list.
 *
 * @example
 * fileAnswer('GET', ['Range', 'bytes=0-1'], { size: 10, mtimeMs: 0, name: 'a.txt' })
 * // { status: 206, headers: [..., 'content-range', 'bytes 0-1/10', 'content-length', '2'], body: { start: 0, end: 1 } }
 */
export function fileAnswer(method: string, headers: HeaderList, file: FileFacts): FilePlan {
  const etag = etagOf(file);
  const mtime = Math.floor(file.mtimeMs / 1000);
  const lastModified = new Date(mtime * 1000).toUTCString();
  const validators: HeaderList = ['etag', etag, 'last-modified', lastModified];
  const refused = (status: number, more: HeaderList = []): FilePlan => ({ status, headers: [...validators, ...more, 'content-length', '0'], body: null });

  const ifMatch = listGet(headers, 'if-match');
  if (ifMatch !== null) {
    if (!anyMatch(ifMatch, etag)) return refused(412);
  } else {
    const ius = listGet(headers, 'if-unmodified-since');
    const since = ius === null ? NaN : dateSeconds(ius);
    if (!Number.isNaN(since) && mtime > since) return refused(412);
  }
  const inm = listGet(headers, 'if-none-match');
  if (inm !== null) {
    if (noneMatch(inm, etag)) return { status: 304, headers: validators, body: null };
  } else {
    const ims = listGet(headers, 'if-modified-since');
    const since = ims === null ? NaN : dateSeconds(ims);
    if (!Number.isNaN(since) && mtime <= since) return { status: 304, headers: validators, body: null };
  }

  const head: HeaderList = ['content-type', contentTypeOf(file.name), 'x-content-type-options', 'nosniff', 'accept-ranges', 'bytes', ...validators];
  const range = listGet(headers, 'range');
  let r: ReturnType<typeof rangeOf> = null;
  // Range is defined for GET only; HEAD answers as a GET without one would.
  if (range !== null && method === 'GET') {
    const ifRange = listGet(headers, 'if-range');
    // If-Range: a strong tag must equal ours, a date must be our Last-Modified exactly; else the whole file.
    const current = ifRange === null || (ifRange.trim().startsWith('"') ? ifRange.trim() === etag : dateSeconds(ifRange) === mtime);
    if (current) r = rangeOf(range, file.size);
  }
  if (r === 'unsatisfiable') return refused(416, ['content-range', `bytes */${file.size}`]);
  if (r !== null) {
    head.push('content-range', `bytes ${r.start}-${r.end}/${file.size}`, 'content-length', String(r.end - r.start + 1));
    return { status: 206, headers: head, body: r };
  }
  head.push('content-length', String(file.size));
  return { status: 200, headers: head, body: method === 'HEAD' || file.size === 0 ? null : { start: 0, end: file.size - 1 } };
}
