/**
 * @module routing
 * Route matching: domain and path patterns compiled once into matchers, and
 * the Router that picks the first route matching a request's method, host
 * and path. It also reports what matched (`md`, `mg`, `mp` and the path's
 * captured variables), because plugins receive exactly those fields in
 * RequestInfo (docs/protocol.md §1.6).
 *
 * Pattern syntax, in short:
 *
 * * domain: comma-separated alternatives of dot-separated labels. `*` is one
 *   whole label, `cdn-*` / `*-prod` one label with that prefix or suffix,
 *   `**` as the first (or last) label one or more leading (or trailing)
 *   labels. Case-insensitive; a port in the host is ignored.
 * * path: comma-separated alternatives, each exact (`/health`), a prefix
 *   (`/v1/*`: `/v1`, `/v1/` and everything below `/v1/`), with `:name`
 *   segments capturing one non-empty segment. Compared with the request's
 *   normal path without `;` parameters (`path.ts`), case-sensitively unless
 *   the route says `case_insensitive`; captured values are percent-decoded.
 *   Patterns must themselves be in normal form.
 *
 * The hot path (`Router.match` and the compiled matchers) builds no regular
 * expressions and splits no strings: it scans the host and path in place and
 * allocates only the result of a successful match.
 *
 * Validating the rest of a route and merging the route's `set` variables with
 * the path's captures are left to `config.ts` and the gateway.
 */

import type { Route } from '../config/config.ts';
import { HookgateError } from '../errors.ts';
import { normalizePath } from './path.ts';

/**
 * What a domain pattern matched: the alternative as written, and the wildcards' text.
 *
 * @example
 * const d: DomainMatch = { md: 'cdn-*.example.com', mg: 'eu' };
 */
export interface DomainMatch {
  /** the alternative that matched, exactly as written (trimmed) */
  md: string;
  /** the text the wildcards matched, joined with "." in pattern order; "" for exact patterns */
  mg: string;
}

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

/**
 * A request matched to a route; `md`, `mg`, `mp` and `vars` feed RequestInfo's fields of the same names.
 *
 * @example
 * const m = router.match('GET', host, path);
 * if (m) info = { ...info, r: m.route.id, md: m.md, mg: m.mg, mp: m.mp, v: { ...m.route.set, ...m.vars } };
 */
export interface RouteMatch {
  route: Route;
  /** matched domain alternative ("" when the route matches any host) */
  md: string;
  /** text matched by the domain's wildcards */
  mg: string;
  /** matched path alternative ("" when the route matches any path) */
  mp: string;
  /** the path's `:name` captures only; merging the route's `set` is the gateway's business */
  vars: Record<string, string>;
}

/**
 * A route's `match` block, as the config holds it.
 *
 * @example
 * const spec: MatchSpec = { domain: '*.example.com', path: '/v1/*', methods: ['GET'] };
 */
export interface MatchSpec {
  domain?: string;
  path?: string;
  methods?: string[];
  case_insensitive?: boolean;
  allow_encoded_slash?: boolean;
}

// ---------------------------------------------------------------------------
// host

/**
 * The host of a Host header: port removed, lower-cased. A bracketed IPv6
 * literal keeps its brackets; a trailing dot is dropped because
 * `example.com.` names the same host as `example.com`, and a route for one
 * must not be bypassed by sending the other.
 *
 * @example
 * hostOf('API.Example.com:8443') // 'api.example.com'
 * hostOf('[::1]:8080')           // '[::1]'
 */
export function hostOf(hostHeader: string): string {
  let h = hostHeader;
  if (h.charCodeAt(0) === 91 /* [ */) {
    const close = h.indexOf(']');
    if (close !== -1) h = h.slice(0, close + 1);
  } else {
    const colon = h.indexOf(':');
    // A bare IPv6 address has several colons and no port we could tell apart.
    if (colon !== -1 && h.indexOf(':', colon + 1) === -1) h = h.slice(0, colon);
    if (h.charCodeAt(h.length - 1) === 46 /* . */) h = h.slice(0, -1);
  }
  return h.toLowerCase();
}

