/**
 * @module version
 * This package's version, from its package.json (one folder up from the
 * checkout's node-runner/, two from the compiled lib/node-runner/).
 */

import { readFileSync } from 'node:fs';

export function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'hookgate') return pkg.version ?? 'unknown';
    } catch {
      // not this one
    }
  }
  return 'unknown';
}
