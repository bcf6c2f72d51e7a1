#!/usr/bin/env node
/**
 * @module cli
 * The `hookgate` command. Each command lives in `commands/` and is loaded
 * only when called (so `--version` and `help` start fast); what they share
 * (argument parsing, `--help`, user errors as one line, exit codes) is in
 * `commands/kit.ts`.
 *
 * Exit codes: 0 done, 1 failed (invalid config, cannot start, …), 2 the
 * command was called wrongly (one line on stderr naming what, and where the
 * help is).
 */

import { packageVersion } from '../version.ts';
import type { Command } from './commands/kit.ts';

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ default: Command }> }> = {
  serve: { summary: 'serve the gateway from a config file or a config stream', load: () => import('./commands/serve.ts') as never },
  'config-server': { summary: 'serve a config file as a config stream to runners', load: () => import('./commands/config-server.ts') as never },
  config: { summary: 'push a config file to etcd, or print the config in etcd', load: () => import('./commands/config.ts') as never },
  validate: { summary: 'check a config file', load: () => import('./commands/validate.ts') as never },
  'plugin-call': { summary: 'start one plugin and make one hook call', load: () => import('./commands/plugin-call.ts') as never },
  demo: { summary: 'serve the demo in examples/demo (npm start)', load: () => import('./commands/demo.ts') as never },
};

const OVERVIEW = `usage: hookgate <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(15)}${c.summary}`)
  .join('\n')}

  hookgate help <command>    (or hookgate <command> --help) for a command's options
  hookgate --version

Docs: README.md; the plugin protocol is docs/protocol.md.
`;


async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`hookgate ${packageVersion()}\n`);
    return 0;
  }
  if (cmd === undefined) {
    process.stderr.write(OVERVIEW);
    return 2;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const topic = rest[0];
    if (topic === undefined) {
      process.stdout.write(OVERVIEW);
      return 0;
    }
    const entry = Object.hasOwn(COMMANDS, topic) ? COMMANDS[topic] : undefined;
    if (!entry) return usage(null, `no command "${topic}"`);
    process.stdout.write((await entry.load()).default.help);
    return 0;
  }
  const entry = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!entry) return usage(null, cmd.startsWith('-') ? `unknown option ${cmd}` : `unknown command "${cmd}"`);
  const [{ default: command }, kit] = await Promise.all([entry.load(), import('./commands/kit.ts')]);
  try {
    const parsed = kit.parseCommandArgs(cmd, command, rest);
    if (parsed.values.help) {
      process.stdout.write(command.help);
      return 0;
    }
    return await command.run(parsed as never);
  } catch (err) {
    if (err instanceof kit.UsageError) return usage(cmd, err.message);
    throw err;
  }
}

async function usage(cmd: string | null, message: string): Promise<number> {
  const { usageLine } = await import('./commands/kit.ts');
  process.stderr.write(usageLine(cmd, message));
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    // Not a user's mistake: a bug or an environment problem; the stack helps whoever reports it.
    process.stderr.write(`hookgate: internal error: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
