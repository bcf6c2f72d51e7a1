/**
 * @module etcd
 * etcd v3 as a config source: the key layout, the connection settings the
 * commands share (`--etcd`, TLS, auth), and reading or writing a whole
 * config as keys. The client is the `etcd3` package (gRPC), loaded only
 * when a command uses etcd.
 *
 * **Layout** under a prefix (default `/hookgate/`): one key per item, the
 * kinds the config stream carries (docs/protocol.md §3); listeners stay
 * local to each runner.
 *
 *     /hookgate/routes/<id>     {"match":…,"action":…,"order":0}   (order: explicit, first match wins)
 *     /hookgate/actions/<name>  {"type":"proxy",…}
 *     /hookgate/plugins/<name>  {"path":"/opt/…",…}
 *     /hookgate/keys/<id>       {"secret_env":"…"}
 *
 * Values are JSON objects in the config-input form (as in a config file,
 * without the id). An item's version is its key's `mod_revision`; the
 * config's version is the store's revision, so a change of several keys in
 * one transaction is one version.
 */

import { readFileSync } from 'node:fs';
import type { Etcd3, IOptions } from 'etcd3';
import { KINDS, type Kind } from '../../src/core/config/config-doc.ts';
import { HookgateError } from '../../src/core/errors.ts';
import { isLoopbackHost } from './config-tls.ts';

export const DEFAULT_PREFIX = '/hookgate/';
/** etcd's own default for `--max-txn-ops`. */
export const DEFAULT_MAX_TXN_OPS = 128;

/** The command-line options every etcd command takes (parseArgs form). */
export const ETCD_OPTIONS = {
  'etcd-prefix': { type: 'string', default: DEFAULT_PREFIX },
  'etcd-cacert': { type: 'string' },
  'etcd-cert': { type: 'string' },
  'etcd-key': { type: 'string' },
  'etcd-user': { type: 'string' },
  'etcd-password-env': { type: 'string' },
  'insecure-etcd': { type: 'boolean', default: false },
} as const;

export const ETCD_HELP = `etcd connection (any command that takes --etcd):
  --etcd-prefix P          the keys' prefix (default ${DEFAULT_PREFIX})
  --etcd-cacert FILE       trust these CAs for https endpoints
  --etcd-cert FILE         client certificate (with --etcd-key)
  --etcd-key FILE          its private key
  --etcd-user NAME         etcd user; the password is read from the
  --etcd-password-env VAR  environment variable VAR
  --insecure-etcd          allow http:// to an endpoint that is not loopback
`;

export interface EtcdSettings {
  hosts: string[];
  prefix: string;
  options: IOptions;
}

type EtcdValues = { [K in keyof typeof ETCD_OPTIONS]?: (typeof ETCD_OPTIONS)[K] extends { type: 'boolean' } ? boolean : string };

/**
 * Checks the endpoints (`http(s)://host:port`, comma-separated) and the
 * connection options; throws an Error naming what is wrong (the CLI turns
 * it into a usage error). Plain http goes only to loopback endpoints
 * unless `--insecure-etcd`: a config source can start plugins.
 */
