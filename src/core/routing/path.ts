/**
 * @module path
 * The one path normaliser of both data planes: the raw request target as
 * the client sent it in, the path that routing, plugins, templates and the
 * upstream all see out, or a typed refusal (a 400). Normalising once, before
 * matching, is what keeps a route's plugins from being skipped by a path the
 * upstream reads differently (`/%61dmin`, `//admin`, `/public/..%2Fapi`).
 *
 * The rules (README, "Routes"):
 *
 * * Escapes of unreserved characters (ALPHA / DIGIT / `-` `.` `_` `~`) are
 *   decoded; the hex of every other escape is upper-cased. A malformed
 *   escape (`%zz`, `%4`) is refused.
 * * Dot segments are resolved (also those that only appear after decoding,
 *   `%2e%2e`), never above `/`. Duplicate slashes are merged. A trailing
 *   slash stays.
 * * `%2F` and `%5C` stay encoded and are not separators; whether a route
 *   accepts them is the gateway's check (`hasEncodedSlash`). A dot segment
 *   hidden between encoded slashes (`..%2F`) is refused on every route,
 *   since upstreams that decode them would climb out.
 * * `%00`, raw controls (C0, DEL) and a raw `\` are refused.
 * * `;` (matrix parameters) stays in the path; `matchPathOf` gives the path
 *   routes are compared with, each segment without its `;...` part. A dot
 *   segment with parameters (`..;`) is refused: Java servers read it as `..`.
 * * Characters a path may not hold raw (`"`, `<`, `>`, `` ` ``, `{`, `|`,
 *   `}`, `^`, `[`, `]`, `#`, non-ASCII) are percent-encoded, so a URL parser
 *   further on (the upstream client's) leaves the path as it is.
 *
 * Splitting the query off is done here too (`splitTarget`); the query stays
 * as it was sent. Applying the refusals as responses is the gateway's
 * business.
 */

/** Why a path was refused; the `message` is safe to send (it never holds the client's bytes). */
export type PathProblem = 'bad-escape' | 'nul' | 'control' | 'backslash' | 'dot-params' | 'hidden-dot' | 'not-a-path';

/**
 * A refused request target.
 *
 * @example
 * const r = normalizePath('/a%zz');
 * if (typeof r !== 'string') return new Response(r.message, { status: 400 });
 */
export interface PathRefusal {
  problem: PathProblem;
  /** a short plain-text line for the 400 body, e.g. `bad request: malformed percent-escape in the path\n` */
  message: string;
}

const REFUSALS: Record<PathProblem, PathRefusal> = {
  'bad-escape': { problem: 'bad-escape', message: 'bad request: malformed percent-escape in the path\n' },
  nul: { problem: 'nul', message: 'bad request: encoded NUL in the path\n' },
  control: { problem: 'control', message: 'bad request: control character in the path\n' },
  backslash: { problem: 'backslash', message: 'bad request: "\\" in the path\n' },
  'dot-params': { problem: 'dot-params', message: 'bad request: dot segment with ";" parameters in the path\n' },
  'hidden-dot': { problem: 'hidden-dot', message: 'bad request: dot segment next to an encoded "/" or "\\" in the path\n' },
  'not-a-path': { problem: 'not-a-path', message: 'bad request: the request target is not a path\n' },
};

/** The refusal for an encoded `/` or `\` on a route without `allow_encoded_slash`. */
export const ENCODED_SLASH_REFUSAL = 'bad request: encoded "/" in the path is not allowed on this route\n';

const HEX = '0123456789ABCDEF';