const HOST_HEADER = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?$/;

/**
 * Why the Host headers of a request cannot be routed by, as the line of a
 * 400 body; '' when there is exactly one and it is a host name, an IPv4
 * address or a bracketed IPv6 address, with an optional port. More than one
 * Host, or one holding a list (`a.example.com,b.example.com`), userinfo or
 * anything else, would let the route and the upstream read different hosts.
 * The data plane passes every Host header it received (Node: from
 * `rawHeaders`, where duplicates are still visible).
 *
 * @example
 * hostProblem(['api.example.com:8443']) // ''
 * hostProblem(['a.example.com', 'b.example.com']) // 'bad request: more than one Host header\n'
 */
export function hostProblem(hosts: readonly string[]): string {
  if (hosts.length > 1) return 'bad request: more than one Host header\n';
  const h = hosts.length ? hosts[0] : '';
  if (h === '') return 'bad request: missing Host header\n';
  const m = HOST_HEADER.exec(h);
  if (!m || (m[1] !== undefined && Number(m[1]) > 65535)) return 'bad request: the Host header is not a host name with an optional port\n';
  return '';
}

/** True when `host` is not already what hostOf would return. */
function needsHostOf(host: string): boolean {
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if ((c >= 65 && c <= 90) || c === 58 /* : */) return true;
  }
  return host.charCodeAt(host.length - 1) === 46;
}

// ---------------------------------------------------------------------------
// domain patterns

const LABEL_EXACT = 0;
const LABEL_ANY = 1;
const LABEL_AFFIX = 2;

interface LabelMatcher {
  kind: 0 | 1 | 2;
  /** LABEL_EXACT: the label; LABEL_AFFIX: the text before `*` */
  pre: string;
  /** LABEL_AFFIX: the text after `*` */
  suf: string;
  /** slot of this label's capture in the alternative's capture list, -1 for none */
  slot: number;
}

interface DomainAlt {
  md: string;
  /** set when the alternative has no wildcard: the whole host to compare with */
  full: string | null;
  lead: boolean;
  trail: boolean;
  labels: LabelMatcher[];
  /** capture count; captures are recorded as [start, end) pairs in `caps` */
  ncap: number;
  /**
   * Scratch space for capture offsets, reused by every match: matching is
   * synchronous, so no two matches of one alternative can interleave.
   */
  caps: Int32Array;
}

const LABEL_CHARS = /^[a-z0-9_*-]+$/;
const IPV6_LITERAL = /^\[[0-9a-f:.]+\]$/;

function splitAlternatives(pattern: string): string[] {
  return pattern.split(',').map((a) => a.trim());
}

