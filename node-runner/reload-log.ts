/**
 * @module reload-log
 * What the runner says about a reload: one info line for what happened to
 * the plugins, and a warning for the settings a reload cannot change (read
 * at start: log level and format, request metrics).
 */

import type { Config } from '../src/core/config/config.ts';
import type { Logger } from '../src/core/log.ts';
import type { ApplyChanges } from './plugin/manager.ts';

/**
 * One info line for a reload: what happened to the plugins (started,
 * restarted and why, stopped, settings changed), or that nothing changed.
 */
export function logChanges(log: Logger, what: 'config reloaded' | 'plugin files changed', configChanged: boolean, c: ApplyChanges, extra: Record<string, unknown> = {}): void {
  const fields: Record<string, unknown> = { ...extra };
  if (c.started.length) fields.started = c.started;
  if (c.restarted.length) fields.restarted = c.restarted.map((r) => `${r.plugin} (${r.why})`);
  if (c.stopped.length) fields.stopped = c.stopped;
  if (c.settings.length) fields.settings_changed = c.settings;
  const plugins = c.started.length + c.restarted.length + c.stopped.length + c.settings.length > 0;
  const how =
    what === 'plugin files changed' ? (plugins ? '' : ': no plugin code changed') : configChanged ? '' : plugins ? ': config unchanged, plugins restarted' : ': nothing changed';
  log.info(fields, what + how);
}

/** Warns when `next` changes settings that only a restart applies (`log.level`, `log.format`, `metrics`). */
export function warnFixedAtStart(log: Logger, prev: Config, next: Config): void {
  if (next.log.level === prev.log.level && next.log.format === prev.log.format && next.metrics.requests === prev.metrics.requests) return;
  log.warn({ log: { level: next.log.level, format: next.log.format }, metrics: next.metrics }, 'log.level, log.format or metrics changed; restart to apply them (log.access applies now)');
}
