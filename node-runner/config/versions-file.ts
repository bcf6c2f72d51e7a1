/**
 * @module config/versions-file
 * The config server's versions file: the version counter and each item's
 * version and content hash, so a restarted server never hands out a
 * version it used for other content. Read leniently (a missing or
 * unusable file restarts versions from the clock), written atomically.
 */

import { readFile } from 'node:fs/promises';
import { KINDS, type Kind } from '../../src/core/config/config-doc.ts';
import type { Logger } from '../../src/core/log.ts';
import { writeFileAtomic } from '../atomic-write.ts';

/** What the versions file holds. */
export interface Persisted {
  counter: number;
  items: Record<Kind, Map<string, { version: number; sha256: string }>>;
}

/** The versions the server holds, by kind and id (what `writePersisted` needs of its state). */
type Versions = Record<Kind, Map<string, { version: number; sha256: string }>>;

/** Reads the versions file; `missing` when there was none (or it was unusable and is to be rewritten). */
export async function readPersisted(file: string, log: Logger): Promise<Persisted & { missing: boolean }> {
  const empty = (counter: number, missing: boolean) => ({ counter, missing, items: { routes: new Map(), actions: new Map(), plugins: new Map(), keys: new Map() } }) as Persisted & { missing: boolean };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty(0, true);
    throw err;
  }
  const corrupt = (why: string) => {
    const counter = Date.now();
    log.error({ file, why, counter }, 'the config versions file is unusable; starting versions from the clock so none is reused, and rewriting it');
    return empty(counter, true);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return corrupt(`not JSON: ${(err as Error).message}`);
  }
  const isInt = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!obj(raw) || !isInt(raw.counter) || !obj(raw.items)) return corrupt('expected {"counter": N, "items": {...}}');
  const out = empty(raw.counter, false);
  for (const kind of KINDS) {
    const byId = raw.items[kind] ?? {};
    if (!obj(byId)) return corrupt(`items.${kind}: expected an object`);
    for (const [id, v] of Object.entries(byId)) {
      if (!obj(v) || !isInt(v.version) || typeof v.sha256 !== 'string') return corrupt(`items.${kind}.${id}: expected {"version": N, "sha256": "..."}`);
      out.items[kind].set(id, { version: v.version, sha256: v.sha256 });
      out.counter = Math.max(out.counter, v.version);
    }
  }
  return out;
}

/** Writes the versions file atomically (temp file, fsync, rename, fsync the folder). */
export async function writePersisted(file: string, counter: number, state: Versions): Promise<void> {
  const items = {} as Record<Kind, Record<string, { version: number; sha256: string }>>;
  for (const kind of KINDS) items[kind] = Object.fromEntries([...state[kind]].map(([id, h]) => [id, { version: h.version, sha256: h.sha256 }]));
  await writeFileAtomic(file, `${JSON.stringify({ counter, items }, null, 2)}\n`, 0o644);
}
