/**
 * @module commands/serve
 * `hookgate serve`: a runner from a config file (watched; SIGHUP reloads)
 * or following a config stream (`--config-url`). Runs until SIGTERM/SIGINT
 * (drain, stop plugins, exit 0).
 */

import { readFileSync, watch } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { isHookgateError } from '../../../src/core/errors.ts';
import { ConfigError, type Config } from '../../../src/core/config/config.ts';
import { configInput } from '../../../src/core/config/config-doc.ts';
import { createLogger, logSettings } from '../../log.ts';
import { loadConfigFile } from '../../config/config-file.ts';
import { listenersOf, Runner, type Listeners } from '../../runner.ts';
import { lockStateDir } from '../../state-dir.ts';
import { PluginWatcher, watchedPlugins } from '../../plugin/watch.ts';
import { ConfigStream, LAST_GOOD_FILE, streamConfig } from '../../config/config-stream.ts';
import { EtcdSource } from '../../config/etcd-source.ts';
import { ETCD_HELP, ETCD_OPTIONS, etcdSettings, type EtcdSettings } from '../../config/etcd.ts';
import { parsePin, sourceFetch, urlProblem } from '../../config/config-tls.ts';
import type { PluginsFromStream, StreamPolicy } from '../../config/stream-policy.ts';
import { command, envMs, exitOnFatal, printConfigError, UsageError, waitForStopSignal, LOG_FORMAT_OPTION } from './kit.ts';

const HELP = `usage: hookgate serve --config <file.json5> [--state-dir <dir>] [--watch-plugins]
       hookgate serve --config-etcd <http://host:2379,...> [--etcd-prefix P] [--config <bootstrap.json5>] [--state-dir <dir>]
                      [--plugins-from-stream allowlist|any] [etcd connection options]
       hookgate serve --config-url <url> --config-key-env <NAME> [--config <bootstrap.json5>] [--state-dir <dir>]
                      [--config-ca <ca.pem>] [--config-pin sha256:<hex>]... [--insecure-config-url]
                      [--plugins-from-stream allowlist|any]

Serves the gateway (and the admin endpoints).

From a config file (--config): changing the file or SIGHUP reloads it
(and restarts plugins whose code changed on disk); SIGTERM drains and
exits. --watch-plugins restarts a plugin as soon as its code changes (its
path, the files its command names, its "watch" paths), as "watch: true"
does for one plugin. Plugins are held by a keeper process and survive
a crashed or restarted runner (docs/keeper.md); its socket and the plugin
snapshot are in --state-dir (default: <config folder>/.hookgate-state),
which must be private (0700 when created) and has one runner at a time.
Knob: HOOKGATE_KEEPER_GRACE_MS (60000), how long plugins outlive a runner
that does not come back.

Following a config stream (--config-url, docs/protocol.md §3, e.g. a
config-server's https://HOST:PORT/v1/stream), presenting the key held in
the environment variable NAME once the source is verified:
  --config-ca <ca.pem>        trust these CAs instead of the system's
  --config-pin sha256:<hex>   accept a certificate whose public key (SPKI
                              DER) has this SHA-256, self-signed included
                              (repeatable)
  --insecure-config-url       allow http:// to a host that is not loopback
  --plugins-from-stream M     "allowlist" (default): streamed plugins may
                              only name programs and sockets listed in the
                              bootstrap's runner.plugins_allowed; "any"
                              trusts the source with any program
Listeners (gateway, admin, runner.listen) come from the bootstrap file, else
127.0.0.1:8080 and 127.0.0.1:9090; the stream carries routes, actions,
plugins and keys (secret_env references only). The last good config is
kept in --state-dir (default: <bootstrap folder>/.hookgate-state, else
./.hookgate-state) and served at start; without one, the bootstrap's items
are. SIGHUP reconnects the stream. Test/ops knobs (environment):
HOOKGATE_STREAM_BACKOFF_MS (1000), HOOKGATE_STREAM_BACKOFF_MAX_MS (30000),
HOOKGATE_STREAM_HEALTHY_MS (60000), HOOKGATE_STREAM_AUTH_RETRY_MS (60000),
HOOKGATE_STREAM_READ_TIMEOUT_MS (45000).

Following etcd (--config-etcd, endpoints comma-separated): reads every key
under the prefix at one revision, then watches from the next; a change of
several keys in one transaction applies as one version. Reconnects across
the endpoints; a compacted revision means a fresh full read. Listeners,
the plugin allow-list (--plugins-from-stream) and the last good config in
--state-dir work as with --config-url. SIGHUP reads the whole config again.
${ETCD_HELP}
Logs go to stderr: HOOKGATE_LOG_LEVEL (debug, info, warn, error) over the
config's log.level (default info), and HOOKGATE_LOG_FORMAT or --log-format
(json, or pretty: one human line per record) over log.format (default
pretty on a terminal, else json). With --config-url or --config-etcd, log
and metrics settings come from the bootstrap file only.
`;

