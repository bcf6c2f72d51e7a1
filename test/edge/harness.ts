/**
 * @module test/edge/harness
 * The edge worker under test: the BUILT bundle (`dist/worker/worker.js`,
 * what wrangler deploys) run by Miniflare, talking to real runner
 * processes. `startEdge` creates one Miniflare instance (one workerd
 * process, one isolate) with the worker's settings as bindings, collects
 * what the worker logs (its JSON lines), and is disposed with the scope.
 * Runner processes, upstreams, scopes, clients and polling come from the
 * shared helpers in test/helpers/.
 */

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import { KEY } from '../helpers/processes.ts';
import type { Scope } from '../helpers/scope.ts';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

export const WORKER = here('../../dist/worker/worker.js');

/** The compatibility date wrangler deploys with (from wrangler.toml), so Miniflare runs what production runs. */
export const COMPATIBILITY_DATE = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(readFileSync(here('../../wrangler.toml'), 'utf8'))?.[1] ?? '2026-10-01';

/** Fails with what to do when the worker bundle has not been built. */
export function assertWorkerBuilt(): void {
  if (!existsSync(WORKER)) {
    throw new Error(`${WORKER} does not exist: run \`npm run build:worker\` first (\`npm test\` does it in pretest)`);
  }
}

export interface EdgeOptions {
  /** runner base URLs, in RUNNER_URL order */
  runners: string[];
  /** RUNNER_KEY (default: the test key) */
  key?: string;
  transport: 'http' | 'ws';
  /** STATE_TTL_MS (default 200) */
  ttlMs?: number;
  /** HOOK_TIMEOUT_MS (default: the worker's) */
  hookTimeoutMs?: number;
  /** RUNNER_DOWN_MS (default: the worker's) */
  downMs?: number;
  /** persist Miniflare's resources (the Cache API among them) in this dir */
  persistDir?: string;
  /** bindings set as given, over the ones above (to try bad settings) */
  bindings?: Record<string, string>;
}

/** One JSON line the worker logged. */
export interface EdgeLog {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface EdgeReply {
  status: number;
  headers: Headers;
  text: string;
  json<T>(): T;
}

export interface Edge {
  mf: Miniflare;
  /** the worker's HTTP address ("http://127.0.0.1:PORT") */
  url: string;
  /** Sends a request to the worker and reads the whole reply; fails after `timeoutMs` (default 15 s) instead of hanging. */
  fetch(path: string, init?: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number }): Promise<EdgeReply>;
  logs: EdgeLog[];
  /** Disposes Miniflare (idempotent). */
  dispose(): Promise<void>;
}

/**
 * Starts the built worker in Miniflare with the given settings; resolves
 * once it listens. Disposed when the scope closes.
 *
 * @example
 * const edge = await startEdge(s, { runners: [runner.url], transport: 'http' });
 * const res = await edge.fetch('/api/me', { headers: { authorization: 'Bearer tok' } });
 */
export async function startEdge(s: Scope, opts: EdgeOptions): Promise<Edge> {
  assertWorkerBuilt();
  const bindings: Record<string, string> = {
    RUNNER_URL: opts.runners.join(','),
    RUNNER_KEY: opts.key ?? KEY,
    HOOK_TRANSPORT: opts.transport,
    STATE_TTL_MS: String(opts.ttlMs ?? 200),
    LOG_LEVEL: 'warn',
  };
  if (opts.hookTimeoutMs !== undefined) bindings.HOOK_TIMEOUT_MS = String(opts.hookTimeoutMs);
  if (opts.downMs !== undefined) bindings.RUNNER_DOWN_MS = String(opts.downMs);
  Object.assign(bindings, opts.bindings);
  const logs: EdgeLog[] = [];
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      scriptPath: WORKER,
      modules: true,
      compatibilityDate: COMPATIBILITY_DATE,
      bindings,
      durableObjects: { RUNNER_LINK: 'RunnerLink' },
      ...(opts.persistDir ? { resourcePersistencePath: opts.persistDir } : {}),
      handleStructuredLogs: (l) => {
        try {
          const parsed = JSON.parse(l.message) as EdgeLog;
          logs.push(typeof parsed === 'object' && parsed !== null ? parsed : { level: l.level, msg: l.message });
        } catch {
          logs.push({ level: l.level, msg: l.message });
        }
      },
    }),
  );
  let disposing: Promise<void> | null = null;
  const dispose = () => (disposing ??= mf.dispose());
  s.defer(dispose);
  const url = (await mf.ready).href.replace(/\/$/, '');
  return {
    mf,
    url,
    logs,
    dispose,
    async fetch(path, init = {}) {
      const timeoutMs = init.timeoutMs ?? 15_000;
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), timeoutMs);
      try {
        const res = await mf.dispatchFetch(`${url}${path}`, { method: init.method, headers: init.headers, body: init.body, signal: ctl.signal });
        const text = await res.text();
        return { status: res.status, headers: res.headers as unknown as Headers, text, json: <T>() => JSON.parse(text) as T };
      } catch (err) {
        if (ctl.signal.aborted) throw new Error(`the edge did not answer ${path} within ${timeoutMs} ms`);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