/** Problems of one domain alternative; compiles it when there are none. */
function parseDomainAlt(md: string, problems: string[]): DomainAlt | null {
  const where = JSON.stringify(md);
  if (md === '') {
    problems.push(`${where}: empty alternative (a stray comma?)`);
    return null;
  }
  const lower = md.toLowerCase();
  if (IPV6_LITERAL.test(lower)) {
    return { md, full: lower, lead: false, trail: false, labels: [], ncap: 0, caps: new Int32Array(0) };
  }
  if (lower.includes(':')) {
    problems.push(`${where}: a domain pattern has no port (the request's port is ignored)`);
    return null;
  }
  const raw = lower.split('.');
  const before = problems.length;
  let lead = false;
  let trail = false;
  const labels: LabelMatcher[] = [];
  let ncap = 0;
  for (let i = 0; i < raw.length; i++) {
    const label = raw[i];
    if (label === '') {
      problems.push(`${where}: empty label`);
      return null;
    }
    if (!LABEL_CHARS.test(label)) {
      problems.push(`${where}: label "${label}" may hold only letters, digits, "-", "_" and "*" (use the xn-- form of international names)`);
      continue;
    }
    if (label === '**') {
      if (raw.length === 1) {
        lead = true;
      } else if (i === 0) {
        lead = true;
      } else if (i === raw.length - 1) {
        if (lead) problems.push(`${where}: "**" may be the first or the last label, not both`);
        trail = true;
      } else {
        problems.push(`${where}: "**" may only be the first or the last label`);
      }
      continue;
    }
    const star = label.indexOf('*');
    if (star === -1) {
      labels.push({ kind: LABEL_EXACT, pre: label, suf: '', slot: -1 });
    } else if (label.indexOf('*', star + 1) !== -1) {
      problems.push(`${where}: label "${label}" has more than one "*" ("**" must be a whole label)`);
    } else if (label === '*') {
      labels.push({ kind: LABEL_ANY, pre: '', suf: '', slot: -1 });
    } else {
      labels.push({ kind: LABEL_AFFIX, pre: label.slice(0, star), suf: label.slice(star + 1), slot: -1 });
    }
  }
  if (problems.length > before) return null;
  // Capture slots follow the pattern's reading order: leading `**`, labels, trailing `**`.
  if (lead) ncap++;
  for (const l of labels) if (l.kind !== LABEL_EXACT) l.slot = ncap++;
  if (trail) ncap++;
  const full = !lead && !trail && ncap === 0 ? lower : null;
  return { md, full, lead, trail, labels, ncap, caps: new Int32Array(ncap * 2) };
}

function domainProblems(pattern: string): { alts: DomainAlt[]; problems: string[] } {
  const problems: string[] = [];
  const alts: DomainAlt[] = [];
  for (const md of splitAlternatives(pattern)) {
    const alt = parseDomainAlt(md, problems);
    if (alt) alts.push(alt);
  }
  return { alts, problems };
}

/** `host[s, e)` matches the label matcher; records its capture. */
function labelMatches(host: string, s: number, e: number, m: LabelMatcher, caps: Int32Array): boolean {
  const len = e - s;
  if (m.kind === LABEL_EXACT) return len === m.pre.length && host.startsWith(m.pre, s);
  if (m.kind === LABEL_ANY) {
    if (len === 0) return false;
    caps[m.slot * 2] = s;
    caps[m.slot * 2 + 1] = e;
    return true;
  }
  if (len <= m.pre.length + m.suf.length || !host.startsWith(m.pre, s) || !host.startsWith(m.suf, e - m.suf.length)) {
    return false;
  }
  caps[m.slot * 2] = s + m.pre.length;
  caps[m.slot * 2 + 1] = e - m.suf.length;
  return true;
}

/** `host[s, e)` is one or more non-empty labels. */
function areLabels(host: string, s: number, e: number): boolean {
  if (e <= s || host.charCodeAt(s) === 46 || host.charCodeAt(e - 1) === 46) return false;
  for (let i = s + 1; i < e; i++) if (host.charCodeAt(i) === 46 && host.charCodeAt(i - 1) === 46) return false;
  return true;
}

function matchDomainAlt(alt: DomainAlt, host: string): boolean {
  if (alt.full !== null) return host === alt.full;
  const { labels, caps } = alt;
  const n = labels.length;
  const len = host.length;
  if (alt.lead) {
    // Fixed labels sit at the end of the host: walk right to left.
    let end = len;
    for (let i = n - 1; i >= 0; i--) {
      if (end === 0) return false;
      const dot = host.lastIndexOf('.', end - 1);
      if (dot === -1) return false; // `**` needs at least one label before
      if (!labelMatches(host, dot + 1, end, labels[i], caps)) return false;
      end = dot;
    }
    if (!areLabels(host, 0, end)) return false;
    caps[0] = 0;
    caps[1] = end;
    return true;
  }
  let pos = 0;
  for (let i = 0; i < n; i++) {
    let end = host.indexOf('.', pos);
    const last = i === n - 1;
    if (end === -1) {
      if (!last || alt.trail) return false;
      end = len;
    } else if (last && !alt.trail) {
      return false;
    }
    if (!labelMatches(host, pos, end, labels[i], caps)) return false;
    pos = end + 1;
  }
  if (alt.trail) {
    if (!areLabels(host, pos, len)) return false;
    caps[(alt.ncap - 1) * 2] = pos;
    caps[(alt.ncap - 1) * 2 + 1] = len;
  }
  return true;
}

