#!/usr/bin/env node
/**
 * @module cli
 * The `hookgate` command: `serve` (a runner, from a config file or a config
 * stream), `config-server` (serve a config file as a stream), `demo`,
 * `plugin-call` (try one plugin), `validate` (check a config). Argument parsing and exit codes live here; the work is done by
 * the plugin host and the config loader.
 */

import { readFileSync, watch } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HOOK, type HookName } from '../src/core/protocol.ts';
import { isHookgateError } from '../src/core/errors.ts';
import { ConfigError, parseDuration, type Config, type PluginConfig } from '../src/core/config.ts';
import { decodeHookResult, encodeHookData, unpackValue } from '../src/core/codec.ts';
import { canonicalHeaderMap } from '../src/core/headers.ts';
import { createLogger } from './log.ts';
import { loadConfigFile } from './config-file.ts';
import { PluginProcess } from './plugin/process.ts';
import { SocketPool } from './plugin/pool.ts';
import { Reaper } from './plugin/reaper.ts';
import { listenersOf, Runner, type Listeners } from './runner.ts';
import { lockStateDir } from './state-dir.ts';
import { ConfigStream, LAST_GOOD_FILE, streamConfig } from './config-stream.ts';
import { parsePin, sourceFetch, urlProblem } from './config-tls.ts';
import type { PluginsFromStream, StreamPolicy } from './stream-policy.ts';
import { configInput } from '../src/core/config-doc.ts';

