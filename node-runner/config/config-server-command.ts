/**
 * @module config/config-server-command
 * `hookgate config-server` as a program: its flags read into a
 * ConfigServer's options (the key from the environment, TLS files, the
 * listen address), the server started, reloaded on SIGHUP and stopped on
 * SIGINT / SIGTERM, with the exit codes and messages users see. The
 * server itself is `config-server.ts`.
 */

import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../src/core/config/config.ts';
import type { EtcdSettings } from './etcd.ts';
import { etcdSettings } from './etcd.ts';
import { isLoopbackHost } from './config-tls.ts';
import { createLogger } from '../log.ts';
import { splitListen } from '../runner.ts';
import { MIN_KEY_LENGTH, startConfigServer, type ConfigServer } from './config-server.ts';

/**
 * `hookgate config-server --config FILE --listen HOST:PORT --key-env NAME
 * [--tls-cert FILE --tls-key FILE | --insecure-http]`: serves until
 * SIGTERM/SIGINT, then closes and returns 0. Returns 2 for bad arguments,
 * a missing/short key (under 16 characters), an unreadable certificate or
 * key, or plain HTTP on an address that is not loopback without
 * `--insecure-http`; 1 for an invalid config file or a listener that
 * cannot start; each with a message on stderr. Logs (pino, stderr)
 * `config server listening` with the `url` (and, with TLS, the `pin`).
 *
 * @example
 * process.exitCode = await configServerMain(['--config', 'hookgate.json5', '--listen', '127.0.0.1:9000', '--key-env', 'HOOKGATE_CONFIG_KEY']);
 */
export async function configServerMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { default: cmd } = await import('../cli/commands/config-server.ts');
  const { parseCommandArgs, UsageError, usageLine } = await import('../cli/commands/kit.ts');
  try {
    return await configServerRun(parseCommandArgs('config-server', cmd, argv).values, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(usageLine('config-server', err.message));
    return 2;
  }
}

/** The options of `hookgate config-server` (see commands/config-server). */
export interface ConfigServerArgs {
  config?: string;
  etcd?: string;
  'etcd-prefix'?: string;
  'etcd-cacert'?: string;
  'etcd-cert'?: string;
  'etcd-key'?: string;
  'etcd-user'?: string;
  'etcd-password-env'?: string;
  'insecure-etcd'?: boolean;
  listen?: string;
  'key-env'?: string;
  'tls-cert'?: string;
  'tls-key'?: string;
  'insecure-http'?: boolean;
}

/**
 * Runs `hookgate config-server` with parsed options until SIGTERM/SIGINT.
 * Resolves with the exit code: 2 for a usage error (printed as one line),
 * 1 when it cannot start, 0 once stopped.
 */
export async function configServerRun(values: ConfigServerArgs, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const fail = (code: number, msg: string) => {
    process.stderr.write(code === 2 ? `hookgate config-server: ${msg} (see "hookgate config-server --help")\n` : `hookgate config-server: ${msg}\n`);
    return code;
  };
  if (!values.config && !values.etcd) return fail(2, '--config <file> or --etcd <endpoints> is required');
  if (values.config && values.etcd) return fail(2, '--config and --etcd: serve a file or what is in etcd; pick one');
  let etcd: EtcdSettings | undefined;
  if (values.etcd) {
    try {
      etcd = etcdSettings(values.etcd, '--etcd', values, env);
    } catch (err) {
      return fail(2, (err as Error).message);
    }
  }
  if (!values.listen) return fail(2, '--listen <host:port> is required');
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(values.listen) || Number(values.listen.slice(values.listen.lastIndexOf(':') + 1)) > 65535) {
    return fail(2, `--listen "${values.listen}": expected "host:port", e.g. "127.0.0.1:9000"`);
  }
  if (!values['key-env']) return fail(2, '--key-env <NAME> is required: the environment variable holding the key runners present');
  const name = values['key-env'];
  const key = env[name];
  if (!key) return fail(2, `the environment variable ${name} (--key-env) is not set; set it to the key runners present (at least ${MIN_KEY_LENGTH} characters)`);
  if (key.length < MIN_KEY_LENGTH) return fail(2, `the key in ${name} has ${key.length} characters; use at least ${MIN_KEY_LENGTH}`);
  const certFile = values['tls-cert'];
  const keyFile = values['tls-key'];
  if ((certFile === undefined) !== (keyFile === undefined)) return fail(2, '--tls-cert and --tls-key go together');
  let tls: { cert: string; key: string } | undefined;
  if (certFile && keyFile) {
    if (values['insecure-http']) return fail(2, '--insecure-http and --tls-cert/--tls-key exclude each other');
    try {
      tls = { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
    } catch (err) {
      return fail(2, `cannot read the TLS certificate or key (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: ${(err as NodeJS.ErrnoException).path ?? ''})`);
    }
  } else if (!isLoopbackHost(splitListen(values.listen).host) && !values['insecure-http']) {
    return fail(
      2,
      `--listen ${values.listen} is not a loopback address: serve TLS with --tls-cert and --tls-key (runners refuse plain http off loopback), or pass --insecure-http to serve plain http anyway`,
    );
  }

  const logger = createLogger();
  let server: ConfigServer;
  try {
    server = await startConfigServer({ configFile: values.config, etcd, listen: values.listen, key, logger, tls });
  } catch (err) {
    if (err instanceof ConfigError) return fail(1, `${values.config}: invalid config\n${err.problems.map((p) => `  ${p}\n`).join('')}`.trimEnd());
    return fail(1, `cannot start: ${(err as Error).message}`);
  }
  logger.info({ url: server.url, ...(server.pin ? { pin: server.pin } : {}) }, 'config server listening');
  const onHup = () => void server.reload();
  process.on('SIGHUP', onHup);
  const { waitForStopSignal } = await import('../cli/commands/kit.ts');
  const signal = await waitForStopSignal();
  process.off('SIGHUP', onHup);
  logger.info({ signal }, 'stopping');
  await server.close();
  logger.info('stopped');
  return 0;
}
