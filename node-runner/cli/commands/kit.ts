/**
 * @module commands/kit
 * What every `hookgate` command shares: parsing its arguments with
 * `node:util` `parseArgs` (plus `--help`), user errors as one line that
 * points at the command's help (exit 2), config problems printed the same
 * way by every command, waiting for the stop signal, and the fatal-error
 * handler of the long-running commands.
 */

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../../../src/core/config/config.ts';
import type { Logger } from '../../../src/core/log.ts';

/** A mistake in how the command was called: printed as one line with a pointer at the help, exit 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** One `hookgate` command. */
export interface Command<O extends Options = Options> {
  /** the command's help, starting with its `usage:` line(s) */
  help: string;
  options: O;
  /** positional arguments taken: a number, or 'any' */
  positionals: number | 'any';
  /** an example for a stray positional argument, e.g. `--config FILE` for `serve FILE` */
  positionalHint?: (arg: string) => string;
  run(parsed: { values: ParsedValues<O>; positionals: string[]; rest: string[] }): Promise<number>;
}

/** What parseArgs gives for `O` (loosely typed: commands check their own values). */
export type ParsedValues<O extends Options> = {
  [K in keyof O]: O[K] extends { multiple: true }
    ? string[]
    : O[K] extends { type: 'boolean' }
      ? O[K] extends { default: boolean } ? boolean : boolean | undefined
      : O[K] extends { default: string } ? string : string | undefined;
} & {
  help?: boolean;
};

/** `--log-format json|pretty`, which the long-running commands take (sets HOOKGATE_LOG_FORMAT). */
export const LOG_FORMAT_OPTION = { 'log-format': { type: 'string' } } as const;

/** Declares a command with its option types inferred. */
export function command<O extends Options>(c: Command<O>): Command<O> {
  return c;
}

/**
 * Parses `argv` for `cmd` (`name` is its name in messages). Arguments
 * after a bare `--` are passed through in `rest` untouched. Throws
 * `UsageError` in our words: an unknown option, an option missing its
 * value, a stray or missing positional argument.
 */
export function parseCommandArgs<O extends Options>(name: string, cmd: Command<O>, argv: string[]): { values: ParsedValues<O>; positionals: string[]; rest: string[] } {
  const dash = argv.indexOf('--');
  const args = dash >= 0 ? argv.slice(0, dash) : argv;
  const rest = dash >= 0 ? argv.slice(dash + 1) : [];
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(parseArgsMessage(err as NodeJS.ErrnoException));
  }
  const values = parsed.values as unknown as ParsedValues<O>;
  if (values.help) return { values, positionals: [], rest };
  const format = (values as { 'log-format'?: string })['log-format'];
  if (format !== undefined) {
    if (format !== 'json' && format !== 'pretty') throw new UsageError(`--log-format: expected "json" or "pretty", got "${format}"`);
    process.env.HOOKGATE_LOG_FORMAT = format;
  }
  const { positionals } = parsed;
  if (cmd.positionals !== 'any' && positionals.length > cmd.positionals) {
    const stray = positionals[cmd.positionals];
    throw new UsageError(`unexpected argument "${stray}"${cmd.positionalHint ? `; did you mean "${cmd.positionalHint(stray)}"?` : ''}`);
  }
  if (cmd.positionals !== 'any' && positionals.length < cmd.positionals) {
    throw new UsageError(`missing argument: ${cmd.help.split('\n')[0].replace(/^usage:\s*/, '')}`);
  }
  return { values, positionals, rest };
}

/** parseArgs' messages, said our way (its own name the option with every alias and suggest `--`). */
function parseArgsMessage(err: NodeJS.ErrnoException): string {
  const quoted = /'([^']+)'/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? err.message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const long = /--[\w-]+/.exec(err.message)?.[0];
      if (/argument missing/.test(err.message)) return `${long ?? 'an option'} needs a value`;
      return `${long ?? 'an option'} takes no value`;
    }
    default:
      return err.message;
  }
}

/** The one line a user error prints: what was wrong, and where the help is. */
export function usageLine(name: string | null, message: string): string {
  const who = name ? `hookgate ${name}` : 'hookgate';
  return `${who}: ${message} (see "${name ? `hookgate ${name} --help` : 'hookgate help'}")\n`;
}

/** Prints a config's problems, one per line under the file name, as every command does. */
export function printConfigError(file: string, err: ConfigError, prefix = 'hookgate: '): void {
  process.stderr.write(`${prefix}${file}: invalid config\n${err.problems.map((p) => `  ${p}\n`).join('')}`);
}

/** Resolves with the first of SIGTERM or SIGINT. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((r) => {
    process.once('SIGTERM', () => r('SIGTERM'));
    process.once('SIGINT', () => r('SIGINT'));
  });
}

/**
 * Makes an uncaught error in a long-running command fatal: logged, `stop`
 * given 5 s, then exit 1.
 */
export function exitOnFatal(log: Logger, stop: () => Promise<unknown>): void {
  const fatal = (err: unknown) => {
    log.error({ err: (err as Error)?.stack ?? String(err) }, 'fatal error; stopping');
    const t = setTimeout(() => process.exit(1), 5000);
    t.unref();
    void stop().finally(() => process.exit(1));
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}

/** A positive integer of milliseconds from the environment (a test/ops knob), or undefined. */
export function envMs(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name}: expected a positive number of milliseconds, got "${raw}"`);
  return n;
}
