/**
 * @module redact
 * The one list of what is secret in a config, for everything that shows a
 * config (the admin API's `/api/config`; logs): key `secret` values (of
 * `runner.keys` and `admin.keys`) and plugin `env` values (shown by name
 * only, as they often hold credentials). References (`secret_env`) stay:
 * they name a variable, not its value.
 */

export const REDACTED = '<redacted>';

/**
 * A copy of `config` (validated or input form) with every secret replaced
 * by `REDACTED`.
 *
 * @example
 * redactConfig({ runner: { keys: [{ id: 'e', secret: 'x'.repeat(16) }] } }).runner.keys[0].secret // '<redacted>'
 */
export function redactConfig<T>(config: T): T {
  const copy = JSON.parse(JSON.stringify(config ?? null)) as Record<string, unknown> | null;
  if (!copy || typeof copy !== 'object') return copy as T;
  for (const section of ['runner', 'admin']) {
    const keys = (copy[section] as { keys?: unknown } | undefined)?.keys;
    if (Array.isArray(keys)) for (const k of keys) if (k && typeof k === 'object' && 'secret' in k) (k as Record<string, unknown>).secret = REDACTED;
  }
  const plugins = copy.plugins as Record<string, { env?: Record<string, unknown> }> | undefined;
  if (plugins && typeof plugins === 'object') {
    for (const p of Object.values(plugins)) {
      if (p && typeof p.env === 'object' && p.env) for (const name of Object.keys(p.env)) p.env[name] = REDACTED;
    }
  }
  return copy as T;
}
