/**
 * @module config-file
 * Reads a JSON5 config file and validates it with the core schema, then
 * resolves what is relative to the file: plugin `path`, a `command`'s
 * program when it contains a slash, and `cwd` (default: the file's folder).
 * Before validation, `plugins_dir` is expanded (`discoverPlugins`): every
 * executable in it matching `plugins_glob` becomes a plugin named after its
 * file, so routes can bind it like one written in `plugins`.
 * Reading, discovery and path resolution are Node's business; validation
 * is the core's.
 */

import { constants } from 'node:fs';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, matchesGlob, parse, resolve } from 'node:path';
import JSON5 from 'json5';
import { resolveTlsPaths } from '../gateway/cert-store.ts';
import { ConfigError, parseConfig, type Config } from '../../src/core/config/config.ts';
import { edgeWarnings } from '../../src/core/config/config-actions.ts';
import { resolveServePaths, serveProblems } from '../gateway/serve-paths.ts';
import { sha256File } from '../plugin/spawn-env.ts';

/**
 * Loads and validates a config file, `plugins_dir` discovered afresh on
 * every call (so a reload picks up new executables). Throws `ConfigError`
 * (code `BAD_CONFIG`) listing every problem with its field path, also for
 * a file that cannot be read or is not JSON5, and for discovery problems.
 * Discovery warnings (a matching file that is not executable) do not fail
 * the load: each is passed to `onWarning` (dropped without one).
 *
 * @example
 * const config = await loadConfigFile('hookgate.json5', (w) => log.warn(w));
 */
export async function loadConfigFile(file: string, onWarning?: (warning: string) => void): Promise<Config> {
  const raw = await readConfigInput(file);
  const baseDir = dirname(resolve(file));
  const config = resolvePaths(await parseWithDiscovery(raw, baseDir, onWarning), baseDir);
  const problems = [...(await programProblems(config.plugins)), ...(await serveProblems(config))];
  if (problems.length) throw new ConfigError(problems);
  // runner.listen serves edge workers, which route by this config too.
  if (config.runner.listen !== undefined) for (const w of edgeWarnings(config)) onWarning?.(w);
  return config;
}

/**
 * What stops each plugin's program from starting on this machine, in
 * plugin order: a `path` (or a `command[0]` with a slash) that is missing,
 * not a regular file or not executable; a `command[0]` not found on the
 * PATH the plugin gets (its `env.PATH`, else the runner's); a file whose
 * sha256 is not the pinned one. Attached plugins are not started, so not
 * checked. Only for configs whose paths are this machine's (`validate`,
 * `serve`): a config server's or a stream's plugins run elsewhere.
 *
 * @example
 * await programProblems({ a: { path: '/nope' } }) // ['plugins.a.path: "/nope" does not exist']
 */
export async function programProblems(plugins: Record<string, { path?: string; command?: string[]; env?: Record<string, string>; sha256?: string }>): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, p] of Object.entries(plugins)) {
    let field: string;
    let file: string | null;
    if (typeof p.path === 'string') {
      field = `plugins.${name}.path`;
      file = p.path;
    } else if (Array.isArray(p.command) && typeof p.command[0] === 'string') {
      field = `plugins.${name}.command[0]`;
      const program = p.command[0];
      file = program.includes('/') ? program : await onPath(program, p.env?.PATH ?? process.env.PATH ?? '');
      if (file === null) {
        problems.push(`${field}: "${program}" is not a program on the PATH (${p.env?.PATH !== undefined ? "the plugin's env.PATH" : "the runner's PATH"}); check the spelling, or give its full path`);
        continue;
      }
    } else continue;
    const why = await notExecutable(file);
    if (why) {
      problems.push(`${field}: "${file}" ${why.startsWith('cannot be read (ENOENT)') ? 'does not exist' : why}`);
      continue;
    }
    if (p.sha256) {
      const actual = await sha256File(file);
      if (actual !== p.sha256) problems.push(`plugins.${name}.sha256: ${file} has sha256 ${actual}, not the pinned ${p.sha256} (the file changed, or the pin is wrong)`);
    }
  }
  return problems;
}