const USAGE = `usage:
  hookgate serve --config <file.json5> [--state-dir <dir>]
      Serves the gateway (and the admin endpoints) from a config file.
      Changing the file or SIGHUP reloads it; SIGTERM drains and exits.
      Plugins are held by a keeper process and survive a crashed or
      restarted runner (docs/keeper.md); its socket and the plugin snapshot
      are in --state-dir (default: <config folder>/.hookgate-state), which
      must be private (0700 when created) and has one runner at a time. Knob:
      HOOKGATE_KEEPER_GRACE_MS (60000), how long plugins outlive a runner
      that does not come back.
  hookgate serve --config-url <url> --config-key-env <NAME> [--config <bootstrap.json5>] [--state-dir <dir>]
                 [--config-ca <ca.pem>] [--config-pin sha256:<hex>]... [--insecure-config-url]
                 [--plugins-from-stream allowlist|any]
      Follows a config stream (docs/protocol.md §3, e.g. a config-server's
      https://HOST:PORT/v1/stream), presenting the key held in the environment
      variable NAME once the source is verified: --config-ca trusts these CAs
      instead of the system's; --config-pin (repeatable) accepts a certificate
      whose public key (SPKI DER) has this SHA-256, self-signed included.
      http:// is refused unless the host is loopback or --insecure-config-url.
      Listeners (gateway, admin, runner.listen) come from the bootstrap file,
      else 127.0.0.1:8080 and 127.0.0.1:9090; the stream carries routes,
      actions, plugins and keys (secret_env references only). Streamed
      plugins may only name programs and sockets listed in the bootstrap's
      runner.plugins_allowed (--plugins-from-stream=allowlist, the default;
      "any" trusts the source with any program). The last good config is kept
      in --state-dir (default: <bootstrap folder>/.hookgate-state, else
      ./.hookgate-state) and served at start; without one, the bootstrap's
      items are. SIGHUP reconnects the stream. Test/ops knobs (environment):
      HOOKGATE_STREAM_BACKOFF_MS (1000), HOOKGATE_STREAM_BACKOFF_MAX_MS (30000),
      HOOKGATE_STREAM_HEALTHY_MS (60000), HOOKGATE_STREAM_AUTH_RETRY_MS (60000),
      HOOKGATE_STREAM_READ_TIMEOUT_MS (45000).
  hookgate config-server --config <file.json5> --listen <host:port> --key-env <NAME>
                         [--tls-cert <cert.pem> --tls-key <key.pem> | --insecure-http]
      Serves a config file as a config stream to runners; edits are sent as
      they are saved. The key runners present is in the environment variable NAME.
      With --tls-cert/--tls-key it serves HTTPS and logs its pin; plain HTTP
      is refused on an address that is not loopback unless --insecure-http.
  hookgate demo
      Serves the demo in examples/demo (npm start): two upstreams, the
      example auth plugin and a push-only plugin; prints curl commands.
  hookgate plugin-call <plugin> [--route ID] [--hook on_request|on_response|on_connect|on_disconnect]
                       [--data JSON] [--timeout 5s] [--env NAME=VALUE]... [-- plugin args...]
      Starts the plugin as the runner does, sends configure, waits for ready,
      makes one hook call with --data (JSON, docs/protocol.md §1.6), prints
      the plugin's reply as JSON on stdout and stops the plugin.
  hookgate validate <config.json5>
      Checks a config; prints every problem with the path of its field
      (exit 1), and warnings such as a non-executable file in plugins_dir
      (on stderr; exit 0 when there are only warnings).
`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'plugin-call':
      return pluginCall(rest);
    case 'validate':
      return validate(rest);
    case 'serve': {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string', short: 'c' },
          'config-url': { type: 'string' },
          'config-key-env': { type: 'string' },
          'state-dir': { type: 'string' },
          'insecure-config-url': { type: 'boolean', default: false },
          'config-ca': { type: 'string' },
          'config-pin': { type: 'string', multiple: true, default: [] },
          'plugins-from-stream': { type: 'string', default: 'allowlist' },
        },
      });
      const url = values['config-url'];
      if (!url) {
        if (!values.config) throw new UsageError('serve needs --config <file> or --config-url <url>');
        for (const flag of ['config-key-env', 'insecure-config-url', 'config-ca', 'config-pin'] as const) {
          if (values[flag] === undefined || values[flag] === false || (Array.isArray(values[flag]) && !values[flag].length)) continue;
          throw new UsageError(`--${flag} goes with --config-url`);
        }
        return serve(values.config, resolve(values['state-dir'] ?? join(dirname(resolve(values.config)), '.hookgate-state')));
      }
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new UsageError(`--config-url: expected an http(s) URL, got "${url}"`);
      }
      const urlWrong = urlProblem(parsed, values['insecure-config-url']);
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
      return serveStream({ url, key, bootstrap: values.config, stateDir, fetch: sourceFetch({ ca, pins }), plugins: mode });
    }
    case 'config-server':
      return (await import('./config-server.ts')).configServerMain(rest);
    case 'demo':
      if (rest.length) throw new UsageError('demo takes no arguments');
      return demo();
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

