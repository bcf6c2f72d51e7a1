/**
 * @module config/problems
 * Config problems as users read them: a valibot issue turned into one line
 * naming the field's path and what was expected, and the lines put in the
 * order the fields stand in the file.
 */

import type * as v from 'valibot';

type PathItem = { key: unknown };

function pathText(path: readonly PathItem[]): string {
  let out = '';
  for (const { key } of path) out += typeof key === 'number' ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out || '(config)';
}

/**
 * A union reports one issue per branch, with paths relative to the union;
 * the branch that got furthest into the input is the one the author meant
 * (the object with a bad field, not the string it also could have been).
 */
function deepest(issue: v.BaseIssue<unknown>, base: readonly PathItem[]): { issue: v.BaseIssue<unknown>; path: PathItem[] } {
  let best = { issue, path: [...base, ...((issue.path ?? []) as PathItem[])] };
  for (const sub of issue.issues ?? []) {
    const d = deepest(sub, best.path);
    if (d.path.length > best.path.length) best = d;
  }
  return best;
}

/** One line for a schema issue: the field's path, then what is wrong. */
export function describe(issue: v.BaseIssue<unknown>): string {
  const d = deepest(issue, []);
  const i = d.issue;
  const msg =
    i.kind === 'schema' && i.expected === 'never'
      ? 'unknown field'
      : i.kind === 'schema' && i.received === 'undefined'
        ? 'required field is missing'
        : i.kind === 'schema' && i.message.startsWith('Invalid ')
          ? `expected ${expectedText(i.expected)}, got ${i.received}`
          : i.message;
  return `${pathText(d.path)}: ${msg}`;
}

/** The validator's name for an expected type, in words ("string" → "a string"). */
function expectedText(expected: string | null): string {
  const words: Record<string, string> = { string: 'a string', number: 'a number', boolean: 'true or false', Object: 'an object', object: 'an object', Array: 'a list', array: 'a list' };
  if (!expected) return 'something else';
  if (Object.hasOwn(words, expected)) return words[expected];
  const parts = expected.split(' | ');
  return parts.length > 1 ? `one of ${parts.map((p) => words[p] ?? p).join(', ')}` : expected;
}

/**
 * Sorts problems in the order their fields appear in `input` (the order of
 * the file), then by their order of discovery; a problem whose path is not
 * in the input keeps its place after the fields before it.
 */
export function inFileOrder(problems: string[], input: Record<string, unknown>): string[] {
  const rank = (problem: string): number[] => {
    const path = problem.slice(0, Math.max(0, problem.indexOf(': ')));
    const out: number[] = [];
    let at: unknown = input;
    for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
      const key = m[1] ?? Number(m[2]);
      if (typeof at !== 'object' || at === null) break;
      const keys = Array.isArray(at) ? null : Object.keys(at);
      const i = keys ? keys.indexOf(String(key)) : Number(key);
      if (i < 0) {
        out.push(Number.MAX_SAFE_INTEGER);
        break;
      }
      out.push(i);
      at = (at as Record<string | number, unknown>)[key];
    }
    return out;
  };
  const ranked = problems.map((p, i) => ({ p, i, r: rank(p) }));
  ranked.sort((a, b) => {
    for (let k = 0; k < Math.min(a.r.length, b.r.length); k++) if (a.r[k] !== b.r[k]) return a.r[k] - b.r[k];
    return a.r.length !== b.r.length ? a.r.length - b.r.length : a.i - b.i;
  });
  return ranked.map((x) => x.p);
}
