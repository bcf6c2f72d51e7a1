/**
 * @module bench/cpu
 * CPU time of process trees, read from /proc (Linux), for the benchmarks'
 * "CPU per request": a proxy that wins on req/s by burning more cores shows
 * up here.
 *
 * A setup's CPU is the user+system time of every process in the trees under
 * its root pids (found by walking the ppid links of /proc/<pid>/stat, so
 * detached children in their own process groups, such as hookgate's keeper
 * and its plugins, are included). Each process counts
 * utime+stime+cutime+cstime: a child that exits and is reaped during a run
 * moves its time into its parent's cutime/cstime, so the difference of two
 * samples stays right. (A child's time reaches cutime only once it is
 * reaped, which is why the live children are walked rather than read from
 * the root's cutime alone.)
 *
 * What this module leaves to its callers: which pids make a setup, and
 * when to sample (right before and right after a measured run).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's times (`getconf CLK_TCK`, 100 on Linux). */
export const CLK_TCK: number = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

interface Stat {
  ppid: number;
  /** utime + stime + cutime + cstime, in ticks */
  ticks: number;
}

/** Fields 4 (ppid) and 14..17 (utime, stime, cutime, cstime) of /proc/<pid>/stat; undefined when the process is gone. */
function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state), so field n is f[n - 3].
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
}

/** Every live process: pid -> its stat. */
function allStats(): Map<number, Stat> {
  const out = new Map<number, Stat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) out.set(Number(name), s);
  }
  return out;
}

/**
 * The pids of `roots` and all their live descendants.
 *
 * @example
 * processTree([nginx.child.pid!]) // [master, worker]
 */
export function processTree(roots: number[]): number[] {
  return [...tree(roots, allStats()).keys()];
}

function tree(roots: number[], stats: Map<number, Stat>): Map<number, Stat> {
  const children = new Map<number, number[]>();
  for (const [pid, s] of stats) {
    const list = children.get(s.ppid);
    if (list) list.push(pid);
    else children.set(s.ppid, [pid]);
  }
  const out = new Map<number, Stat>();
  const todo = roots.filter((p) => stats.has(p));
  while (todo.length) {
    const pid = todo.pop()!;
    if (out.has(pid)) continue;
    out.set(pid, stats.get(pid)!);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/**
 * CPU seconds (user+system) used so far by each group of process trees,
 * in one pass over /proc. Subtract two samples to get a run's CPU.
 *
 * @example
 * const before = cpuSeconds({ nginx: [master], hookgate: [serve] });
 * // ... load ...
 * const after = cpuSeconds({ nginx: [master], hookgate: [serve] });
 * after.nginx - before.nginx // CPU seconds nginx spent during the load
 */
export function cpuSeconds<K extends string>(groups: Record<K, number[]>): Record<K, number> {
  const stats = allStats();
  const out = {} as Record<K, number>;
  for (const key of Object.keys(groups) as K[]) {
    let ticks = 0;
    for (const s of tree(groups[key], stats).values()) ticks += s.ticks;
    out[key] = ticks / CLK_TCK;
  }
  return out;
}

/**
 * CPU seconds used so far by the process trees under `roots`, summed by
 * role: `roleOf` names each live process from its command line (the
 * split of a setup's CPU per request: gateway, plugin, keeper...).
 *
 * @example
 * cpuSecondsByRole([serve], (cmd) => (cmd.includes('plugins/') ? 'plugin' : 'gateway')) // { gateway: 12.3, plugin: 4.1 }
 */
export function cpuSecondsByRole(roots: number[], roleOf: (cmdline: string) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [pid, s] of tree(roots, allStats())) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    const role = roleOf(cmd);
    out[role] = (out[role] ?? 0) + s.ticks / CLK_TCK;
  }
  return out;
}

/**
 * Busy and total CPU seconds of the whole machine so far (/proc/stat, all
 * cores; busy = everything but idle and iowait). The difference of two
 * samples says how much of the machine a run had, and how much went to
 * other work.
 */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: (total - v[3] - v[4]) / CLK_TCK, total: total / CLK_TCK };
}
