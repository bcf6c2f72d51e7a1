/**
 * @module commands/config-server
 * `hookgate config-server`: serves a config file as a config stream
 * (the work is in config-server.ts).
 */

import { ETCD_HELP, ETCD_OPTIONS } from '../../config/etcd.ts';
import { command, LOG_FORMAT_OPTION } from './kit.ts';

export default command({
  help: `usage: hookgate config-server --config <file.json5> --listen <host:port> --key-env <NAME>
                              [--tls-cert <cert.pem> --tls-key <key.pem> | --insecure-http]
       hookgate config-server --etcd <http://host:2379,...> --listen <host:port> --key-env <NAME> [etcd options] [TLS options]

Serves a config file as a config stream to runners (docs/protocol.md §3);
edits are sent as they are saved, SIGHUP re-reads the file. The key runners
present is in the environment variable NAME (at least 16 characters).
With --tls-cert/--tls-key it serves HTTPS and logs its pin (what runners
pass as --config-pin); plain HTTP is refused on an address that is not
loopback unless --insecure-http.
With --etcd it serves what is in etcd instead (README "Fleets"): versions
are etcd revisions, so several config servers following one cluster can
stand behind one name; a change of several keys is sent as one put.
--log-format json|pretty sets HOOKGATE_LOG_FORMAT (default: pretty on a
terminal, else json).

${ETCD_HELP}`,
  positionals: 0,
  positionalHint: (arg) => `hookgate config-server --config ${arg}`,
  options: {
    ...LOG_FORMAT_OPTION,
    config: { type: 'string', short: 'c' },
    listen: { type: 'string' },
    'key-env': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'insecure-http': { type: 'boolean' },
    etcd: { type: 'string' },
    ...ETCD_OPTIONS,
  },
  async run({ values }) {
    const { configServerRun } = await import('../../config/config-server-command.ts');
    return configServerRun(values);
  },
});
