/**
 * @module config
 * The one schema of hookgate's config, validated once where a config enters
 * the system (a file, a config stream), with types inferred from it. Every
 * problem is reported with the path of the field (`routes[2].match.domain:
 * ...`), all at once, never just the first.
 *
 * Resolving relative paths against the config file's folder and reading
 * files is the node runner's business (`node-runner/config/config-file.ts`); this
 * module is runtime-neutral.
 */

import * as v from 'valibot';
import { HookgateError } from '../errors.ts';
import { DENY_BODY } from '../protocol/verdict.ts';
import { describe, inFileOrder } from './problems.ts';
import { referenceProblems } from './references.ts';
import { DropAction, ServeAction } from './config-actions.ts';
import { ListenerSchema, TlsSchema } from './config-listeners.ts';
import { ConnectionCount, Duration, HeaderName, HeaderValues, isLoopbackListen, Listen, Target, Timestamp } from './values.ts';

export { isLoopbackListen, isTarget, parseDuration, parseTimestamp } from './values.ts';

const OnError = v.picklist(['deny', 'allow'], 'expected "deny" or "allow"');

/** The request facts a cache key may name besides headers (see `verdict-cache.ts`). */
export const CACHE_KEY_FACTS: readonly string[] = ['method', 'domain', 'host', 'path', 'query', 'client_ip', 'body'];

/**
 * One part of a verdict cache key: what a plugin's verdict depends on.
 * `header:Name` (any case), or one of the request's facts.
 */
const CacheKeyPart = v.pipe(
  v.string(),
  v.check(
    (p) => CACHE_KEY_FACTS.includes(p) || /^header:[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p),
    `expected "header:<Name>" or one of ${CACHE_KEY_FACTS.map((f) => `"${f}"`).join(', ')}`,
  ),
);

/**
 * A binding's verdict cache, as written on a plugin (its defaults) or on a
 * route's binding (overrides, field by field). Nothing is cached unless
 * `ttl` or `negative_ttl` ends up above 0.
 */
const CacheSchema = v.strictObject({
  /** how long an allow verdict is reused */
  ttl: v.optional(Duration),
  /** how long a deny, drop or fallback verdict is reused (0: never) */
  negative_ttl: v.optional(Duration),
  /** how long past its expiry a verdict still stands in for a failed call */
  stale_if_error: v.optional(Duration),
  /** what the verdict depends on; default: everything the plugin is sent */
  key: v.optional(v.pipe(v.array(CacheKeyPart), v.minLength(1, 'expected at least one key part (leave "key" out to key on everything the plugin is sent)'))),
  /** entries kept per binding (least recently used go first) */
  max_entries: v.optional(v.pipe(v.number('expected a number of entries'), v.integer('expected a whole number of entries'), v.minValue(1, 'expected at least 1'), v.maxValue(10_000_000, 'expected at most 10000000'))),
});

const HookNames = v.array(v.picklist(['on_request', 'on_response', 'on_connect', 'on_disconnect'], 'expected on_request, on_response, on_connect or on_disconnect'));

/** A plugin run by something else (systemd, a sidecar), reached at its socket. */
const AttachSchema = v.strictObject({
  /** the plugin's socket, as the plugin names it */
  socket: v.pipe(v.string(), v.minLength(1, 'expected a socket path')),
  /** the hooks it implements (there is no `ready` to say so) */
  hooks: HookNames,
  /** where the runner finds that socket, when it sees it under another path (containers) */
  socket_host_path: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** how often an unreachable plugin's socket is tried again */
  health_interval: v.optional(Duration, 2_000),
  /** the user id that may own the socket besides the runner's own user and root (a sidecar running as another user) */
  uid: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0, 'expected a user id'))),
});

