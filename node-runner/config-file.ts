/**
 * @module config-file
 * Reads a JSON5 config file and validates it with the core schema, then
 * resolves what is relative to the file: plugin `path`, a `command`'s
 * program when it contains a slash, and `cwd` (default: the file's folder).
 * Reading and path resolution are Node's business; validation is the core's.
 */

import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import JSON5 from 'json5';
import { ConfigError, parseConfig, type Config } from '../src/core/config.ts';

/**
 * Loads and validates a config file. Throws `ConfigError` (code
 * `BAD_CONFIG`) listing every problem with its field path, also for a file
 * that cannot be read or is not JSON5.
 *
 * @example
 * const config = await loadConfigFile('hookgate.json5');
 */
export async function loadConfigFile(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  let raw: unknown;
  try {
    raw = JSON5.parse(text);
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON5: ${(err as Error).message}`]);
  }
  return resolvePaths(parseConfig(raw), dirname(resolve(file)));
}

/** Resolves plugin paths and working directories against `baseDir`. */
export function resolvePaths(config: Config, baseDir: string): Config {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  for (const p of Object.values(config.plugins)) {
    if (p.path !== undefined) p.path = at(p.path);
    if (p.command !== undefined && p.command[0].includes('/')) p.command = [at(p.command[0]), ...p.command.slice(1)];
    p.cwd = p.cwd !== undefined ? at(p.cwd) : baseDir;
  }
  return config;
}
