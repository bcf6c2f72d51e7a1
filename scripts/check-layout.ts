/**
 * `npm run check:layout`: the layout rules of docs/architecture.md that a
 * machine can check, over the TypeScript under `src/` and `node-runner/`:
 * - no file is longer than 500 lines (split it along its responsibilities);
 * - no import cycle among static imports. Type-only imports (`import type`,
 *   `export type`) are left out: they are erased before anything runs.
 *   Dynamic `import()` is left out too: it loads lazily, after both modules
 *   have finished evaluating.
 *
 * Prints every problem and exits 1 when there is one; `layoutProblems` is
 * what `test/layout.test.ts` calls.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAX_LINES = 500;
const ROOTS = ['src', 'node-runner'];

/** Every problem with the layout of the checkout at `root`, one line each; [] when there is none. */
export function layoutProblems(root: string): string[] {
  const files = ROOTS.flatMap((r) => walk(join(root, r))).filter((f) => f.endsWith('.ts'));
  const problems: string[] = [];
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    const name = relative(root, file);
    if (lines > MAX_LINES) problems.push(`${name}: ${lines} lines (at most ${MAX_LINES}); split it along its responsibilities`);
    graph.set(name, runtimeImports(text).map((spec) => relative(root, resolve(dirname(file), spec))).filter((dep) => dep.endsWith('.ts')));
  }
  for (const cycle of cycles(graph)) problems.push(`import cycle: ${[...cycle, cycle[0]].join(' -> ')}`);
  return problems;
}

/** The relative specifiers of a module's static imports and re-exports that are not type-only. */
export function runtimeImports(text: string): string[] {
  const out: string[] = [];
  const stmt = /^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"](\.[^'"]+)['"]|^\s*import\s*['"](\.[^'"]+)['"]/gm;
  for (const m of text.matchAll(stmt)) {
    if (m[5]) {
      out.push(m[5]);
      continue;
    }
    if (m[2]) continue; // import type / export type
    out.push(m[4]);
  }
  return out;
}

/** The strongly connected components with more than one module (or a module importing itself), each in a stable order. */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)!.includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

function walk(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((name) => walk(join(path, name)));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const problems = layoutProblems(fileURLToPath(new URL('..', import.meta.url)));
  for (const p of problems) process.stderr.write(`check:layout: ${p}\n`);
  if (problems.length) process.exit(1);
  process.stdout.write('check:layout: no file over 500 lines, no import cycle\n');
}