const PluginSchema = v.pipe(
  v.strictObject({
    /** an executable */
    path: v.optional(v.pipe(v.string(), v.minLength(1, 'expected a non-empty path'))),
    /** argv: the program and its first arguments */
    command: v.optional(v.pipe(v.array(v.string()), v.minLength(1, 'expected at least the program'))),
    args: v.optional(v.array(v.string()), []),
    env: v.optional(v.record(v.string(), v.string()), {}),
    /** start with the runner's whole environment instead of a minimal one (PATH, HOME, LANG, LC_*, TZ, TMPDIR) */
    inherit_env: v.optional(v.boolean()),
    cwd: v.optional(v.string()),
    on_error: v.optional(OnError, 'deny'),
    with_body: v.optional(v.boolean(), false),
    sha256: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex digits'), v.toLowerCase())),
    autostart: v.optional(v.boolean(), false),
    /** how long a started plugin may take to send `ready` before it is restarted */
    ready_timeout: v.optional(Duration, 10_000),
    /** Unix-socket connections per plugin */
    pool_size: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)), 16),
    /** with `gateway.workers`: each worker opens `pool_size` connections (default: they share `pool_size`, at least 1 each) */
    pool_per_worker: v.optional(v.boolean()),
    /** calls allowed to wait for a free connection when all are busy */
    queue_limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 1024),
    /** a plugin the runner does not start: reached at its socket */
    attach: v.optional(AttachSchema),
    /**
     * Development: restart the plugin when its code changes (`serve` from a
     * config file). `true`: its `path`, or the files its `command` names; a
     * list: those paths (files or folders) as well.
     */
    watch: v.optional(
      v.union([v.boolean(), v.array(v.pipe(v.string(), v.minLength(1, 'expected a non-empty path')))], 'expected true, false or a list of paths to watch'),
    ),
    /** verdict cache defaults for every binding of this plugin */
    cache: v.optional(CacheSchema),
    /**
     * the hooks the plugin implements, known before it says `ready`: `[]`
     * declares a push-only plugin (its routes make no hook calls for it);
     * a list makes its routes fail closed for just those hooks until ready
     */
    hooks: v.optional(HookNames),
  }),
  v.check(
    (p) => [p.path, p.command, p.attach].filter((x) => x !== undefined).length === 1,
    'expected exactly one of "path", "command" or "attach"',
  ),
  v.check((p) => !(p.attach && p.watch), '"watch" is for plugins the runner starts; an attached plugin (attach) is restarted by whoever runs it'),
  v.check((p) => !(p.attach && p.hooks), 'an attached plugin lists its hooks in "attach.hooks", not "hooks"'),
);

const BindingSchema = v.union(
  [
    v.pipe(v.string(), v.minLength(1)),
    v.strictObject({
      plugin: v.pipe(v.string(), v.minLength(1)),
      on_error: v.optional(OnError),
      with_body: v.optional(v.boolean()),
      /** overrides the plugin's `cache`, field by field */
      cache: v.optional(CacheSchema),
    }),
  ],
  'expected a plugin name or { plugin, on_error?, with_body?, cache? }',
);

const ProxyAction = v.strictObject({
  type: v.literal('proxy'),
  upstream: v.pipe(v.string(), v.minLength(1)),
  fallback: v.optional(v.string()),
  timeout: v.optional(Duration, 30_000),
  /** self-hosted gateway: requests of this action in flight to each upstream host:port at once */
  max_connections: v.optional(ConnectionCount(1), 1024),
  /** self-hosted gateway: how long a request waits for one of them before `503 upstream busy` (0: not at all) */
  queue_timeout: v.optional(Duration, 5_000),
  /** self-hosted gateway: "h2" speaks HTTP/2 to the upstream (h2c on http://, ALPN on https://) */
  proto: v.optional(v.picklist(['http1', 'h2'], 'expected "http1" or "h2"')),
});
/** L4 pass-through (`config-listeners.ts` has its rules) */
const PassAction = v.strictObject({
  type: v.literal('pass'),
  /** "host:port", or "{target}" from the route's balancer */
  upstream: v.pipe(v.string(), v.regex(/^(\{target\}|[^/{}\s]+:\d{1,5})$/, 'expected "host:port" or "{target}"')),
  /** time to connect to the upstream */
  timeout: v.optional(Duration, 10_000),
});
const StaticAction = v.strictObject({
  type: v.literal('static'),
  status: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(599)), 200),
  body: v.optional(v.string(), ''),
  headers: v.optional(HeaderValues, {}),
});
const RedirectAction = v.strictObject({
  type: v.literal('redirect'),
  to: v.pipe(v.string(), v.minLength(1)),
  status: v.optional(v.picklist([301, 302, 303, 307, 308], 'expected 301, 302, 303, 307 or 308'), 302),
});
const ActionSchema = v.variant('type', [ProxyAction, StaticAction, RedirectAction, ServeAction, DropAction, PassAction], 'expected an action with type "proxy", "static", "redirect", "serve", "drop" or "pass"');