/** Character classes by code (0..127): 1 unreserved, 2 other characters a path may hold raw. */
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9\-._~]/.test(ch)) CLASS[c] = 1;
  else if (/[!$&'()*+,;=:@/%]/.test(ch)) CLASS[c] = 2;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isDots(s: string, from: number, to: number): boolean {
  const n = to - from;
  return (n === 1 && s.charCodeAt(from) === 46) || (n === 2 && s.charCodeAt(from) === 46 && s.charCodeAt(from + 1) === 46);
}

/**
 * True when `raw` is already in normal form: one scan, no allocation. Any
 * doubt (an escape, a dot segment, `//`, a character to encode) sends the
 * path to the full normaliser, which also decides refusals.
 */
function isNormal(raw: string): boolean {
  const n = raw.length;
  if (n === 0 || raw.charCodeAt(0) !== 47) return false;
  let segStart = 1;
  for (let i = 1; i <= n; i++) {
    const c = i < n ? raw.charCodeAt(i) : 47;
    if (c === 47) {
      if (i === segStart && i < n) return false; // "//"
      if (isDots(raw, segStart, i)) return false;
      segStart = i + 1;
    } else if (c === 59 /* ; */) {
      if (isDots(raw, segStart, i)) return false; // "..;"
    } else if (c === 37 /* % */) {
      // Normal escapes: upper-case hex of a character that stays encoded.
      const hi = i + 2 < n ? upperHex(raw.charCodeAt(i + 1)) : -1;
      const lo = i + 2 < n ? upperHex(raw.charCodeAt(i + 2)) : -1;
      if (hi < 0 || lo < 0) return false;
      const v = hi * 16 + lo;
      if (v === 0 || v === 0x2f || v === 0x5c || (v < 128 && CLASS[v] === 1)) return false;
      i += 2;
    } else if (c >= 128 || CLASS[c] === 0) {
      return false;
    }
  }
  return true;
}

function upperHex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function encodeChar(out: string, code: number): string {
  if (code < 0x100) return out + '%' + HEX[code >> 4] + HEX[code & 15];
  for (const b of new TextEncoder().encode(String.fromCharCode(code))) out += '%' + HEX[b >> 4] + HEX[b & 15];
  return out;
}

/** A segment's name without its `;` parameters. */
function bare(seg: string): string {
  const semi = seg.indexOf(';');
  return semi < 0 ? seg : seg.slice(0, semi);
}

/** True when a segment holding `%2F` / `%5C` has a `.` or `..` piece between them. */
function hidesDots(seg: string): boolean {
  const parts = seg.split(/%2F|%5C/);
  if (parts.length === 1) return false;
  for (const p of parts) {
    const b = bare(p);
    if (b === '.' || b === '..') return true;
  }
  return false;
}

/**
 * Normalises the path of a request target (the part before `?`, as the
 * client sent it). Returns the normal path, the same string when it was
 * already normal, or a refusal.
 *
 * @example
 * normalizePath('/%61dmin//users/./x') // '/admin/users/x'
 * normalizePath('/a/%2e%2e/b')          // '/b'
 * normalizePath('/admin%2fusers')       // '/admin%2Fusers' (refused later unless the route allows it)
 * normalizePath('/a%zz')                // { problem: 'bad-escape', message: 'bad request: ...' }
 */
export function normalizePath(raw: string): string | PathRefusal {
  if (isNormal(raw)) return raw;
  if (raw.charCodeAt(0) !== 47) return REFUSALS['not-a-path'];
  const segs: string[] = [];
  let dirEnd = false;
  const n = raw.length;
  let i = 1;
  while (i <= n) {
    let end = raw.indexOf('/', i);
    if (end < 0) end = n;
    let seg = '';
    for (let j = i; j < end; j++) {
      const c = raw.charCodeAt(j);
      if (c === 37) {
        const hi = j + 1 < end ? hexValue(raw.charCodeAt(j + 1)) : -1;
        const lo = j + 2 < end ? hexValue(raw.charCodeAt(j + 2)) : -1;
        if (hi < 0 || lo < 0) return REFUSALS['bad-escape'];
        const v = hi * 16 + lo;
        if (v === 0) return REFUSALS.nul;
        seg += v < 128 && CLASS[v] === 1 ? String.fromCharCode(v) : '%' + HEX[hi] + HEX[lo];
        j += 2;
      } else if (c < 0x20 || c === 0x7f) {
        return REFUSALS.control;
      } else if (c === 92) {
        return REFUSALS.backslash;
      } else if (c < 128 && CLASS[c] !== 0) {
        seg += raw[j];
      } else {
        seg = encodeChar(seg, c);
      }
    }
    const name = bare(seg);
    if (name !== seg && (name === '.' || name === '..')) return REFUSALS['dot-params'];
    if (seg === '..') {
      segs.pop();
      dirEnd = true;
    } else if (seg === '.' || seg === '') {
      dirEnd = true;
    } else {
      if (hidesDots(seg)) return REFUSALS['hidden-dot'];
      segs.push(seg);
      dirEnd = false;
    }
    i = end + 1;
  }
  if (segs.length === 0) return '/';
  return '/' + segs.join('/') + (dirEnd ? '/' : '');
}

/**
 * The path routes are compared with: each segment of a normal path
 * without its `;` parameters, segments left empty by that dropped. The
 * same string when the path has no `;`.
 *
 * @example
 * matchPathOf('/admin;x=1/users') // '/admin/users'
 * matchPathOf('/;x/admin')        // '/admin'
 */
export function matchPathOf(path: string): string {
  if (path.indexOf(';') < 0) return path;
  let out = '';
  const n = path.length;
  let i = 1;
  while (i <= n) {
    let end = path.indexOf('/', i);
    if (end < 0) end = n;
    const seg = bare(path.slice(i, end));
    if (seg !== '') out += '/' + seg;
    else if (end === n) out += '/';
    i = end + 1;
  }
  return out === '' ? '/' : out;
}

/**
 * True when a normal path holds an encoded `/` or `\` (hex is upper case in
 * normal form, so a plain search finds them).
 *
 * @example
 * hasEncodedSlash('/files/a%2Fb') // true
 */
export function hasEncodedSlash(path: string): boolean {
  return path.indexOf('%2F') >= 0 || path.indexOf('%5C') >= 0;
}

/**
 * Splits a request target into its raw path and query. Origin form
 * (`/p?q`) and absolute form (`http://authority/p?q`, whose authority is
 * returned for the caller to compare with Host). Anything else (`*`, an
 * authority alone) yields a path that `normalizePath` refuses.
 *
 * @example
 * splitTarget('/a/b?x=1')                  // { authority: null, path: '/a/b', query: 'x=1' }
 * splitTarget('http://Example.com/a?x=1')  // { authority: 'Example.com', path: '/a', query: 'x=1' }
 */
export function splitTarget(target: string): { authority: string | null; path: string; query: string } {
  let authority: string | null = null;
  let start = 0;
  if (target.charCodeAt(0) !== 47) {
    const m = /^https?:\/\//i.exec(target);
    if (m) {
      start = m[0].length;
      let end = start;
      while (end < target.length && target[end] !== '/' && target[end] !== '?') end++;
      authority = target.slice(start, end);
      start = end;
    }
  }
  const q = target.indexOf('?', start);
  let path = q < 0 ? target.slice(start) : target.slice(start, q);
  if (authority !== null && path === '') path = '/';
  return { authority, path, query: q < 0 ? '' : target.slice(q + 1) };
}
