/**
 * @module stream-policy
 * What a config from a config stream (or the last good one saved from it)
 * may make a runner do, beyond what the schema checks. The stream is
 * trusted with routes, actions and keys; which programs run on the
 * runner's machine is the runner's own decision, made in its bootstrap
 * config (`runner.plugins_allowed`) and flags (`--plugins-from-stream`).
 *
 * What it owns (`streamProblems`):
 * - **Keys are references.** A key with a literal `secret` is refused:
 *   secrets arrive as `secret_env` names, resolved in the runner's
 *   environment. (Local files may keep literal secrets.)
 * - **Programs from the allow-list** (mode `allowlist`, the default). Each
 *   plugin's program, resolved to an absolute path (`path`, or
 *   `command[0]` looked up on the PATH the plugin would start with), must
 *   match an entry of `runner.plugins_allowed` (`path.matchesGlob`: an
 *   exact path, `*` within one folder, `**` across folders). Only the
 *   program is matched, never the arguments: allowing an interpreter
 *   (`/usr/bin/python3`) allows any script it is given. A `command`'s
 *   program is replaced by the path that was checked, so the program that
 *   runs is the one allowed, whatever PATH holds later.
 * - **Attached sockets from the allow-list** too (`socket_host_path`, else
 *   `socket`): a socket starts nothing, but hook calls carry requests'
 *   headers and bodies to whoever listens there.
 * - **No way around it through the environment.** A streamed plugin may not
 *   set `inherit_env` (the runner's environment holds its keys), nor, in
 *   its `env`, variables that make an allowed program load other code
 *   (`LOADER_ENV`: `LD_*`, `NODE_OPTIONS`, `PYTHON*`, `PATH`, ...). That
 *   list is a deny-list and cannot be complete; arguments, `cwd` and the
 *   remaining variables stay the stream's to set.
 * - **No files from a stream.** A `serve` action is refused in `allowlist`
 *   mode: which folders the runner publishes is the runner's decision.
 * - Mode `any` skips the plugin and serve checks (not the key check): the
 *   stream is then trusted to run any program as the runner's user.
 *
 * Problems are worded with config paths (`plugins.x: ...`), which the
 * stream client turns into item paths (`plugins/x: ...`). Validation is the
 * schema's (`parseConfig`); applying is the stream client's.
 */

import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, matchesGlob, resolve } from 'node:path';
import type { Config, PluginConfig } from '../../src/core/config/config.ts';
import { pluginEnv } from '../plugin/spawn-env.ts';

/** `--plugins-from-stream`: which plugins a streamed config may name. */
export type PluginsFromStream = 'allowlist' | 'any';

export interface StreamPolicy {
  plugins: PluginsFromStream;
  /** absolute paths or globs: the bootstrap config's `runner.plugins_allowed` */
  allowed: readonly string[];
}

/** The policy when nothing is said: allow-list mode with an empty list (no plugin from a stream runs). */
export const CLOSED_POLICY: StreamPolicy = { plugins: 'allowlist', allowed: [] };

/** Variables that make a program load code it was not given: refused in a streamed plugin's `env`. */
const LOADER_ENV = /^(?:LD_.*|DYLD_.*|PYTHON.*|PERL.*|RUBY.*|BASH_FUNC_.*|PATH|NODE_OPTIONS|NODE_PATH|BASH_ENV|ENV|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|GCONV_PATH)$/;

/**
 * The absolute program a plugin would start: its `path`, a `command[0]`
 * with a slash (made absolute by `resolvePaths`), or `command[0]` found
 * in an absolute folder of the PATH the plugin gets (`pluginEnv`) as an
 * executable file. Null when none is found.
 *
 * @example
 * resolveProgram({ command: ['python3', 'x.py'], env: {} } as PluginConfig) // '/usr/bin/python3'
 */