const BalancerSchema = v.strictObject({
  type: v.optional(v.picklist(['roundrobin', 'random', 'leastconn'], 'expected "roundrobin", "random" or "leastconn"'), 'roundrobin'),
  targets: v.optional(v.array(Target), []),
  /** where the group key of grouped pools comes from: `header:Name` or `var:name` */
  group_by: v.optional(v.pipe(v.string(), v.regex(/^(header|var):.+$/, 'expected "header:<Name>" or "var:<name>"'))),
  /** a group key that names no pushed group (or no key): `deny` answers 503 (the default), `all` picks from every target */
  unknown_group: v.optional(v.picklist(['deny', 'all'], 'expected "deny" or "all"')),
});

const RouteSchema = v.strictObject({
  id: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9._~-]+$/, 'expected letters, digits, ".", "_", "~" or "-"'))),
  match: v.optional(
    v.strictObject({
      domain: v.optional(v.string()),
      path: v.optional(v.string()),
      methods: v.optional(v.array(v.pipe(v.string(), v.regex(/^[A-Za-z]+$/, 'expected an HTTP method'), v.toUpperCase()))),
      /** compare the path case-insensitively (ASCII), for upstreams that do */
      case_insensitive: v.optional(v.boolean()),
      /** accept `%2F` / `%5C` in the path (they are never separators); refused with 400 otherwise */
      allow_encoded_slash: v.optional(v.boolean()),
    }),
    {},
  ),
  plugins: v.optional(v.array(BindingSchema), []),
  /** request headers removed before plugins and the upstream see the request (with `gateway.strip_request_headers`) */
  strip_request_headers: v.optional(v.array(HeaderName)),
  plugin_timeout: v.optional(Duration, 5_000),
  set: v.optional(v.record(v.string(), v.string()), {}),
  balancer: v.optional(BalancerSchema),
  action: v.union([v.pipe(v.string(), v.minLength(1)), ActionSchema], 'expected an action name or an inline action'),
  edge_on_error: v.optional(
    v.strictObject({
      status: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(599)), 503),
      body: v.optional(v.string(), DENY_BODY),
    }),
    {},
  ),
});

const KeySchema = v.pipe(
  v.strictObject({
    id: v.pipe(v.string(), v.minLength(1)),
    secret: v.optional(v.pipe(v.string(), v.minLength(16, 'expected at least 16 characters'))),
    secret_env: v.optional(v.pipe(v.string(), v.minLength(1))),
    /** ms since the epoch after validation */
    expires_at: v.optional(Timestamp),
  }),
  v.check((k) => (k.secret === undefined) !== (k.secret_env === undefined), 'expected exactly one of "secret" or "secret_env"'),
);

/**
 * `gateway.acme`: certificates for the routes' exact domains from an ACME CA
 * (node-runner/gateway/acme.ts). `storage` defaults to `<state dir>/acme`;
 * relative paths are against the config file's folder.
 */
const AcmeSchema = v.strictObject({
  /** the account's contact, where the CA writes about expiring certificates */
  email: v.pipe(v.string(), v.regex(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, 'expected an email address, such as "ops@example.com"')),
  /** the CA's ACME directory URL (https) */
  directory: v.pipe(v.string(), v.check((u) => URL.canParse(u) && new URL(u).protocol === 'https:', 'expected the https URL of an ACME directory')),
  /** where the account key, the certificates and the challenges in flight are kept (a private dir) */
  storage: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** PEM file of CA certificates trusted for the directory's own TLS, instead of the system's (a private CA) */
  ca: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** renew when a certificate has less than this left (default: a third of its lifetime) */
  renew_before: v.optional(Duration),
  /** how the CA checks the domain: http-01 (port 80, default) or tls-alpn-01 (port 443) */
  challenge: v.optional(v.picklist(['http-01', 'tls-alpn-01'], 'expected "http-01" or "tls-alpn-01"'), 'http-01'),
  /** the certificates' key: ECDSA P-256 (default) or RSA 2048 */
  key_type: v.optional(v.picklist(['ecdsa', 'rsa'], 'expected "ecdsa" or "rsa"'), 'ecdsa'),
});

const WORKERS = 'expected a whole number of workers from 1 to 256, or "auto"';

