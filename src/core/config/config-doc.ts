/**
 * @module config-doc
 * The config as a config stream carries it (docs/protocol.md §3): items of four
 * kinds (routes, actions, plugins, keys), each with an id and its own
 * version, changed by `put` (the whole set), `patch` and `delete` events.
 * This module owns the item model and the version rules; turning items
 * into a config input (merged with the local listener settings) is here
 * too, so the config server and the runner agree on it. Validation is
 * `parseConfig`'s; transport (SSE) is the node runner's.
 *
 * Wire shapes (JSON):
 * - put: `{ "routes": { "<id>": {...route, "version": N, "order": K} }, "actions": { "<name>": {...action, "version": N} }, "plugins": { "<name>": {..., "version": N} }, "keys": { "<id>": {..., "version": N} } }`
 * - patch: `{ "path": "<kind>/<id>", "data": { ..., "version": N } }`
 * - delete: `{ "path": "<kind>/<id>", "version": N }`
 *
 * Routes are ordered (first match wins): a route item carries `order`; a
 * route patched in without one goes after every other route.
 */

import { HookgateError } from '../errors.ts';

export const KINDS = ['routes', 'actions', 'plugins', 'keys'] as const;
export type Kind = (typeof KINDS)[number];

/** One item: its data (as in a config file, without `version`/`order`) and version. */
export interface Item {
  version: number;
  data: Record<string, unknown>;
  /** routes only: position in the route list */
  order?: number;
}

/** The items held, by kind and id, plus tombstones of deleted ones. */
export interface ConfigDoc {
  items: Record<Kind, Map<string, Item>>;
  /** version of each deleted item, so an older patch cannot bring it back */
  tombstones: Record<Kind, Map<string, number>>;
}

/** An empty document. */
export function emptyDoc(): ConfigDoc {
  const items = {} as ConfigDoc['items'];
  const tombstones = {} as ConfigDoc['tombstones'];
  for (const k of KINDS) {
    items[k] = new Map();
    tombstones[k] = new Map();
  }
  return { items, tombstones };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(message: string): never {
  throw new HookgateError('BAD_PAYLOAD', message);
}

/** Splits an item's wire form into data, version and order. Throws `BAD_PAYLOAD`. */
function itemOf(where: string, raw: unknown, kind: Kind): Item {
  if (!isObject(raw)) bad(`${where}: expected an object`);
  const { version, order, ...data } = raw;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) bad(`${where}.version: expected a non-negative integer`);
  if (order !== undefined && (kind !== 'routes' || typeof order !== 'number' || !Number.isFinite(order))) {
    bad(`${where}.order: only routes carry an order, a number`);
  }
  return { version, data, order: order as number | undefined };
}

/** Parses `"<kind>/<id>"`. Throws `BAD_PAYLOAD`. */
export function parsePath(path: unknown): { kind: Kind; id: string } {
  if (typeof path !== 'string') bad('path: expected "<kind>/<id>"');
  const slash = path.indexOf('/');
  const kind = path.slice(0, slash) as Kind;
  const id = path.slice(slash + 1);
  if (slash <= 0 || !KINDS.includes(kind) || !id) bad(`path "${path}": expected "<kind>/<id>" with kind one of ${KINDS.join(', ')}`);
  return { kind, id };
}

/**
 * Applies a `put`: the result holds exactly the put's items. Items absent
 * from the put are deleted (and tombstoned at their last version). Throws
 * `BAD_PAYLOAD` (nothing applied) when the event is malformed.
 *
 * @example
 * const next = applyPut(doc, JSON.parse(event.data));
 */
export function applyPut(doc: ConfigDoc, put: unknown): ConfigDoc {
  if (!isObject(put)) bad('put: expected an object of kinds');
  const next = emptyDoc();
  for (const key of Object.keys(put)) if (!KINDS.includes(key as Kind)) bad(`put: unknown kind "${key}"`);
  for (const kind of KINDS) {
    const raw = put[kind] ?? {};
    if (!isObject(raw)) bad(`put.${kind}: expected an object of items by id`);
    for (const [id, item] of Object.entries(raw)) next.items[kind].set(id, itemOf(`put.${kind}.${id}`, item, kind));
    for (const [id, v] of doc.tombstones[kind]) if (!next.items[kind].has(id)) next.tombstones[kind].set(id, v);
    for (const [id, old] of doc.items[kind]) if (!next.items[kind].has(id)) next.tombstones[kind].set(id, old.version);
  }
  return next;
}

/**
 * Applies a `patch`: adds or replaces one item, unless its version is not
 * greater than the one held (or tombstoned) for that item; then the doc is
 * returned unchanged (`applied: false`). Throws `BAD_PAYLOAD` when malformed.
 */