function globText(alt: DomainAlt, host: string): string {
  if (alt.ncap === 0) return '';
  const caps = alt.caps;
  let out = host.slice(caps[0], caps[1]);
  for (let i = 1; i < alt.ncap; i++) out += '.' + host.slice(caps[i * 2], caps[i * 2 + 1]);
  return out;
}

type DomainMatcher = (host: string) => DomainMatch | null;

/** Compiles a domain pattern for hosts that are already what hostOf returns. */
function compileDomainNormalized(pattern: string, field: string): DomainMatcher {
  const { alts, problems } = domainProblems(pattern);
  if (problems.length) throw new HookgateError('BAD_CONFIG', problems.map((p) => `${field}: ${p}`).join('; '));
  if (alts.length === 1) {
    const alt = alts[0];
    return (host) => (matchDomainAlt(alt, host) ? { md: alt.md, mg: globText(alt, host) } : null);
  }
  return (host) => {
    for (const alt of alts) if (matchDomainAlt(alt, host)) return { md: alt.md, mg: globText(alt, host) };
    return null;
  };
}

/**
 * Compiles a domain pattern into a matcher. The matcher accepts a host with
 * or without port and in any case; the first matching alternative wins.
 * Throws `BAD_CONFIG` naming the bad alternative and what is wrong with it.
 * An empty pattern is refused: a route that matches any host leaves `domain`
 * out, and the Router handles that.
 *
 * @example
 * const m = compileDomain('*.example.com, **.example.org');
 * m('api.example.com') // { md: '*.example.com', mg: 'api' }
 * m('a.b.example.org') // { md: '**.example.org', mg: 'a.b' }
 * m('example.com')     // null
 */
export function compileDomain(pattern: string): (host: string) => DomainMatch | null {
  const match = compileDomainNormalized(pattern, 'domain');
  return (host) => match(needsHostOf(host) ? hostOf(host) : host);
}

// ---------------------------------------------------------------------------
// path patterns

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

function pathProblems(pattern: string, ci = false): { alts: PathAlt[]; problems: string[] } {
  const problems: string[] = [];
  const alts: PathAlt[] = [];
  for (const mp of splitAlternatives(pattern)) {
    const alt = parsePathAlt(mp, problems, ci);
    if (alt) alts.push(alt);
  }
  return { alts, problems };
}

type PathMatcher = (path: string, source: string) => PathMatch | null;

