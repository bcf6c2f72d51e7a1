/**
 * @module plugin/spawn-env
 * What a plugin process is started with and ended by, on both spawn paths
 * (directly and through the keeper): its environment, its pinned
 * checksum, its socket folder, and the signal to its process group.
 */

import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, rmSync } from 'node:fs';
import { delimiter, dirname } from 'node:path';
import type { PluginConfig } from '../../src/core/config/config.ts';
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION, PROTOCOL_VERSIONS_KEY } from '../../src/core/protocol/protocol.ts';

/**
 * Computes the sha256 of a file as lower-case hex.
 *
 * @example
 * await sha256File('/usr/local/bin/auth-plugin') // 'e3b0c4...'
 */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('error', reject)
      .on('data', (c) => hash.update(c))
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** The runner's variables every plugin gets (besides PATH and LC_*): what programs need to run, nothing secret. */
const BASE_ENV = ['HOME', 'LANG', 'TZ', 'TMPDIR'];

/**
 * The environment a plugin starts with, on both spawn paths (directly and
 * through the keeper). Minimal unless the plugin says `inherit_env: true`:
 * PATH (the runner's Node first, so `#!/usr/bin/env node` plugins run on
 * the runtime the runner runs on), HOME, LANG, LC_*, TZ and TMPDIR from the
 * runner, then the plugin's own `env`, then the handshake variables. The
 * runner's other variables (its keys, the config stream's credential) stay
 * out of the plugin's reach.
 *
 * @example
 * pluginEnv({ env: { MODE: 'strict' } } as PluginConfig) // { PATH: '/opt/node/bin:/usr/bin', HOME: ..., MODE: 'strict', HOOKGATE_PLUGIN_MAGIC_COOKIE: ..., ... }
 */
export function pluginEnv(cfg: Pick<PluginConfig, 'env' | 'inherit_env'>, from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(from)) {
    if (v !== undefined && (cfg.inherit_env || BASE_ENV.includes(k) || k.startsWith('LC_'))) base[k] = v;
  }
  const inherited = from.PATH ?? '';
  return {
    ...base,
    PATH: dirname(process.execPath) + (inherited ? delimiter + inherited : ''),
    ...cfg.env,
    [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE,
    [PROTOCOL_VERSIONS_KEY]: PROTOCOL_VERSION,
  };
}

/** Removes a socket folder made for a plugin process (and what it left there). */
export function removeSocketDir(dir: string | null | undefined): void {
  if (!dir) return;
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // Not ours to worry about beyond this: it is in the temp dir.
  }
}

/** Signals the process group of a plugin (through the keeper for a kept one). Never throws. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  // A plugin held by the keeper is signalled by the keeper, which only
  // signals children it still holds (never a pid that may have been reused).
  const kept = child as unknown as { killGroup?: (s: NodeJS.Signals) => void };
  if (typeof kept.killGroup === 'function') return kept.killGroup(signal);
  if (!child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}
