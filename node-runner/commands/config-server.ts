/**
 * @module commands/config-server
 * `hookgate config-server`: serves a config file as a config stream
 * (the work is in config-server.ts).
 */

import { command, LOG_FORMAT_OPTION } from './kit.ts';

export default command({
  help: `usage: hookgate config-server --config <file.json5> --listen <host:port> --key-env <NAME>
                              [--tls-cert <cert.pem> --tls-key <key.pem> | --insecure-http]

Serves a config file as a config stream to runners (docs/protocol.md §3);
edits are sent as they are saved, SIGHUP re-reads the file. The key runners
present is in the environment variable NAME (at least 16 characters).
With --tls-cert/--tls-key it serves HTTPS and logs its pin (what runners
pass as --config-pin); plain HTTP is refused on an address that is not
loopback unless --insecure-http.
--log-format json|pretty sets HOOKGATE_LOG_FORMAT (default: pretty on a
terminal, else json).
`,
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
  },
  async run({ values }) {
    const { configServerRun } = await import('../config-server.ts');
    return configServerRun(values);
  },
});
