/**
 * @module routing/path-pattern
 * Path patterns (`/health`, `/v1/*`, `/users/:id`, comma-separated
 * alternatives) checked and compiled once into matchers that scan the
 * request's match path in place and return the `:name` captures. The
 * syntax is in `routing.ts`'s module doc; normalising request paths is
 * `path.ts`'s business.
 */

import { HookgateError } from '../errors.ts';
import { splitAlternatives } from './domain-pattern.ts';
import { normalizePath } from './path.ts';

/**
 * What a path pattern matched: the alternative as written, and the `:name` captures.
 *
 * @example
 * const p: PathMatch = { mp: '/users/:id', vars: { id: '42' } };
 */
export interface PathMatch {
  /** the alternative that matched, exactly as written (trimmed) */
  mp: string;
  /** `:name` captures, percent-decoded */
  vars: Record<string, string>;
}

interface Segment {
  /** the literal segment, when `name` is null */
  lit: string;
  /** capture name for a `:name` segment */
  name: string | null;
}

interface PathAlt {
  mp: string;
  /** exact pattern without captures: the whole path to compare with */
  exact: string | null;
  prefix: boolean;
  /** prefix pattern without captures: the path must equal `base` or start with `base/` */
  base: string;
  baseSlash: string;
  /** set only when the alternative captures */
  segs: Segment[] | null;
  names: string[];
  /** scratch capture offsets, as in DomainAlt */
  caps: Int32Array;
}

const CAPTURE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A pattern in the form request paths are compared in (`path.ts`):
 * non-ASCII text percent-encoded as UTF-8; anything else a request path
 * would be normalised from (`//`, dot segments, `%61`, lower-case hex) is a
 * problem, so that what the config says is what matches.
 */
function normalPattern(mp: string, where: string, problems: string[]): string | null {
  // eslint-disable-next-line no-control-regex
  const encoded = mp.replace(/[^\x00-\x7f]+/g, (s) => encodeURI(s));
  if (encoded.includes(';')) {
    problems.push(`${where}: a path pattern holds no ";" (matrix parameters are ignored when paths are matched)`);
    return null;
  }
  const norm = normalizePath(encoded);
  if (typeof norm !== 'string') {
    problems.push(`${where}: ${norm.message.replace(/^bad request: /, '').trim()}`);
    return null;
  }
  if (norm !== encoded) {
    problems.push(`${where}: not in the normal form request paths are compared in; write it as ${JSON.stringify(norm)}`);
    return null;
  }
  return norm;
}

function parsePathAlt(written: string, problems: string[], ci: boolean): PathAlt | null {
  const mp = written;
  const where = JSON.stringify(mp);
  const before = problems.length;
  if (mp === '') {
    problems.push(`${where}: empty alternative (a stray comma?)`);
    return null;
  }
  if (mp[0] !== '/') {
    problems.push(`${where}: must start with "/"`);
    return null;
  }
  if (/[\s?#]/.test(mp)) {
    problems.push(`${where}: a path pattern holds no whitespace, query or fragment`);
    return null;
  }
  const norm = normalPattern(mp, where, problems);
  if (norm === null) return null;
  const raw = (ci ? norm.toLowerCase() : norm).slice(1).split('/');
  let prefix = false;
  if (raw[raw.length - 1] === '*') {
    prefix = true;
    raw.pop();
  }
  const segs: Segment[] = [];
  const names: string[] = [];
  for (const seg of raw) {
    if (seg.includes('*')) {
      problems.push(
        seg === '*'
          ? `${where}: "*" may only be the last segment`
          : `${where}: "*" must be a whole segment at the end, as in "/v1/*" (found "${seg}")`,
      );
      continue;
    }
    if (seg[0] === ':') {
      const name = seg.slice(1);
      if (name === '') problems.push(`${where}: ":" needs a name, as in "/users/:id"`);
      else if (!CAPTURE_NAME.test(name)) problems.push(`${where}: capture name "${name}" may hold only letters, digits and "_", and not start with a digit`);
      else if (name === '__proto__') problems.push(`${where}: "__proto__" cannot be a capture name`);
      else if (names.includes(name)) problems.push(`${where}: capture name "${name}" is used twice`);
      else names.push(name);
      segs.push({ lit: '', name });
    } else {
      segs.push({ lit: seg, name: null });
    }
  }
  if (problems.length > before) return null;
  const literal = names.length === 0;
  // `/*` has no base segment: every path is below the root.
  const base = raw.length === 0 ? '' : '/' + raw.join('/');
  return {
    mp,
    exact: !prefix && literal ? base : null,
    prefix,
    base,
    baseSlash: base + '/',
    segs: literal ? null : segs,
    names,
    caps: new Int32Array(names.length * 2),
  };
}

function matchSegments(alt: PathAlt, segs: Segment[], path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */) return false;
  const caps = alt.caps;
  const len = path.length;
  const n = segs.length;
  let pos = 1;
  let c = 0;
  for (let i = 0; i < n; i++) {
    let end = path.indexOf('/', pos);
    if (end === -1) end = len;
    const seg = segs[i];
    if (seg.name === null) {
      if (end - pos !== seg.lit.length || !path.startsWith(seg.lit, pos)) return false;
    } else {
      if (end === pos) return false;
      caps[c++] = pos;
      caps[c++] = end;
    }
    if (i < n - 1) {
      if (end === len) return false;
      pos = end + 1;
    } else if (end !== len && !alt.prefix) {
      return false;
    }
  }
  return true;
}