async function validate(args: string[]): Promise<number> {
  if (args.length !== 1) throw new UsageError('validate takes exactly one config file');
  try {
    const config = await loadConfigFile(args[0], (w) => process.stderr.write(`${args[0]}: warning: ${w}\n`));
    process.stdout.write(`${args[0]}: ok (${config.routes.length} routes, ${Object.keys(config.plugins).length} plugins)\n`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${args[0]}: invalid config\n${err.problems.map((p) => `  ${p}\n`).join('')}`);
      return 1;
    }
    throw err;
  }
}

async function pluginCall(args: string[]): Promise<number> {
  const dash = args.indexOf('--');
  const pluginArgs = dash >= 0 ? args.slice(dash + 1) : [];
  const { values, positionals } = parseArgs({
    args: dash >= 0 ? args.slice(0, dash) : args,
    allowPositionals: true,
    options: {
      route: { type: 'string', default: '' },
      hook: { type: 'string', default: 'on_request' },
      data: { type: 'string', default: '{}' },
      timeout: { type: 'string', default: '5s' },
      env: { type: 'string', multiple: true, default: [] },
    },
  });
  if (positionals.length !== 1) throw new UsageError('plugin-call takes exactly one plugin path');
  const hook = values.hook as HookName;
  if (!(hook in HOOK)) throw new UsageError(`--hook: expected on_request, on_response, on_connect or on_disconnect, got "${values.hook}"`);
  const timeout = parseDuration(values.timeout);
  if (Number.isNaN(timeout) || timeout <= 0) throw new UsageError(`--timeout: expected a duration such as "5s", got "${values.timeout}"`);
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(values.data);
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new Error('not an object');
  } catch (err) {
    throw new UsageError(`--data: expected a JSON object with the hook's short keys (${(err as Error).message})`);
  }
  if (typeof data.bd === 'string') data.bd = new TextEncoder().encode(data.bd);
  canonicalHeaders(data);
  if (values.route && hook === 'on_response') {
    const req = (data.req ?? {}) as Record<string, unknown>;
    data.req = { r: values.route, ...req };
  } else if (values.route && data.r === undefined) data.r = values.route;
  const env: Record<string, string> = {};
  for (const kv of values.env) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--env: expected NAME=VALUE, got "${kv}"`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }

  const log = createLogger({ name: 'plugin-call', level: process.env.HOOKGATE_LOG_LEVEL ?? 'warn' });
  const config: PluginConfig = {
    path: resolve(positionals[0]),
    args: pluginArgs,
    env,
    cwd: process.cwd(),
    on_error: 'deny',
    with_body: true,
    autostart: false,
    ready_timeout: timeout,
    pool_size: 1,
    queue_limit: 0,
  };
  let ready!: (socket: string | null, hooks: number) => void;
  const readyP = new Promise<{ socket: string | null; hooks: number }>((r) => (ready = (socket, hooks) => r({ socket, hooks })));
  let exited!: (why: string) => void;
  const exitedP = new Promise<never>((_, reject) => (exited = (why) => reject(new Error(why))));
  exitedP.catch(() => {});
  const proc = new PluginProcess('plugin', config, {
    logger: log.child({ plugin: positionals[0] }),
    reaper: Reaper.shared(),
    stopGraceMs: 1000,
    onReady: ready,
    onExit: (code, signal) =>
      exited(proc.lastError.includes('cannot start') ? proc.lastError : `the plugin exited before answering (${signal ? `signal ${signal}` : `code ${code}`})`),
  });
  proc.configure([{ route_id: values.route }]);
  let pool: SocketPool | null = null;
  try {
    proc.start();
    const { socket, hooks } = await withDeadline(
      Promise.race([readyP, exitedP]),
      timeout,
      () =>
        `the plugin did not send ready within ${values.timeout}` +
        (proc.lastError ? ` (${proc.lastError})` : ' (a push-only plugin never does: it has no hooks to call)'),
    );
    if (!socket) throw new Error('the plugin sent ready without a socket (a push-only plugin has no hooks to call)');
    const bit = 1 << (HOOK[hook] - 1);
    if (!(hooks & bit)) process.stderr.write(`plugin-call: warning: the plugin did not declare ${hook}; calling it anyway\n`);
    pool = new SocketPool(socket, { size: 1 });
    const bytes = encodeHookData(hook, data as never);
    if (hook === 'on_disconnect') {
      pool.notify(HOOK.on_disconnect, bytes);
      await new Promise((r) => setTimeout(r, 100));
      process.stdout.write('null\n');
      return 0;
    }
    const payload = await Promise.race([pool.call(HOOK[hook], bytes, timeout), exitedP]);
    const raw = unpackValue(payload);
    decodeHookResult(hook, payload); // garbage of the wrong shape is an error, not a reply
    process.stdout.write(JSON.stringify(raw, jsonBytes, 2) + '\n');
    return 0;
  } catch (err) {
    const msg = isHookgateError(err, 'HOOK_TIMEOUT') ? `no reply to ${hook} within ${values.timeout}` : (err as Error).message;
    process.stderr.write(`plugin-call: ${msg}\n`);
    return 1;
  } finally {
    pool?.close();
    await proc.stop();
  }
}

/**
 * Runs a runner until SIGTERM/SIGINT (drain, stop plugins, exit 0). The
 * config file is watched; a change or SIGHUP reloads it. A fatal error
 * stops the plugins (bounded) and exits 1; the keeper's grace covers the rest.
 */
async function serve(configFile: string, stateDir: string | null, onListening?: (runner: Runner) => void): Promise<number> {
  if (stateDir !== null && !(await holdStateDir(stateDir))) return 1;
  const log = createLogger();
  const runner = new Runner({ logger: log, configFile, stateDir: stateDir ?? undefined });
  const fatal = (err: unknown) => {
    log.error({ err: (err as Error)?.stack ?? String(err) }, 'fatal error; stopping');
    const t = setTimeout(() => process.exit(1), 5000);
    t.unref();
    void runner.stop().finally(() => process.exit(1));
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    const config = await loadConfigFile(configFile, (w) => log.warn({ file: configFile }, w));
    if (config.runner.plugins_allowed) log.warn({ file: configFile }, 'runner.plugins_allowed only limits configs from a config stream (serve --config-url); a config file is trusted as a whole');
    await runner.start(listenersOf(config), config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`hookgate: ${configFile}: invalid config\n${err.problems.map((p) => `  ${p}\n`).join('')}`);
      return 1;
    }
    log.error({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  onListening?.(runner);
  let pending: NodeJS.Timeout | null = null;
  const reload = () => {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => {
      pending = null;
      void runner.reload();
    }, 150);
  };
  const file = resolve(configFile);
  const watcher = watch(dirname(file), (_event, name) => {
    if (name === basename(file)) reload();
  });
  watcher.on('error', (err) => log.warn({ err: err.message }, 'cannot watch the config file; SIGHUP still reloads'));
  process.on('SIGHUP', reload);
  const signal = await new Promise<NodeJS.Signals>((r) => {
    process.once('SIGTERM', () => r('SIGTERM'));
    process.once('SIGINT', () => r('SIGINT'));
  });
  log.info({ signal }, 'stopping');
  watcher.close();
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

/** A positive integer of milliseconds from the environment (a test/ops knob), or undefined. */
function envMs(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name}: expected a positive number of milliseconds, got "${raw}"`);
  return n;
}