export function etcdSettings(endpoints: string, flag: string, values: EtcdValues, env: NodeJS.ProcessEnv = process.env): EtcdSettings {
  const hosts = endpoints
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  if (!hosts.length) throw new Error(`${flag}: expected one or more endpoints such as http://127.0.0.1:2379`);
  for (const h of hosts) {
    let url: URL;
    try {
      url = new URL(h);
    } catch {
      throw new Error(`${flag}: "${h}" is not a URL; expected http(s)://host:port`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${flag}: "${h}": expected http:// or https://`);
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname) && !values['insecure-etcd']) {
      throw new Error(`${flag}: refusing plain http to ${url.host}, which is not a loopback address (anyone on the path could change what runners run); use https with --etcd-cacert, or pass --insecure-etcd to accept the risk`);
    }
  }
  const prefix = values['etcd-prefix'] ?? DEFAULT_PREFIX;
  if (!prefix.endsWith('/')) throw new Error(`--etcd-prefix: expected a prefix ending in "/", got "${prefix}"`);
  const read = (opt: 'etcd-cacert' | 'etcd-cert' | 'etcd-key') => {
    const file = values[opt] as string | undefined;
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`--${opt}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const options: IOptions = {
    hosts,
    dialTimeout: 5_000,
    // Notice a dead member or a partition within seconds, not when TCP gives up.
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000, 'grpc.keepalive_permit_without_calls': 1 },
  };
  const ca = read('etcd-cacert');
  const cert = read('etcd-cert');
  const key = read('etcd-key');
  if (!!cert !== !!key) throw new Error('--etcd-cert and --etcd-key go together');
  if (ca || cert) {
    if (!hosts.every((h) => h.startsWith('https:'))) throw new Error('--etcd-cacert / --etcd-cert need https:// endpoints');
    options.credentials = { rootCertificate: ca ?? Buffer.alloc(0), ...(cert ? { certChain: cert, privateKey: key } : {}) };
  }
  const user = values['etcd-user'] as string | undefined;
  const passwordEnv = values['etcd-password-env'] as string | undefined;
  if (!!user !== !!passwordEnv) throw new Error('--etcd-user and --etcd-password-env go together');
  if (user && passwordEnv) {
    const password = env[passwordEnv];
    if (!password) throw new Error(`--etcd-password-env: the environment variable ${passwordEnv} is not set`);
    options.auth = { username: user, password };
  }
  return { hosts, prefix, options };
}

/** A client (the etcd3 package is loaded here, on first use). Close it with `close()`. */
export async function openEtcd(settings: EtcdSettings): Promise<Etcd3> {
  const { Etcd3 } = await import('etcd3');
  return new Etcd3(settings.options);
}

/** One key as read from etcd. */
export interface EtcdKv {
  key: string;
  value: string;
  modRevision: number;
}

/** Every key under `prefix` at one revision (the response's), for a consistent snapshot. */
export async function readAll(client: Etcd3, prefix: string): Promise<{ revision: number; kvs: EtcdKv[] }> {
  const res = await client.getAll().prefix(prefix).exec();
  return {
    revision: Number(res.header.revision),
    kvs: res.kvs.map((kv) => ({ key: kv.key.toString('utf8'), value: kv.value.toString('utf8'), modRevision: Number(kv.mod_revision) })),
  };
}

/**
 * The config stream's `put` payload (config-doc.ts wire shape) for a set of
 * keys: each key's JSON value with `version` = its mod_revision. Keys that
 * are not `<prefix><kind>/<id>` with a JSON object value are returned as
 * problems (and left out), naming the key.
 */
export function putOf(kvs: Iterable<EtcdKv>, prefix: string): { put: Record<Kind, Record<string, Record<string, unknown>>>; problems: string[] } {
  const put = Object.fromEntries(KINDS.map((k) => [k, {}])) as Record<Kind, Record<string, Record<string, unknown>>>;
  const problems: string[] = [];
  for (const kv of kvs) {
    const rest = kv.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    const kind = rest.slice(0, slash) as Kind;
    const id = rest.slice(slash + 1);
    if (!kv.key.startsWith(prefix) || slash <= 0 || !KINDS.includes(kind) || !id) {
      problems.push(`${kv.key}: not a hookgate key (expected ${prefix}<${KINDS.join('|')}>/<id>); ignored`);
      continue;
    }
    let data: unknown;
    try {
      data = JSON.parse(kv.value);
    } catch {
      problems.push(`${kv.key}: the value is not JSON; ignored`);
      continue;
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      problems.push(`${kv.key}: expected a JSON object; ignored`);
      continue;
    }
    const { version: _v, ...item } = data as Record<string, unknown>;
    put[kind][id] = { ...item, version: kv.modRevision };
  }
  return { put, problems };
}

/** The key of one item. */
export function keyOf(prefix: string, kind: Kind, id: string): string {
  return `${prefix}${kind}/${id}`;
}

/**
 * Writes `items` (config-doc `itemsOf` form) as the whole config under
 * `prefix` in one transaction: every item's key put, every other key under
 * the prefix deleted. Returns the new revision. Refuses, before writing,
 * a transaction of more than `maxTxnOps` operations (etcd's
 * `--max-txn-ops`), naming both numbers.
 */
export async function writeAll(client: Etcd3, prefix: string, items: Record<Kind, Map<string, Record<string, unknown>>>, maxTxnOps = DEFAULT_MAX_TXN_OPS): Promise<{ revision: number; put: number; deleted: number }> {
  const { kvs } = await readAll(client, prefix);
  const wanted = new Map<string, string>();
  for (const kind of KINDS) for (const [id, data] of items[kind]) wanted.set(keyOf(prefix, kind, id), JSON.stringify(data));
  const gone = kvs.filter((kv) => !wanted.has(kv.key)).map((kv) => kv.key);
  const ops = wanted.size + gone.length;
  if (ops > maxTxnOps) {
    throw new HookgateError(
      'BAD_CONFIG',
      `the config needs ${ops} etcd operations (${wanted.size} keys to write, ${gone.length} to delete) but one transaction may hold ${maxTxnOps}; start etcd with a larger --max-txn-ops and pass the same --max-txn-ops here`,
    );
  }
  const txn = client.if(prefix, 'Create', '>', -1); // always true: the transaction is for atomicity only
  const res = await txn.then(...[...wanted].map(([k, v]) => client.put(k).value(v)), ...gone.map((k) => client.delete().key(k))).commit();
  return { revision: Number(res.header.revision), put: wanted.size, deleted: gone.length };
}
