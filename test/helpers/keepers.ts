/**
 * @module test/helpers/keepers
 * Finding and cleaning up keeper processes by their state dir (from
 * /proc), for the tests that run `hookgate serve` with a real keeper.
 */

import { readdirSync, readFileSync } from 'node:fs';
import type { Scope } from './scope.ts';

/** Pids of the keepers serving `stateDir` (from their command lines). */
export function keepersOf(stateDir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('keeper.ts')) && argv.includes(stateDir)) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/** Direct children of `pid`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/** Kills, with the scope, every keeper of `stateDir` and the process groups of its plugins. */
export function killKeepersAtEnd(s: Scope, stateDir: string): void {
  s.defer(() => {
    for (const k of keepersOf(stateDir)) {
      for (const c of childrenOf(k)) {
        try {
          process.kill(-c, 'SIGKILL');
        } catch {
          // gone
        }
      }
      try {
        process.kill(-k, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
}
