/**
 * The layout rules a machine can check (scripts/check-layout.ts): no
 * TypeScript file under src/ or node-runner/ over 500 lines, and no import
 * cycle among runtime imports.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { layoutProblems, runtimeImports } from '../scripts/check-layout.ts';
import { ROOT } from './helpers/paths.ts';

test('no file under src/ or node-runner/ is over 500 lines, and no runtime import cycle', () => {
  assert.deepEqual(layoutProblems(ROOT), []);
});

test('type-only imports do not count as edges; value imports and re-exports do', () => {
  const text = [
    "import type { A } from './a.ts';",
    "import { b, type B } from './b.ts';",
    "export type { C } from './c.ts';",
    "export { d } from './d.ts';",
    "import './e.ts';",
    'import {\n  f,\n  g,\n} from "./f.ts";',
  ].join('\n');
  assert.deepEqual(runtimeImports(text), ['./b.ts', './d.ts', './e.ts', './f.ts']);
});

test('a cycle and a long file are reported, each by name', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookgate-layout-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'src'));
  mkdirSync(join(dir, 'node-runner'));
  writeFileSync(join(dir, 'src/a.ts'), "import { b } from './b.ts';\nexport const a = 1;\n");
  writeFileSync(join(dir, 'src/b.ts'), "import { a } from './a.ts';\nexport const b = a;\n");
  writeFileSync(join(dir, 'node-runner/long.ts'), 'export {};\n'.repeat(501));
  assert.deepEqual(layoutProblems(dir), [
    'node-runner/long.ts: 501 lines (at most 500); split it along its responsibilities',
    'import cycle: src/a.ts -> src/b.ts -> src/a.ts',
  ]);
});