export const ConfigSchema = v.strictObject({
  gateway: v.optional(
    v.strictObject({
      listen: v.optional(Listen, '127.0.0.1:8080'),
      /** TLS on `listen` (the one-listener shorthand of `listeners`) */
      tls: v.optional(TlsSchema),
      /** several listeners, each plain or TLS; instead of `listen`/`tls` */
      listeners: v.optional(v.array(ListenerSchema(Listen))),
      /** time to receive a request's complete head (nginx's client_header_timeout); 0: no limit */
      header_timeout: v.optional(Duration, 10_000),
      /** longest pause between two reads of a request body (nginx's client_body_timeout); 0: no limit */
      body_timeout: v.optional(Duration, 30_000),
      /** open connections per client IP address; 0: no limit */
      max_connections_per_client: v.optional(ConnectionCount(0), 512),
      /** request headers removed on every route, before plugins and the upstream see the request */
      strip_request_headers: v.optional(v.array(HeaderName), []),
      /** request headers whose name holds "_": `drop` (the default, as nginx) or `allow` */
      underscores_in_headers: v.optional(v.picklist(['drop', 'allow'], 'expected "drop" or "allow"'), 'drop'),
      /**
       * gateway processes sharing the listen port (Linux, SO_REUSEPORT): a
       * number, or "auto" for one per available core. 1 (the default)
       * serves from the runner's own process.
       */
      workers: v.optional(
        v.union(
          [v.pipe(v.number(), v.integer(WORKERS), v.minValue(1, WORKERS), v.maxValue(256, WORKERS)), v.literal('auto')],
          WORKERS,
        ),
        1,
      ),
      acme: v.optional(AcmeSchema),
    }),
    {},
  ),
  runner: v.optional(
    v.strictObject({
      listen: v.optional(Listen),
      keys: v.optional(v.array(KeySchema), []),
      /**
       * Programs (and attached sockets) a config stream may name, as
       * absolute paths or globs. Local: read from the bootstrap file of
       * `serve --config-url`, never from the stream.
       */
      plugins_allowed: v.optional(
        v.array(v.pipe(v.string(), v.check((p) => p.startsWith('/'), 'expected an absolute path or glob, such as "/opt/hookgate/plugins/*"'))),
      ),
    }),
    {},
  ),
  admin: v.optional(
    v.pipe(
      v.strictObject({
        listen: v.optional(Listen, '127.0.0.1:9090'),
        /** bearer keys for /api/* and /metrics (same shape as runner.keys); required off loopback */
        keys: v.optional(v.array(KeySchema), []),
      }),
      v.check(
        (a) => isLoopbackListen(a.listen) || a.keys.length > 0,
        'admin.listen is not a loopback address, so anyone who reaches it could read the config and restart plugins: set admin.keys (bearer keys, like runner.keys), or listen on 127.0.0.1',
      ),
    ),
    {},
  ),
  /**
   * local: logging of this process, read at start (HOOKGATE_LOG_LEVEL and
   * HOOKGATE_LOG_FORMAT override level and format); never carried by a
   * config stream or etcd
   */
  log: v.optional(
    v.strictObject({
      level: v.optional(v.picklist(['debug', 'info', 'warn', 'error'], 'expected "debug", "info", "warn" or "error"')),
      format: v.optional(v.picklist(['json', 'pretty'], 'expected "json" or "pretty"')),
      /** one access line per request (self-hosted gateway); a reload applies it */
      access: v.optional(v.boolean(), false),
      /** the query string in access lines too (off: it may carry tokens) */
      access_query: v.optional(v.boolean(), false),
    }),
    {},
  ),
  /** local: what is recorded for /metrics, read at start */
  metrics: v.optional(
    v.strictObject({
      /** per-request metrics (requests, durations, bytes, upstream and hook call times); off: only the state gauges */
      requests: v.optional(v.boolean(), true),
    }),
    {},
  ),
  routes: v.optional(v.array(RouteSchema), []),
  actions: v.optional(v.record(v.string(), ActionSchema), {}),
  plugins: v.optional(v.record(v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]+$/, 'expected a plugin name of letters, digits, ".", "_" or "-"')), PluginSchema), {}),
  /**
   * A folder whose executables matching `plugins_glob` (default "*") are
   * registered as plugins named after their files; entries in `plugins`
   * with the same name take precedence. Expanded where files are read.
   */
  plugins_dir: v.optional(v.pipe(v.string(), v.minLength(1))),
  plugins_glob: v.optional(v.pipe(v.string(), v.minLength(1))),
});

type Parsed = v.InferOutput<typeof ConfigSchema>;
export type PluginConfig = Parsed['plugins'][string];
export type Action = v.InferOutput<typeof ActionSchema>;
export type BalancerConfig = v.InferOutput<typeof BalancerSchema>;
/** The self-hosted gateway's listener settings (`gateway`), defaults filled in. */
export type GatewaySettings = Parsed['gateway'];
/** `gateway.acme` as validated (absent: no ACME). */
export type AcmeSettings = NonNullable<GatewaySettings['acme']>;

