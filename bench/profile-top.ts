/**
 * Summarizes a V8 CPU profile (`node --cpu-prof` writes one as
 * `*.cpuprofile`): self time per function (aggregated by function name +
 * script url, so a function hit through many call paths counts once) and
 * per area (node internals, each package in node_modules, hookgate's
 * src/core and node-runner, GC, native code).
 *
 * Usage: node bench/profile-top.ts <file.cpuprofile> [--top N]
 * `bench/gateway.ts` imports `summarizeProfile` and `formatSummary`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number; scriptId?: string }
interface ProfileNode { id: number; callFrame: CallFrame; hitCount?: number; children?: number[] }
export interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

export interface FunctionTime {
  /** function name, `(anonymous)` for unnamed ones */
  name: string;
  /** the script, shortened (repo-relative, node_modules/..., node:...) */
  url: string;
  /** 1-based line of the biggest contributor, 0 when unknown */
  line: number;
  self_ms: number;
  /** share of the busy time (everything but `(idle)`) */
  self_pct: number;
  /**
   * For native functions (no script: syscalls such as a socket's
   * writeUtf8String, builtins): the nearest callers outside node's own
   * internals, which say whose work it is.
   */
  via?: Array<{ caller: string; self_ms: number }>;
}

export interface ProfileSummary {
  total_ms: number;
  idle_ms: number;
  busy_ms: number;
  samples: number;
  top: FunctionTime[];
  areas: Array<{ area: string; self_ms: number; self_pct: number }>;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function shortUrl(url: string): string {
  let u = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + 1);
  if (u.startsWith(ROOT)) u = u.slice(ROOT.length);
  return u;
}

function areaOf(name: string, url: string): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(idle)') return 'idle';
  if (name === '(program)') return '(program): V8/native outside JS';
  if (!url) return 'native/builtins (no script)';
  if (url.startsWith('node:')) return 'node internals (node:*)';
  const nm = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `node_modules/${nm[1]}`;
  if (url.startsWith('src/core/')) return 'hookgate src/core';
  if (url.startsWith('node-runner/')) return 'hookgate node-runner';
  return url;
}

/** Self time per function and per area of one CPU profile. */
export function summarizeProfile(profile: CpuProfile, topN = 15): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length && deltas.length === samples.length) {
    // timeDeltas[i] is the time between sample i-1 and sample i: the time up
    // to the next sample belongs to sample i (as DevTools counts it).
    for (let i = 0; i < samples.length; i++) {
      const dt = i + 1 < deltas.length ? Math.max(0, deltas[i + 1]) : 0;
      selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + dt);
    }
  } else {
    // No timeline: spread the duration over the hit counts.
    const hits = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
    const per = (profile.endTime - profile.startTime) / hits;
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * per);
  }

  const fns = new Map<string, { name: string; url: string; us: number; lineUs: Map<number, number>; via: Map<string, number> }>();
  const areas = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  /** The nearest frame above `id` with a script that is not node's own (node:*), as "name (url:line)". */
  const callerOf = (id: number): string => {
    let first = '';
    for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
      const cf = byId.get(p)!.callFrame;
      const u = shortUrl(cf.url);
      const label = `${cf.functionName || '(anonymous)'} (${u}:${cf.lineNumber + 1})`;
      if (u && !first) first = label;
      if (u && !u.startsWith('node:')) return label;
    }
    return first || '(no script)';
  };
  for (const [id, us] of selfUs) {
    if (!us) continue;
    const cf = byId.get(id)!.callFrame;
    const name = cf.functionName || '(anonymous)';
    const url = shortUrl(cf.url);
    totalUs += us;
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    const key = `${name}\u0000${url}`;
    let f = fns.get(key);
    if (!f) fns.set(key, (f = { name, url, us: 0, lineUs: new Map(), via: new Map() }));
    f.us += us;
    f.lineUs.set(cf.lineNumber + 1, (f.lineUs.get(cf.lineNumber + 1) ?? 0) + us);
    if (!url && !name.startsWith('(')) {
      const caller = callerOf(id);
      f.via.set(caller, (f.via.get(caller) ?? 0) + us);
    }
    const area = areaOf(name, url);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs || 1;
  const ms = (us: number) => +(us / 1000).toFixed(1);
  const pct = (us: number) => +((100 * us) / busyUs).toFixed(1);
  const top = [...fns.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((f) => {
      const line = f.url ? [...f.lineUs].sort((a, b) => b[1] - a[1])[0][0] : 0;
      const via = [...f.via].sort((a, b) => b[1] - a[1]).slice(0, 3).filter(([, us]) => us >= f.us * 0.05);
      return {
        name: f.name,
        url: f.url,
        line,
        self_ms: ms(f.us),
        self_pct: pct(f.us),
        ...(via.length ? { via: via.map(([caller, us]) => ({ caller, self_ms: ms(us) })) } : {}),
      };
    });
  return {
    total_ms: ms(totalUs),
    idle_ms: ms(idleUs),
    busy_ms: ms(totalUs - idleUs),
    samples: samples.length,
    top,
    areas: [...areas].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, self_ms: ms(us), self_pct: pct(us) })),
  };
}

/** The summary as text: the top functions by self time, then the areas. */
export function formatSummary(s: ProfileSummary, maxAreas = 10): string {
  const out: string[] = [];
  out.push(`profiled ${s.total_ms} ms: busy ${s.busy_ms} ms, idle ${s.idle_ms} ms (${s.samples} samples); % are of the busy time`);
  out.push('');
  out.push(`top ${s.top.length} functions by self time`);
  out.push('   self ms      %  function  (script:line); for native code: via its nearest caller outside node:*');
  for (const f of s.top) {
    const where = f.url ? `${f.url}${f.line ? `:${f.line}` : ''}` : '';
    out.push(`${f.self_ms.toFixed(1).padStart(10)}  ${f.self_pct.toFixed(1).padStart(5)}  ${f.name}${where ? `  (${where})` : ''}`);
    for (const v of f.via ?? []) out.push(`${''.padStart(19)}${v.self_ms.toFixed(1).padStart(8)} ms via ${v.caller}`);
  }
  out.push('');
  out.push('self time by area');
  for (const a of s.areas.slice(0, maxAreas)) out.push(`${a.self_ms.toFixed(1).padStart(10)}  ${a.self_pct.toFixed(1).padStart(5)}  ${a.area}`);
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
  if (positionals.length !== 1) {
    process.stderr.write('usage: node bench/profile-top.ts <file.cpuprofile> [--top N]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(positionals[0], 'utf8')) as CpuProfile;
  process.stdout.write(formatSummary(summarizeProfile(profile, Number(values.top))) + '\n');
}
