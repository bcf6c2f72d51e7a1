/**
 * @module commands/plugin-call
 * `hookgate plugin-call <plugin>`: starts one plugin as the runner does
 * (configure, ready), makes one hook call and prints the reply as JSON.
 */

import { resolve } from 'node:path';
import { HOOK, type HookName } from '../../../src/core/protocol/protocol.ts';
import { isHookgateError } from '../../../src/core/errors.ts';
import { parseDuration, type PluginConfig } from '../../../src/core/config/config.ts';
import { decodeHookResult, encodeHookData, unpackValue } from '../../../src/core/protocol/codec.ts';
import { canonicalHeaderMap } from '../../../src/core/protocol/headers.ts';
import { createLogger } from '../../log.ts';
import { PluginProcess } from '../../plugin/process.ts';
import { SocketPool } from '../../plugin/pool.ts';
import { Reaper } from '../../plugin/reaper.ts';
import { command, UsageError } from './kit.ts';

export default command({
  help: `usage: hookgate plugin-call <plugin> [--route ID] [--hook on_request|on_response|on_connect|on_disconnect]
                            [--data JSON] [--timeout 5s] [--env NAME=VALUE]... [--quiet] [-- plugin args...]

Starts the plugin as the runner does, sends configure, waits for ready,
makes one hook call with --data (JSON with the hook's short keys,
docs/protocol.md §1.6), prints the plugin's reply as JSON on stdout and
stops the plugin. The plugin's stderr is copied to plugin-call's own
stderr as it comes (--quiet / -q hides it). Exit 1 when the plugin fails
to start, to answer in time or answers garbage.
`,
  positionals: 1,
  options: {
    route: { type: 'string', default: '' },
    hook: { type: 'string', default: 'on_request' },
    data: { type: 'string', default: '{}' },
    timeout: { type: 'string', default: '5s' },
    env: { type: 'string', multiple: true, default: [] },
    quiet: { type: 'boolean', short: 'q', default: false },
  },
  async run({ values, positionals, rest }) {
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

    const log = createLogger({ name: 'plugin-call', level: 'warn' });
    const config: PluginConfig = {
      path: resolve(positionals[0]),
      args: rest,
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
    onStderr: values.quiet ? () => {} : (line) => process.stderr.write(`${line}\n`),
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
  },
});

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