/** A cache block as written (plugin defaults or a binding's overrides), durations in ms. */
export type CacheConfig = v.InferOutput<typeof CacheSchema>;

/** A binding's verdict cache after merging the plugin's defaults with the route's overrides. */
export interface CacheSettings {
  /** ms an allow verdict is reused (0: allows are not cached) */
  ttl: number;
  /** ms a deny, drop or fallback verdict is reused (0: not cached) */
  negative_ttl: number;
  /** ms past expiry a verdict may stand in for a failed call */
  stale_if_error: number;
  /** the key parts, or null for everything the plugin is sent */
  key: string[] | null;
  max_entries: number;
}

/** Entries a binding's cache keeps when its config does not say. */
export const DEFAULT_CACHE_ENTRIES = 10_000;

/**
 * Merges a plugin's cache defaults with a binding's overrides, field by
 * field: null when nothing would be cached (no ttl and no negative_ttl).
 *
 * @example
 * resolveCache({ ttl: 30_000, stale_if_error: 300_000 }, { ttl: 5_000 }) // { ttl: 5000, negative_ttl: 0, stale_if_error: 300000, key: null, max_entries: 10000 }
 */
export function resolveCache(plugin: CacheConfig | undefined, binding: CacheConfig | undefined): CacheSettings | null {
  if (!plugin && !binding) return null;
  const pick = <K extends keyof CacheConfig>(k: K): CacheConfig[K] => (binding?.[k] !== undefined ? binding[k] : plugin?.[k]);
  const ttl = pick('ttl') ?? 0;
  const negative_ttl = pick('negative_ttl') ?? 0;
  if (ttl <= 0 && negative_ttl <= 0) return null;
  return { ttl, negative_ttl, stale_if_error: pick('stale_if_error') ?? 0, key: pick('key') ?? null, max_entries: pick('max_entries') ?? DEFAULT_CACHE_ENTRIES };
}

/** A route's binding of one plugin, defaults filled in from the plugin. */
export interface Binding {
  plugin: string;
  on_error: 'deny' | 'allow';
  with_body: boolean;
  /** the verdict cache of this binding; absent when it caches nothing */
  cache?: CacheSettings;
}

/** A route after validation: id filled in, bindings normalized. */
export interface Route extends Omit<Parsed['routes'][number], 'id' | 'plugins'> {
  id: string;
  /** index in `routes`, which is also the default id */
  index: number;
  plugins: Binding[];
  /** the action's name when the route names one, else '' */
  actionName: string;
}

/** A validated config, defaults filled in. */
export interface Config extends Omit<Parsed, 'routes'> {
  routes: Route[];
}

/**
 * Validates a config (already parsed from JSON5 or received as JSON) and
 * fills in defaults. Throws `BAD_CONFIG` whose `problems` lists every
 * problem found, each starting with the path of the field.
 *
 * @example
 * try { const cfg = parseConfig(JSON5.parse(text)); }
 * catch (e) { if (e instanceof ConfigError) for (const p of e.problems) console.error(p); }
 */
export function parseConfig(input: unknown): Config {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError(['(config): expected an object with routes, actions, plugins, ...']);
  }
  const res = v.safeParse(ConfigSchema, input, { abortEarly: false, abortPipeEarly: true });
  // Reference checks read the raw input, so they run (and report) even when
  // the schema found problems elsewhere: every problem is listed at once.
  const problems = [...(res.success ? [] : res.issues.map(describe)), ...referenceProblems(input as Record<string, unknown>)];
  if (!res.success || problems.length) throw new ConfigError(inFileOrder(problems, input as Record<string, unknown>));
  const raw = res.output;
  const routes: Route[] = raw.routes.map((r, index) => {
    const plugins: Binding[] = r.plugins.map((b) => {
      const name = typeof b === 'string' ? b : b.plugin;
      const p = raw.plugins[name];
      const over: { on_error?: 'deny' | 'allow'; with_body?: boolean; cache?: CacheConfig } = typeof b === 'string' ? {} : b;
      const binding: Binding = { plugin: name, on_error: over.on_error ?? p.on_error, with_body: over.with_body ?? p.with_body };
      const cache = resolveCache(p.cache, over.cache);
      if (cache) binding.cache = cache;
      return binding;
    });
    const actionName = typeof r.action === 'string' ? r.action : '';
    return { ...r, id: r.id ?? String(index), index, plugins, actionName };
  });
  return { ...raw, routes };
}

/** A config that failed validation; `problems` has one line per problem, each naming its field. */
export class ConfigError extends HookgateError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('BAD_CONFIG', `invalid config:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}