function decodeSegment(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * Matches `path` (what is compared: the request's match path, lower-cased
 * for a case-insensitive route); captures are cut from `source`, the same
 * path in its own case (lower-casing a normal, ASCII-only path keeps offsets).
 */
function matchPathAlt(alt: PathAlt, path: string, source: string): PathMatch | null {
  if (alt.exact !== null) return path === alt.exact ? { mp: alt.mp, vars: {} } : null;
  if (alt.segs === null) {
    return path === alt.base || path.startsWith(alt.baseSlash) ? { mp: alt.mp, vars: {} } : null;
  }
  if (!matchSegments(alt, alt.segs, path)) return null;
  const vars: Record<string, string> = {};
  const caps = alt.caps;
  for (let i = 0; i < alt.names.length; i++) vars[alt.names[i]] = decodeSegment(source.slice(caps[i * 2], caps[i * 2 + 1]));
  return { mp: alt.mp, vars };
}

export function pathProblems(pattern: string, ci = false): { alts: PathAlt[]; problems: string[] } {
  const problems: string[] = [];
  const alts: PathAlt[] = [];
  for (const mp of splitAlternatives(pattern)) {
    const alt = parsePathAlt(mp, problems, ci);
    if (alt) alts.push(alt);
  }
  return { alts, problems };
}

export type PathMatcher = (path: string, source: string) => PathMatch | null;

export function compilePathField(pattern: string, field: string, ci = false): PathMatcher {
  const { alts, problems } = pathProblems(pattern, ci);
  if (problems.length) throw new HookgateError('BAD_CONFIG', problems.map((p) => `${field}: ${p}`).join('; '));
  if (alts.length === 1) {
    const alt = alts[0];
    return (path, source) => matchPathAlt(alt, path, source);
  }
  return (path, source) => {
    for (const alt of alts) {
      const m = matchPathAlt(alt, path, source);
      if (m) return m;
    }
    return null;
  };
}

/**
 * Compiles a path pattern into a matcher over a request's match path (the
 * normal path of `path.ts`, without `;` parameters: `matchPathOf`); the
 * first matching alternative wins. With `caseInsensitive`, ASCII letters
 * compare in any case (captures keep the request's). Throws `BAD_CONFIG`
 * naming the bad alternative and what is wrong with it, including a
 * pattern that is not in normal form itself.
 *
 * @example
 * const m = compilePath('/health, /users/:id/*');
 * m('/users/42/posts') // { mp: '/users/:id/*', vars: { id: '42' } }
 * m('/health')         // { mp: '/health', vars: {} }
 * m('/healthz')        // null
 */
export function compilePath(pattern: string, opts: { caseInsensitive?: boolean } = {}): (path: string) => PathMatch | null {
  const ci = opts.caseInsensitive === true;
  const match = compilePathField(pattern, 'path', ci);
  return ci ? (path) => match(path.toLowerCase(), path) : (path) => match(path, path);
}