function compilePathField(pattern: string, field: string, ci = false): PathMatcher {
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

// ---------------------------------------------------------------------------
// validation

const METHOD = /^[A-Za-z]+$/;

function isBlank(s: string | undefined): boolean {
  return s === undefined || s.trim() === '';
}

/**
 * Every problem of a route's `match` block, each starting with the field it
 * is about; `[]` when the block is fine. Config validation prefixes them with
 * the route's path (`routes[2].match.`). An empty or blank `domain` or `path`
 * is fine: it matches anything.
 *
 * @example
 * matchProblems({ domain: 'a..b', path: 'v1/*' })
 * // ['domain: "a..b": empty label', 'path: "v1/*": must start with "/"']
 */
export function matchProblems(match: MatchSpec): string[] {
  const out: string[] = [];
  if (match.domain !== undefined && !isBlank(match.domain)) {
    for (const p of domainProblems(match.domain).problems) out.push(`domain: ${p}`);
  }
  if (match.path !== undefined && !isBlank(match.path)) {
    for (const p of pathProblems(match.path).problems) out.push(`path: ${p}`);
  }
  if (match.methods !== undefined) {
    match.methods.forEach((m, i) => {
      if (typeof m !== 'string' || !METHOD.test(m)) out.push(`methods[${i}]: ${JSON.stringify(m)} is not an HTTP method`);
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// router

interface CompiledRoute {
  route: Route;
  domain: DomainMatcher | null;
  path: PathMatcher | null;
  /** `match.case_insensitive`: the path is compared lower-cased */
  ci: boolean;
  /** upper-case; null when any method matches */
  methods: string[] | null;
}

/**
 * Matches requests to routes: the first route, in config order, whose
 * methods, domain and path all match. A route without a `match` block (or
 * with an empty one, or an empty `methods` list) matches everything in the
 * fields it leaves out.
 *
 * Built once per config; `match` is synchronous, keeps no per-request state
 * and may be called by any number of requests in flight. A new config means
 * a new Router.
 *
 * @example
 * const router = new Router(config.routes);
 * const m = router.match('GET', 'api.example.com:443', '/users/42');
 * if (!m) return new Response('not found', { status: 404 });
 * m.route.id; m.vars.id; // e.g. 'users', '42'
 */
export class Router {
  readonly routes: Route[];
  readonly #compiled: CompiledRoute[];
  readonly #anyDomain: boolean;

  /**
   * Compiles every route's patterns. Throws `BAD_CONFIG` listing every bad
   * pattern, each named by its field (`routes[3].match.domain: ...`).
   */
  constructor(routes: Route[]) {
    this.routes = routes;
    const problems: string[] = [];
    this.#compiled = routes.map((route, i) => {
      const at = `routes[${typeof route.index === 'number' ? route.index : i}].match`;
      const match: MatchSpec = route.match ?? {};
      const ci = match.case_insensitive === true;
      const compiled: CompiledRoute = { route, domain: null, path: null, ci, methods: null };
      if (match.domain !== undefined && !isBlank(match.domain)) {
        try {
          compiled.domain = compileDomainNormalized(match.domain, `${at}.domain`);
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      if (match.path !== undefined && !isBlank(match.path)) {
        try {
          compiled.path = compilePathField(match.path, `${at}.path`, ci);
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      if (match.methods !== undefined && match.methods.length > 0) {
        compiled.methods = match.methods.map((m) => m.toUpperCase());
      }
      return compiled;
    });
    if (problems.length === 1) throw new HookgateError('BAD_CONFIG', problems[0]);
    if (problems.length > 1) throw new HookgateError('BAD_CONFIG', `invalid route matches:\n  ${problems.join('\n  ')}`);
    this.#anyDomain = this.#compiled.some((c) => c.domain !== null);
  }

  /**
   * The first route matching the request, with what matched; null when no
   * route does (the gateway answers 404). `host` is the raw Host header;
   * `path` is the request's match path (`matchPathOf(normalizePath(raw))`).
   *
   * @example
   * router.match('post', 'Example.COM', '/v1/items') // methods are compared upper-case
   */
  match(method: string, host: string, path: string): RouteMatch | null {
    const h = this.#anyDomain ? hostOf(host) : host;
    let upper: string | null = null;
    let lower: string | null = null;
    for (const c of this.#compiled) {
      if (c.methods !== null) {
        upper ??= method.toUpperCase();
        if (!c.methods.includes(upper)) continue;
      }
      let md = '';
      let mg = '';
      if (c.domain !== null) {
        const d = c.domain(h);
        if (d === null) continue;
        md = d.md;
        mg = d.mg;
      }
      if (c.path === null) return { route: c.route, md, mg, mp: '', vars: {} };
      const p = c.ci ? c.path((lower ??= path.toLowerCase()), path) : c.path(path, path);
      if (p !== null) return { route: c.route, md, mg, mp: p.mp, vars: p.vars };
    }
    return null;
  }
}