export function applyPatch(doc: ConfigDoc, patch: unknown): { doc: ConfigDoc; applied: boolean } {
  if (!isObject(patch)) bad('patch: expected {path, data}');
  const { kind, id } = parsePath(patch.path);
  const item = itemOf(`patch ${kind}/${id}`, patch.data, kind);
  const held = doc.items[kind].get(id)?.version ?? doc.tombstones[kind].get(id);
  if (held !== undefined && item.version <= held) return { doc, applied: false };
  const next = cloneDoc(doc);
  if (kind === 'routes' && item.order === undefined) {
    const old = doc.items.routes.get(id);
    item.order = old?.order ?? Math.max(-1, ...[...doc.items.routes.values()].map((r) => r.order ?? 0)) + 1;
  }
  next.items[kind].set(id, item);
  next.tombstones[kind].delete(id);
  return { doc: next, applied: true };
}

/**
 * Applies a `delete`: removes one item and keeps a tombstone, unless the
 * version is not greater than the one held. Throws `BAD_PAYLOAD` when malformed.
 */
export function applyDelete(doc: ConfigDoc, del: unknown): { doc: ConfigDoc; applied: boolean } {
  if (!isObject(del)) bad('delete: expected {path, version}');
  const { kind, id } = parsePath(del.path);
  const version = del.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) bad(`delete ${kind}/${id}: version: expected a non-negative integer`);
  const held = doc.items[kind].get(id)?.version ?? doc.tombstones[kind].get(id);
  if (held !== undefined && version <= held) return { doc, applied: false };
  const next = cloneDoc(doc);
  next.items[kind].delete(id);
  next.tombstones[kind].set(id, version);
  return { doc: next, applied: true };
}

function cloneDoc(doc: ConfigDoc): ConfigDoc {
  const next = emptyDoc();
  for (const k of KINDS) {
    for (const [id, v] of doc.items[k]) next.items[k].set(id, v);
    for (const [id, v] of doc.tombstones[k]) next.tombstones[k].set(id, v);
  }
  return next;
}

/**
 * The config input a document stands for, ready for `parseConfig`: routes
 * in `order` (ties by id) with their ids, actions and plugins by name, keys
 * as a list; plus the local settings (listeners) that never come from a
 * stream.
 *
 * @example
 * const config = parseConfig(configInput(doc, { gateway: { listen: '127.0.0.1:8080' } }));
 */
export function configInput(doc: ConfigDoc, local: Record<string, unknown> = {}): Record<string, unknown> {
  const routes = [...doc.items.routes.entries()]
    .sort(([a, x], [b, y]) => (x.order ?? 0) - (y.order ?? 0) || (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, r]) => ({ ...r.data, id }));
  const byName = (kind: 'actions' | 'plugins') => Object.fromEntries([...doc.items[kind].entries()].map(([id, v]) => [id, v.data]));
  const keys = [...doc.items.keys.entries()].map(([id, k]) => ({ ...k.data, id }));
  const runner = { ...((local.runner as Record<string, unknown> | undefined) ?? {}), keys };
  return { ...local, runner, routes, actions: byName('actions'), plugins: byName('plugins') };
}

/**
 * The items of a config input (for the config server): routes by id with
 * their order, actions and plugins by name, keys by id. Versions are the
 * caller's business (see `versionItems`).
 */
export function itemsOf(input: { routes?: unknown[]; actions?: Record<string, unknown>; plugins?: Record<string, unknown>; runner?: { keys?: unknown[] } }): Record<Kind, Map<string, Record<string, unknown>>> {
  const out = { routes: new Map(), actions: new Map(), plugins: new Map(), keys: new Map() } as Record<Kind, Map<string, Record<string, unknown>>>;
  (input.routes ?? []).forEach((r, i) => {
    const route = r as Record<string, unknown>;
    const id = typeof route.id === 'string' ? route.id : String(i);
    const { id: _id, ...data } = route;
    out.routes.set(id, { ...data, order: i });
  });
  for (const [name, a] of Object.entries(input.actions ?? {})) out.actions.set(name, a as Record<string, unknown>);
  for (const [name, p] of Object.entries(input.plugins ?? {})) out.plugins.set(name, p as Record<string, unknown>);
  for (const k of input.runner?.keys ?? []) {
    const { id, ...data } = k as Record<string, unknown>;
    out.keys.set(String(id), data);
  }
  return out;
}

/**
 * JSON with object keys sorted, so equal data gives equal text however it
 * was ordered (in a file, or on the wire). Used to tell whether an item or
 * a whole config changed.
 *
 * @example
 * canonicalJson({ b: 1, a: [2] }) === canonicalJson({ a: [2], b: 1 }) // true
 */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