export default command({
  help: HELP,
  positionals: 0,
  positionalHint: (arg) => `hookgate serve --config ${arg}`,
  options: {
    ...LOG_FORMAT_OPTION,
    config: { type: 'string', short: 'c' },
    'config-url': { type: 'string' },
    'config-key-env': { type: 'string' },
    'state-dir': { type: 'string' },
    'insecure-config-url': { type: 'boolean', default: false },
    'config-ca': { type: 'string' },
    'config-pin': { type: 'string', multiple: true, default: [] },
    'plugins-from-stream': { type: 'string', default: 'allowlist' },
    'watch-plugins': { type: 'boolean', default: false },
    'config-etcd': { type: 'string' },
    ...ETCD_OPTIONS,
  },
  async run({ values }) {
    const url = values['config-url'];
    const etcd = values['config-etcd'];
    if (url && etcd) throw new UsageError('--config-url and --config-etcd: a runner follows one config source; pick one');
    if (!etcd) {
      for (const flag of Object.keys(ETCD_OPTIONS) as Array<keyof typeof ETCD_OPTIONS>) {
        const v = values[flag];
        if (v === undefined || v === false || v === (ETCD_OPTIONS[flag] as { default?: unknown }).default) continue;
        throw new UsageError(`--${flag} goes with --config-etcd`);
      }
    }
    if (etcd) {
      if (values['watch-plugins']) throw new UsageError('--watch-plugins goes with --config (a config file); plugins from etcd are not watched');
      for (const flag of ['config-key-env', 'insecure-config-url', 'config-ca', 'config-pin'] as const) {
        const v = values[flag];
        if (v === undefined || v === false || (Array.isArray(v) && !v.length)) continue;
        throw new UsageError(`--${flag} goes with --config-url`);
      }
      const mode = values['plugins-from-stream'];
      if (mode !== 'allowlist' && mode !== 'any') throw new UsageError(`--plugins-from-stream: expected "allowlist" or "any", got "${mode}"`);
      let settings: EtcdSettings;
      try {
        settings = etcdSettings(etcd, '--config-etcd', values);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const stateDir = resolve(values['state-dir'] ?? (values.config ? join(dirname(resolve(values.config)), '.hookgate-state') : '.hookgate-state'));
      return serveStream({ source: { etcd: settings }, bootstrap: values.config, stateDir, plugins: mode });
    }
    if (!url) {
      if (!values.config) throw new UsageError('serve needs --config <file>, --config-url <url> or --config-etcd <endpoints>');
      for (const flag of ['config-key-env', 'insecure-config-url', 'config-ca', 'config-pin', 'plugins-from-stream'] as const) {
        if (flag === 'plugins-from-stream' && values[flag] === 'allowlist') continue;
        const v = values[flag];
        if (v === undefined || v === false || (Array.isArray(v) && !v.length)) continue;
        throw new UsageError(`--${flag} goes with --config-url`);
      }
      return serveFile(values.config, resolve(values['state-dir'] ?? join(dirname(resolve(values.config)), '.hookgate-state')), undefined, { watchPlugins: values['watch-plugins'] });
    }
    if (values['watch-plugins']) throw new UsageError('--watch-plugins goes with --config (a config file); plugins from a config stream are not watched');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UsageError(`--config-url: expected an http(s) URL, got "${url}"`);
    }
    const urlWrong = urlProblem(parsed, values['insecure-config-url'] ?? false);
    if (urlWrong) throw new UsageError(urlWrong);
    if (parsed.protocol !== 'https:' && (values['config-ca'] || values['config-pin'].length)) throw new UsageError('--config-ca and --config-pin need an https --config-url');
    const mode = values['plugins-from-stream'];
    if (mode !== 'allowlist' && mode !== 'any') throw new UsageError(`--plugins-from-stream: expected "allowlist" or "any", got "${mode}"`);
    let pins: string[];
    try {
      pins = values['config-pin'].map(parsePin);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    let ca: string | undefined;
    if (values['config-ca']) {
      try {
        ca = readFileSync(values['config-ca'], 'utf8');
      } catch (err) {
        throw new UsageError(`--config-ca: cannot read ${values['config-ca']} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
    const keyEnv = values['config-key-env'];
    if (!keyEnv) throw new UsageError('--config-url needs --config-key-env <NAME>: the environment variable holding the key the config source expects');
    const key = process.env[keyEnv];
    if (!key) {
      process.stderr.write(`hookgate: the environment variable ${keyEnv} (--config-key-env) is not set; set it to the key the config source expects\n`);
      return 2;
    }
    const stateDir = resolve(values['state-dir'] ?? (values.config ? join(dirname(resolve(values.config)), '.hookgate-state') : '.hookgate-state'));
    return serveStream({ source: { url, key, fetch: sourceFetch({ ca, pins }) }, bootstrap: values.config, stateDir, plugins: mode });
  },
});

/**
 * Runs a runner until SIGTERM/SIGINT (drain, stop plugins, exit 0). The
 * config file is watched; a change or SIGHUP reloads it. A fatal error
 * stops the plugins (bounded) and exits 1; the keeper's grace covers the rest.
 * `stateDir` null: no keeper, plugins are the runner's own children.
 */
export async function serveFile(configFile: string, stateDir: string | null, onListening?: (runner: Runner) => void, opts: { watchPlugins?: boolean } = {}): Promise<number> {
  if (stateDir !== null && !(await holdStateDir(stateDir))) return 1;
  // The file's own warnings go out before its log settings are known.
  const warnings: string[] = [];
  let config: Config;
  try {
    config = await loadConfigFile(configFile, (w) => warnings.push(w));
  } catch (err) {
    if (err instanceof ConfigError) {
      printConfigError(configFile, err);
      return 1;
    }
    createLogger().error({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  const logSet = logSettings(config.log);
  const log = createLogger(logSet);
  for (const w of warnings) log.warn({ file: configFile }, w);
  const signals = earlySignals();
  const runner = new Runner({ logger: log, configFile, stateDir: stateDir ?? undefined, log: logSet, requestMetrics: config.metrics.requests });
  exitOnFatal(log, () => runner.stop());
  try {
    if (config.runner.plugins_allowed) log.warn({ file: configFile }, 'runner.plugins_allowed only limits configs from a config stream (serve --config-url); a config file is trusted as a whole');
    await runner.start(listenersOf(config), config);
  } catch (err) {
    if (err instanceof ConfigError) {
      printConfigError(configFile, err);
      return 1;
    }
    log.error({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  onListening?.(runner);
  const plugins = new PluginWatcher((names) => void runner.refreshPlugins(names), log);
  const watchPlugins = () => {
    if (runner.config) plugins.set(watchedPlugins(runner.config, opts.watchPlugins ?? false));
  };
  watchPlugins();
  let pending: NodeJS.Timeout | null = null;
  const reload = () => {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => {
      pending = null;
      void runner.reload().then(watchPlugins);
    }, 150);
  };
  const file = resolve(configFile);
  const watcher = watch(dirname(file), (_event, name) => {
    if (name === basename(file)) reload();
  });
  watcher.on('error', (err) => log.warn({ err: err.message }, 'cannot watch the config file; SIGHUP still reloads'));
  signals.onHup(reload);
  const signal = await signals.stop;
  log.info({ signal }, 'stopping');
  watcher.close();
  plugins.close();
  if (pending) clearTimeout(pending);
  await runner.stop();
  log.info('stopped');
  return 0;
}

/**
 * Takes the state dir for this process (`lockStateDir`: private, one
 * runner), released when the process exits. False, with the reason on
 * stderr, when another runner holds it or it is not private.
 */
async function holdStateDir(dir: string): Promise<boolean> {
  try {
    const lock = await lockStateDir(dir);
    process.on('exit', () => lock.release());
    return true;
  } catch (err) {
    if (!isHookgateError(err, 'STATE_DIR_LOCKED') && !isHookgateError(err, 'UNSAFE_PATH')) throw err;
    process.stderr.write(`hookgate: ${err.message}\n`);
    return false;
  }
}
/**
 * Runs a runner that follows a config stream until SIGTERM/SIGINT (stop
 * the stream, then drain and stop the runner, exit 0). Listeners come from
 * the bootstrap file (or defaults) and never change. The first config
 * served is the persisted last good one, else the bootstrap file's items
 * (when it has any); without either, the gateway answers 503 and /readyz
 * says not ready until the stream delivers. SIGHUP reconnects the stream.
 */
async function serveStream(opts: { source: { url: string; key: string; fetch: typeof fetch } | { etcd: EtcdSettings }; bootstrap?: string; stateDir: string; plugins: PluginsFromStream }): Promise<number> {
  const backoff = {
    baseMs: envMs('HOOKGATE_STREAM_BACKOFF_MS'),
    maxMs: envMs('HOOKGATE_STREAM_BACKOFF_MAX_MS'),
    healthyMs: envMs('HOOKGATE_STREAM_HEALTHY_MS'),
    authRetryMs: envMs('HOOKGATE_STREAM_AUTH_RETRY_MS'),
  };
  const readTimeoutMs = envMs('HOOKGATE_STREAM_READ_TIMEOUT_MS');
  if (!(await holdStateDir(opts.stateDir))) return 1;
  let bootstrap: Config | null = null;
  const warnings: string[] = [];
  if (opts.bootstrap) {
    try {
      bootstrap = await loadConfigFile(opts.bootstrap, (w) => warnings.push(w));
    } catch (err) {
      if (err instanceof ConfigError) {
        printConfigError(opts.bootstrap, err);
        return 1;
      }
      throw err;
    }
  }
  // Logging and metrics are local: the bootstrap's, never the stream's.
  const logSet = logSettings(bootstrap?.log);
  const log = createLogger(logSet);
  for (const w of warnings) log.warn({ file: opts.bootstrap }, w);
  const listeners: Listeners = bootstrap ? listenersOf(bootstrap) : { gateway: '127.0.0.1:8080', admin: '127.0.0.1:9090' };
  const local: Record<string, unknown> = {
    // The gateway block is local as a whole: its listener and its request-header policy.
    gateway: { ...bootstrap?.gateway, listen: listeners.gateway },
    // admin.keys stay local (in input form again: an expiry back to RFC 3339), as does logging.
    admin: {
      listen: listeners.admin,
      keys: (bootstrap?.admin.keys ?? []).map(({ expires_at, ...k }) => ({ ...k, ...(expires_at !== undefined ? { expires_at: new Date(expires_at).toISOString() } : {}) })),
    },
    runner: listeners.runner ? { listen: listeners.runner } : {},
    log: bootstrap?.log ?? {},
    metrics: bootstrap?.metrics ?? {},
  };
  // What the stream may start is this runner's decision, from its own bootstrap file and flags.
  const policy: StreamPolicy = { plugins: opts.plugins, allowed: bootstrap?.runner.plugins_allowed ?? [] };
  if (policy.plugins === 'any') log.warn('--plugins-from-stream=any: the config source may start any program as this runner\'s user');
  let persisted = ConfigStream.loadPersisted(opts.stateDir, log);
  let initial: Config | null = null;
  if (persisted) {
    try {
      // Checked like a config from the stream, against today's allow-list: a
      // saved file must not become a way in.
      initial = streamConfig(configInput(persisted.doc, local), policy);
      log.info({ dir: opts.stateDir, routes: initial.routes.length }, 'serving the last good config until the stream delivers');
    } catch (err) {
      const problems = (err as { problems?: string[] }).problems ?? [(err as Error).message];
      log.error({ file: join(opts.stateDir, LAST_GOOD_FILE), problems }, 'the last good config is refused (invalid, or not allowed by this runner); not running it, starting without it');
      persisted = null;
    }
  }
  if (!initial && bootstrap) {
    const b = bootstrap;
    const items = b.routes.length + Object.keys(b.actions).length + Object.keys(b.plugins).length + b.runner.keys.length;
    if (items > 0) {
      initial = b;
      log.info({ file: opts.bootstrap, routes: b.routes.length }, 'serving the bootstrap config until the stream delivers');
    }
  }

  const signals = earlySignals();
  const runner = new Runner({ logger: log, stateDir: opts.stateDir, source: 'etcd' in opts.source ? 'etcd' : 'stream', log: logSet, requestMetrics: bootstrap?.metrics.requests ?? true });
  const onConfig = async (config: Config) => void (await runner.apply(config));
  const onResult = (result: 'applied' | 'refused') => runner.metrics.reloads.inc({ result });
  const backoffSet = Object.fromEntries(Object.entries(backoff).filter(([, v]) => v !== undefined));
  const src = opts.source;
  const stream =
    'etcd' in src
      ? new EtcdSource({ settings: src.etcd, policy, local, onConfig, onResult, stateDir: opts.stateDir, initial: persisted?.doc, logger: log.child({ component: 'etcd' }), backoff: backoffSet })
      : new ConfigStream({
          url: src.url,
          key: src.key,
          fetch: src.fetch,
          policy,
          local,
          onConfig,
          onResult,
          stateDir: opts.stateDir,
          initial: persisted,
          logger: log.child({ component: 'config-stream' }),
          readTimeoutMs,
          backoff: backoffSet,
        });
  runner.metrics.sourceConnected = () => stream.connected;
  exitOnFatal(log, () => stream.stop().then(() => runner.stop()));
  try {
    await runner.start(listeners, initial);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  stream.start();
  const onHup = () => {
    runner.reloadCertificates();
    return 'reread' in stream ? stream.reread() : stream.reconnect();
  };
  signals.onHup(onHup);
  const signal = await signals.stop;
  log.info({ signal }, 'stopping');
  signals.onHup(null);
  await stream.stop();
  await runner.stop();
  log.info('stopped');
  return 0;
}

/**
 * The stop and reload signals, caught from before the runner starts: a
 * SIGTERM or SIGHUP that arrives while it starts (its listeners may already
 * have said so) would otherwise end the process by default, leaving its
 * plugins to the keeper. A stop received early is acted on once started;
 * SIGHUPs received early are one reload once `onHup` is given. One SIGHUP
 * listener for the process's life: removing the last one stops Node's
 * signal handle, and a signal not yet dispatched would be lost.
 */
function earlySignals(): { stop: Promise<NodeJS.Signals>; onHup(fn: (() => unknown) | null): void } {
  const stop = waitForStopSignal();
  let handler: (() => unknown) | null = null;
  let missed = false;
  process.on('SIGHUP', () => {
    if (handler) handler();
    else missed = true;
  });
  return {
    stop,
    onHup(fn) {
      handler = fn;
      if (fn && missed) {
        missed = false;
        fn();
      }
    },
  };
}