/**
 * Runs a runner that follows a config stream until SIGTERM/SIGINT (stop
 * the stream, then drain and stop the runner, exit 0). Listeners come from
 * the bootstrap file (or defaults) and never change. The first config
 * served is the persisted last good one, else the bootstrap file's items
 * (when it has any); without either, the gateway answers 503 and /readyz
 * says not ready until the stream delivers. SIGHUP reconnects the stream.
 */
async function serveStream(opts: { url: string; key: string; bootstrap?: string; stateDir: string; fetch: typeof fetch; plugins: PluginsFromStream }): Promise<number> {
  const backoff = {
    baseMs: envMs('HOOKGATE_STREAM_BACKOFF_MS'),
    maxMs: envMs('HOOKGATE_STREAM_BACKOFF_MAX_MS'),
    healthyMs: envMs('HOOKGATE_STREAM_HEALTHY_MS'),
    authRetryMs: envMs('HOOKGATE_STREAM_AUTH_RETRY_MS'),
  };
  const readTimeoutMs = envMs('HOOKGATE_STREAM_READ_TIMEOUT_MS');
  if (!(await holdStateDir(opts.stateDir))) return 1;
  const log = createLogger();
  let bootstrap: Config | null = null;
  if (opts.bootstrap) {
    try {
      bootstrap = await loadConfigFile(opts.bootstrap, (w) => log.warn({ file: opts.bootstrap }, w));
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`hookgate: ${opts.bootstrap}: invalid config\n${err.problems.map((p) => `  ${p}\n`).join('')}`);
        return 1;
      }
      throw err;
    }
  }
  const listeners: Listeners = bootstrap ? listenersOf(bootstrap) : { gateway: '127.0.0.1:8080', admin: '127.0.0.1:9090' };
  const local: Record<string, unknown> = {
    // The gateway block is local as a whole: its listener and its request-header policy.
    gateway: { ...bootstrap?.gateway, listen: listeners.gateway },
    admin: { listen: listeners.admin },
    runner: listeners.runner ? { listen: listeners.runner } : {},
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

  const runner = new Runner({ logger: log, stateDir: opts.stateDir });
  const stream = new ConfigStream({
    url: opts.url,
    key: opts.key,
    fetch: opts.fetch,
    policy,
    local,
    onConfig: (config) => runner.apply(config),
    stateDir: opts.stateDir,
    initial: persisted,
    logger: log.child({ component: 'config-stream' }),
    readTimeoutMs,
    backoff: Object.fromEntries(Object.entries(backoff).filter(([, v]) => v !== undefined)),
  });
  const fatal = (err: unknown) => {
    log.error({ err: (err as Error)?.stack ?? String(err) }, 'fatal error; stopping');
    const t = setTimeout(() => process.exit(1), 5000);
    t.unref();
    void stream
      .stop()
      .then(() => runner.stop())
      .finally(() => process.exit(1));
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    await runner.start(listeners, initial);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  stream.start();
  const onHup = () => stream.reconnect();
  process.on('SIGHUP', onHup);
  const signal = await new Promise<NodeJS.Signals>((r) => {
    process.once('SIGTERM', () => r('SIGTERM'));
    process.once('SIGINT', () => r('SIGINT'));
  });
  log.info({ signal }, 'stopping');
  process.off('SIGHUP', onHup);
  await stream.stop();
  await runner.stop();
  log.info('stopped');
  return 0;
}

async function demo(): Promise<number> {
  const config = fileURLToPath(new URL('../examples/demo/hookgate.json5', import.meta.url));
  const { startUpstream } = await import('../examples/demo/upstream.ts');
  try {
    await Promise.all([startUpstream(3001), startUpstream(3002)]);
  } catch (err) {
    process.stderr.write(`hookgate demo: cannot start the demo upstreams on 127.0.0.1:3001 and :3002 (${(err as Error).message})\n`);
    return 1;
  }
  // The demo's plugins are the runner's own children (no keeper, no state
  // dir written into the examples folder).
  return serve(config, null, (runner) => {
    const gw = runner.urls.gateway;
    process.stdout.write(`
hookgate demo is running (Ctrl-C stops it). Try:

  curl -i ${gw}/api/me                                           # 401: the auth plugin denies
  curl -i -H 'Authorization: Bearer demo-token' ${gw}/api/me     # 200: allowed, upstream sees X-User: demo
  curl -s ${gw}/public/hello; curl -s ${gw}/public/hello         # balanced: served_by alternates :3001 / :3002
  curl -i ${gw}/old/page                                         # 308 redirect to /public/page
  curl -s ${runner.urls.admin}/readyz                                 # readiness and plugin states

config: ${config}
`);
  });
}

/**
 * Puts the header maps of `--data` (`h`, and on_response's `req.h` and
 * `resp.h`) in canonical form, as the runner sends them: a plugin looks
 * `Authorization` up, whatever case the command line used.
 */
function canonicalHeaders(data: Record<string, unknown>): void {
  const fix = (o: unknown) => {
    if (typeof o !== 'object' || o === null) return;
    const rec = o as Record<string, unknown>;
    if (typeof rec.h === 'object' && rec.h !== null && !Array.isArray(rec.h)) rec.h = canonicalHeaderMap(rec.h as Record<string, string>);
  };
  fix(data);
  fix(data.req);
  fix(data.resp);
}

function jsonBytes(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return value;
}

function withDeadline<T>(p: Promise<T>, ms: number, why: () => string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(why())), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`hookgate: ${(err as Error).message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`hookgate: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
