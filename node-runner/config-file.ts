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
  return resolvePaths(parseConfig(await readConfigInput(file)), dirname(resolve(file)));
}

/**
 * Reads a JSON5 config file into its raw input, not yet validated. Throws
 * `ConfigError` for a file that cannot be read or is not JSON5.
 */
export async function readConfigInput(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  try {
    return JSON5.parse(text);
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON5: ${(err as Error).message}`]);
  }
}

/** Resolves plugin paths and working directories against `baseDir`. */
export function resolvePaths(config: Config, baseDir: string): Config {
  resolvePluginPaths(config.plugins, baseDir);
  return config;
}

/**
 * Makes each plugin's `path`, `command[0]` (when it has a slash) and `cwd`
 * absolute against `baseDir`, in place; a missing `cwd` becomes `baseDir`.
 * Works on validated plugins and on raw (validated) input alike.
 */
export function resolvePluginPaths(plugins: Record<string, { path?: unknown; command?: unknown; cwd?: unknown }>, baseDir: string): void {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  for (const p of Object.values(plugins)) {
    if (typeof p.path === 'string') p.path = at(p.path);
    if (Array.isArray(p.command) && typeof p.command[0] === 'string' && p.command[0].includes('/')) p.command = [at(p.command[0]), ...p.command.slice(1)];
    p.cwd = typeof p.cwd === 'string' ? at(p.cwd) : baseDir;
  }
}