/** The first executable regular file named `program` in the folders of `pathVar`, or null. */
async function onPath(program: string, pathVar: string): Promise<string | null> {
  for (const dir of pathVar.split(':')) {
    if (!dir) continue;
    const candidate = join(dir, program);
    if (!(await notExecutable(candidate))) return candidate;
  }
  return null;
}

/**
 * Expands `plugins_dir` in `raw` (in place, see `discoverPlugins`) and
 * validates the result with `parseConfig`. Throws one `ConfigError` with
 * the discovery problems and the schema's together; warnings go to
 * `onWarning`. `raw` keeps its input form (paths not yet resolved), which
 * is what the config server streams.
 *
 * @example
 * const raw = await readConfigInput(file);
 * const config = await parseWithDiscovery(raw, dirname(file), (w) => log.warn(w));
 */
export async function parseWithDiscovery(raw: unknown, baseDir: string, onWarning?: (warning: string) => void): Promise<Config> {
  const found = await discoverPlugins(raw, baseDir);
  for (const w of found.warnings) onWarning?.(w);
  let problems = found.problems;
  let config: Config | undefined;
  try {
    config = parseConfig(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = [...problems, ...err.problems];
  }
  if (problems.length || !config) throw new ConfigError(problems);
  return config;
}

/** What `discoverPlugins` found wrong: `problems` fail the config, `warnings` do not. */
export interface Discovery {
  /** the names registered, in file-name order */
  added: string[];
  problems: string[];
  warnings: string[];
}

const PLUGIN_NAME = /^[A-Za-z0-9._-]+$/;

/**
 * Plugin discovery, as go-plugin's `Discover`: lists `plugins_dir`
 * (resolved against `baseDir`; not recursive) and, for each entry whose
 * name matches `plugins_glob` (default `"*"`, `path.matchesGlob` syntax;
 * names starting with "." only match a glob that starts with "."), adds
 * `plugins[<file name without its extension>] = { path: <absolute> }` to
 * the raw config input, in place.
 *
 * - An entry already in `plugins` wins: files giving its name are skipped,
 *   silently.
 * - A matching file that is not executable (or not a regular file) is a
 *   warning: it is not registered, and nothing fails.
 * - Two executables giving the same name, a name that is not a valid
 *   plugin name, and a `plugins_dir` that cannot be listed are problems
 *   (each starting with `plugins_dir:`); such names are not registered.
 * - Input that is not what the schema expects (`plugins_dir` not a string,
 *   `plugins` not an object) is left alone for `parseConfig` to report.
 *
 * Reads the file system on every call and keeps nothing; safe to call
 * concurrently on different inputs.
 *
 * @example
 * const raw = { plugins_dir: './plugins', plugins_glob: '*.py', routes: [...] };
 * const { warnings, problems } = await discoverPlugins(raw, '/etc/hookgate');
 * // raw.plugins.auth = { path: '/etc/hookgate/plugins/auth.py' }
 */
export async function discoverPlugins(raw: unknown, baseDir: string): Promise<Discovery> {
  const out: Discovery = { added: [], problems: [], warnings: [] };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return out;
  const input = raw as Record<string, unknown>;
  const { plugins_dir: dirOption, plugins_glob: globOption } = input;
  if (dirOption === undefined) {
    if (typeof globOption === 'string') out.warnings.push('plugins_glob is set but plugins_dir is not; no plugins are discovered');
    return out;
  }
  if (typeof dirOption !== 'string' || dirOption === '') return out;
  if (globOption !== undefined && (typeof globOption !== 'string' || globOption === '')) return out;
  const glob = globOption ?? '*';
  if (glob.includes('/')) {
    out.problems.push(`plugins_glob: "${glob}" contains "/"; expected a file-name pattern such as "*" or "*.py" (plugins_dir is not searched recursively)`);
    return out;
  }
  if (input.plugins !== undefined && (typeof input.plugins !== 'object' || input.plugins === null || Array.isArray(input.plugins))) return out;
  const plugins = (input.plugins ??= {}) as Record<string, unknown>;

  const dir = isAbsolute(dirOption) ? dirOption : resolve(baseDir, dirOption);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => matchesGlob(n, glob)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : `cannot be read (${code})`;
    out.problems.push(`plugins_dir: "${dirOption}" (${dir}) ${why}`);
    return out;
  }

  const byName = new Map<string, string[]>();
  for (const file of names) {
    const name = parse(file).name;
    if (Object.hasOwn(plugins, name)) continue;
    const path = join(dir, file);
    const why = await notExecutable(path);
    if (why) {
      out.warnings.push(`plugins_dir: "${file}" matches plugins_glob but ${why}; it is not registered as a plugin`);
      continue;
    }
    byName.set(name, [...(byName.get(name) ?? []), file]);
  }
  for (const [name, files] of byName) {
    if (files.length > 1) {
      const list = files.map((f) => `"${f}"`);
      out.problems.push(`plugins_dir: ${list.slice(0, -1).join(', ')} and ${list.at(-1)} both give the plugin name "${name}"; rename one, or name the plugin in plugins`);
    } else if (!PLUGIN_NAME.test(name)) {
      out.problems.push(`plugins_dir: "${files[0]}" gives the plugin name "${name}", which is not one of letters, digits, ".", "_" or "-"; rename the file`);
    } else {
      plugins[name] = { path: join(dir, files[0]) };
      out.added.push(name);
    }
  }
  return out;
}

