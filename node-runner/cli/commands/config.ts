/**
 * @module commands/config
 * `hookgate config push FILE --etcd …` and `hookgate config get --etcd …`:
 * a config file written into etcd as keys (one transaction, keys no longer
 * in the file deleted), and the config in etcd printed back (etcd.ts has
 * the layout).
 */

import { applyPut, configInput, emptyDoc } from '../../../src/core/config/config-doc.ts';
import { ConfigError } from '../../../src/core/config/config.ts';
import { isHookgateError } from '../../../src/core/errors.ts';
import { readItems } from '../../config/config-server.ts';
import { DEFAULT_MAX_TXN_OPS, ETCD_HELP, ETCD_OPTIONS, etcdSettings, openEtcd, putOf, readAll, writeAll, type EtcdSettings } from '../../config/etcd.ts';
import { command, printConfigError, UsageError } from './kit.ts';

export default command({
  help: `usage: hookgate config push <config.json5> --etcd <http://host:2379,...> [--max-txn-ops N] [etcd connection options]
       hookgate config get --etcd <http://host:2379,...> [etcd connection options]

push: validates the file (as config-server does: the whole config, plugin
paths made absolute against the file's folder, runner keys only as
secret_env references) and writes its routes, actions, plugins and keys
under the prefix in one etcd transaction, deleting keys no longer in the
file; prints the new revision. Listeners stay out of etcd (each runner has
its own). Nothing is written when the file is invalid, or when the change
needs more operations than one transaction may hold (--max-txn-ops, etcd's
own default ${DEFAULT_MAX_TXN_OPS}: start etcd with a larger one for big configs).

get: prints the config in etcd (JSON, which is JSON5) with its revision.

${ETCD_HELP}`,
  positionals: 'any',
  options: {
    etcd: { type: 'string' },
    'max-txn-ops': { type: 'string' },
    ...ETCD_OPTIONS,
  },
  async run({ values, positionals }) {
    const [sub, file, ...extra] = positionals;
    if (sub !== 'push' && sub !== 'get') throw new UsageError(sub === undefined ? 'expected "push <file>" or "get"' : `unknown subcommand "${sub}"; expected "push <file>" or "get"`);
    if (sub === 'push' && !file) throw new UsageError('push needs the config file: hookgate config push <config.json5> --etcd <endpoints>');
    const stray = sub === 'get' ? file : extra[0];
    if (stray !== undefined) throw new UsageError(`unexpected argument "${stray}"`);
    if (!values.etcd) throw new UsageError(`${sub} needs --etcd <endpoints>, e.g. --etcd http://127.0.0.1:2379`);
    let settings: EtcdSettings;
    try {
      settings = etcdSettings(values.etcd, '--etcd', values);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const maxOps = values['max-txn-ops'] === undefined ? DEFAULT_MAX_TXN_OPS : Number(values['max-txn-ops']);
    if (!Number.isSafeInteger(maxOps) || maxOps < 1) throw new UsageError(`--max-txn-ops: expected a positive integer, got "${values['max-txn-ops']}"`);
    if (sub === 'push') {
      let items;
      try {
        items = await readItems(file!, (w) => process.stderr.write(`${file}: warning: ${w}\n`));
      } catch (err) {
        if (err instanceof ConfigError) {
          printConfigError(file!, err, 'hookgate config push: ');
          return 1;
        }
        throw err;
      }
      return withClient(settings, async (client) => {
        try {
          const r = await writeAll(client, settings.prefix, items, maxOps);
          process.stdout.write(`${file}: pushed to etcd at revision ${r.revision} (${r.put} keys written, ${r.deleted} deleted, under ${settings.prefix})\n`);
          return 0;
        } catch (err) {
          if (isHookgateError(err, 'BAD_CONFIG')) {
            process.stderr.write(`hookgate config push: ${file}: ${err.message}; nothing was written\n`);
            return 1;
          }
          throw err;
        }
      });
    }
    return withClient(settings, async (client) => {
      const { revision, kvs } = await readAll(client, settings.prefix);
      const { put, problems } = putOf(kvs, settings.prefix);
      for (const p of problems) process.stderr.write(`hookgate config get: warning: ${p}\n`);
      const { runner, ...input } = configInput(applyPut(emptyDoc(), put));
      const keys = (runner as { keys: unknown[] }).keys;
      const out = { ...input, ...(keys.length ? { runner: { keys } } : {}) };
      process.stdout.write(`// etcd revision ${revision}, prefix ${settings.prefix}\n${JSON.stringify(out, null, 2)}\n`);
      return 0;
    });
  },
});

/** Runs `fn` with a client; an unreachable etcd is one line naming the endpoints (exit 1). */
async function withClient(settings: EtcdSettings, fn: (client: Awaited<ReturnType<typeof openEtcd>>) => Promise<number>): Promise<number> {
  const client = await openEtcd(settings);
  try {
    return await fn(client);
  } catch (err) {
    const e = err as Error;
    process.stderr.write(`hookgate config: etcd at ${settings.hosts.join(', ')}: ${e.message}\n`);
    return 1;
  } finally {
    client.close();
  }
}
