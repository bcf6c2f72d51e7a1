/**
 * @module routing/domain-pattern
 * Domain patterns (`*.example.com`, `cdn-*.example.com`, `**.example.org`,
 * comma-separated alternatives) checked and compiled once into matchers
 * that scan the host in place. The syntax is in `routing.ts`'s module doc;
 * choosing a route is the Router's business.
 */

import { HookgateError } from '../errors.ts';
import { hostOf, needsHostOf } from './host.ts';

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

export function splitAlternatives(pattern: string): string[] {
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

export function domainProblems(pattern: string): { alts: DomainAlt[]; problems: string[] } {
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

export type DomainMatcher = (host: string) => DomainMatch | null;

/** Compiles a domain pattern for hosts that are already what hostOf returns. */
export function compileDomainNormalized(pattern: string, field: string): DomainMatcher {
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