export function resolveProgram(p: Pick<PluginConfig, 'path' | 'command' | 'env' | 'inherit_env' | 'cwd'>, env: NodeJS.ProcessEnv = process.env): string | null {
  if (p.path) return resolve(p.cwd ?? '/', p.path);
  const program = p.command?.[0];
  if (!program) return null;
  if (program.includes('/')) return resolve(p.cwd ?? '/', program);
  for (const dir of pluginEnv(p, env).PATH.split(delimiter)) {
    // A relative PATH entry would be looked up from the plugin's cwd, which the stream sets.
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, program);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** True when `path` matches one of the allow-list's entries. */
export function isAllowed(path: string, allowed: readonly string[]): boolean {
  return allowed.some((pattern) => matchesGlob(path, pattern));
}

/**
 * The keys of a config that carry a literal `secret`: a config stream may
 * only carry references (`secret_env`). Used by runners and by the config
 * server, which refuses to serve them.
 *
 * @example
 * keyProblems(parseConfig({ runner: { keys: [{ id: 'a', secret: '0123456789abcdef' }] } })) // ['runner.keys[0].secret: ...']
 */
export function keyProblems(config: Config): string[] {
  const problems: string[] = [];
  config.runner.keys.forEach((k, i) => {
    if (k.secret !== undefined) {
      problems.push(`runner.keys[${i}].secret: a key from a config stream must be a reference: name the environment variable that holds it with "secret_env" (literal secrets are only accepted in local files)`);
    }
  });
  return problems;
}

/**
 * `serve` actions of a streamed config: refused in `allowlist` mode. A
 * serve root names files on the runner's machine for anyone to fetch (a
 * root of "/" would serve its keys), which is the runner's decision, as
 * which programs run is; there is no allow-list for folders yet, so only a
 * stream trusted as the runner's user (`--plugins-from-stream=any`) may
 * carry them.
 */
function servedFromStream(config: Config): string[] {
  const out: string[] = [];
  const why = 'a serve action from a config stream would let the stream publish any file the runner can read; serve files from the runner\'s own config file, or start the runner with --plugins-from-stream=any to trust the stream as the runner\'s user';
  for (const [name, a] of Object.entries(config.actions)) if (a.type === 'serve') out.push(`actions.${name}: ${why}`);
  for (const r of config.routes) if (typeof r.action !== 'string' && r.action.type === 'serve') out.push(`routes[${r.index}].action: ${why}`);
  return out;
}

/**
 * Checks a validated config from a stream against `policy`; returns the
 * problems (empty when it may run). In `allowlist` mode a `command`'s
 * program is replaced, in place, by the absolute path that was checked.
 * Reads the file system (PATH lookup); keeps nothing.
 *
 * @example
 * const problems = streamProblems(config, { plugins: 'allowlist', allowed: ['/opt/hookgate/plugins/*'] });
 * if (problems.length) throw new ConfigError(problems);
 */
export function streamProblems(config: Config, policy: StreamPolicy, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems = keyProblems(config);
  if (policy.plugins === 'any') return problems;
  problems.push(...servedFromStream(config));
  const how = 'add it to runner.plugins_allowed in the runner\'s bootstrap config (--config), or start the runner with --plugins-from-stream=any';
  for (const [name, p] of Object.entries(config.plugins)) {
    if (p.attach) {
      const socket = p.attach.socket_host_path ?? p.attach.socket;
      if (!isAllowed(socket, policy.allowed)) problems.push(`plugins.${name}.attach: the socket ${socket} is not in runner.plugins_allowed; ${how}`);
      continue;
    }
    const program = resolveProgram(p, env);
    if (program === null) {
      problems.push(`plugins.${name}.command: the program "${p.command?.[0]}" is not an executable file in any absolute folder of PATH, so it cannot be checked against runner.plugins_allowed`);
    } else if (!isAllowed(program, policy.allowed)) {
      problems.push(`plugins.${name}: the program ${program} is not in runner.plugins_allowed; ${how}`);
    } else if (p.command) {
      p.command = [program, ...p.command.slice(1)];
    }
    if (p.watch) problems.push(`plugins.${name}.watch: a plugin from a config stream cannot watch files (a development setting for a config file)`);
    if (p.inherit_env) problems.push(`plugins.${name}.inherit_env: a plugin from a config stream cannot inherit the runner's environment (it holds the runner's keys); pass what it needs in "env"`);
    for (const k of Object.keys(p.env)) {
      if (LOADER_ENV.test(k)) problems.push(`plugins.${name}.env.${k}: a plugin from a config stream cannot set ${k}, which would make an allowed program load other code`);
    }
  }
  return problems;
}