/** Why `path` cannot run as a plugin ('' when it can): not a regular file, or no execute permission. */
async function notExecutable(path: string): Promise<string> {
  try {
    if (!(await stat(path)).isFile()) return 'is not a regular file';
  } catch (err) {
    return `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  try {
    await access(path, constants.X_OK);
    return '';
  } catch {
    return 'is not executable (chmod +x it to run it as a plugin)';
  }
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

/** Resolves plugin paths and working directories, serve actions' `root` and `file`, the gateway's certificate files and `gateway.acme`'s `storage` and `ca`, against `baseDir`. */
export function resolvePaths(config: Config, baseDir: string): Config {
  resolvePluginPaths(config.plugins, baseDir);
  resolveServePaths(config, baseDir);
  resolveTlsPaths(config.gateway, baseDir);
  const acme = config.gateway.acme;
  if (acme?.storage) acme.storage = resolve(baseDir, acme.storage);
  if (acme?.ca) acme.ca = resolve(baseDir, acme.ca);
  return config;
}

/**
 * Makes each plugin's `path`, `command[0]` (when it has a slash), `cwd`,
 * the paths in its `watch` list, and an attached plugin's `attach.socket` and `attach.socket_host_path`
 * absolute against `baseDir`, in place; a missing `cwd` becomes `baseDir`.
 * Works on validated plugins and on raw (validated) input alike.
 */
export function resolvePluginPaths(plugins: Record<string, { path?: unknown; command?: unknown; cwd?: unknown; attach?: unknown; watch?: unknown }>, baseDir: string): void {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  for (const p of Object.values(plugins)) {
    if (typeof p.path === 'string') p.path = at(p.path);
    if (Array.isArray(p.command) && typeof p.command[0] === 'string' && p.command[0].includes('/')) p.command = [at(p.command[0]), ...p.command.slice(1)];
    p.cwd = typeof p.cwd === 'string' ? at(p.cwd) : baseDir;
    if (Array.isArray(p.watch)) p.watch = p.watch.map((w) => (typeof w === 'string' ? at(w) : w));
    if (p.attach && typeof p.attach === 'object') {
      const a = p.attach as { socket?: unknown; socket_host_path?: unknown };
      if (typeof a.socket === 'string') a.socket = at(a.socket);
      if (typeof a.socket_host_path === 'string') a.socket_host_path = at(a.socket_host_path);
    }
  }
}
