/**
 * The CLI's conventions, run as a user would: `--version`, `help`,
 * `<command> --help` for every command (exit 0), and user mistakes as one
 * line naming what was wrong and where the help is (exit 2), never a
 * stack trace or a page of usage.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prettyLine } from '../node-runner/log.ts';
import { runCli } from './helpers/processes.ts';
import { ROOT } from './helpers/paths.ts';

const COMMANDS = ['serve', 'config-server', 'validate', 'plugin-call', 'demo'];
const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** One line on stderr, exit 2, pointing at the help; no stack trace. */
function assertUsageError(res: { code: number | null; stdout: string; stderr: string }, pattern: RegExp, help: string): void {
  assert.equal(res.code, 2, res.stderr);
  assert.equal(res.stdout, '');
  const lines = res.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${res.stderr}`);
  assert.match(lines[0], pattern);
  assert.ok(lines[0].includes(`see "${help}"`), lines[0]);
  assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
}

test('hookgate --version prints the package version', async () => {
  for (const flag of ['--version', '-V']) {
    const res = await runCli([flag]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `hookgate ${version}\n`);
  }
});

test('hookgate help lists every command; no command at all prints it on stderr with exit 2', async () => {
  const help = await runCli(['help']);
  assert.equal(help.code, 0);
  for (const c of COMMANDS) assert.match(help.stdout, new RegExp(`^  ${c} `, 'm'));
  const none = await runCli([]);
  assert.equal(none.code, 2);
  assert.equal(none.stderr, help.stdout);
});

test('every command has --help, -h and "hookgate help <command>", exit 0, the same text', async () => {
  for (const c of COMMANDS) {
    const long = await runCli([c, '--help']);
    assert.equal(long.code, 0, `${c} --help: ${long.stderr}`);
    assert.match(long.stdout, new RegExp(`^usage: hookgate ${c}\\b`));
    assert.equal(long.stderr, '');
    assert.equal((await runCli([c, '-h'])).stdout, long.stdout);
    assert.equal((await runCli(['help', c])).stdout, long.stdout);
  }
});

test('validate --help does not read a file named --help; --help wins over the other arguments', async () => {
  const res = await runCli(['validate', '--help', 'missing.json5']);
  assert.equal(res.code, 0);
  assert.doesNotMatch(res.stderr, /cannot read/);
});

test('an unknown option is one line naming it, with the command\'s help, exit 2', async () => {
  for (const c of COMMANDS) assertUsageError(await runCli([c, '--no-such-flag']), new RegExp(`^hookgate ${c}: unknown option --no-such-flag`), `hookgate ${c} --help`);
});

test('serve FILE (without --config) says what to type instead, without a stack trace', async () => {
  assertUsageError(await runCli(['serve', 'file.json5']), /unexpected argument "file\.json5"; did you mean "hookgate serve --config file\.json5"\?/, 'hookgate serve --help');
});

test('missing values and arguments, and unknown commands, are one line each', async () => {
  assertUsageError(await runCli(['serve', '--config']), /^hookgate serve: --config needs a value/, 'hookgate serve --help');
  assertUsageError(await runCli(['serve']), /serve needs --config <file>, --config-url <url> or --config-etcd <endpoints>/, 'hookgate serve --help');
  assertUsageError(await runCli(['validate']), /^hookgate validate: missing argument/, 'hookgate validate --help');
  assertUsageError(await runCli(['validate', 'a.json5', 'b.json5']), /unexpected argument "b\.json5"/, 'hookgate validate --help');
  assertUsageError(await runCli(['plugin-call', 'x', '--hook', 'on_nothing']), /--hook: expected on_request/, 'hookgate plugin-call --help');
  assertUsageError(await runCli(['config-server', '--config', 'x.json5']), /--listen <host:port> is required/, 'hookgate config-server --help');
  assertUsageError(await runCli(['nope']), /^hookgate: unknown command "nope"/, 'hookgate help');
  assertUsageError(await runCli(['help', 'nope']), /^hookgate: no command "nope"/, 'hookgate help');
  assertUsageError(await runCli(['--nope']), /^hookgate: unknown option --nope/, 'hookgate help');
});

test('logs: --log-format pretty (or HOOKGATE_LOG_FORMAT) gives human lines; json otherwise, also when the value is wrong', async (t) => {
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => busy.close(() => r())));
  const dir = mkdtempSync(join(tmpdir(), 'hookgate-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'hookgate.json5');
  // A listener that cannot be opened: serve logs "cannot start" and exits 1, whatever the format.
  writeFileSync(file, JSON.stringify({ gateway: { listen: `127.0.0.1:${(busy.address() as AddressInfo).port}` }, admin: { listen: '127.0.0.1:0' }, routes: [] }));
  const human = /^\d\d:\d\d:\d\d\.\d{3} ERROR cannot start {2}err=".*already in use/m;
  const pretty = await runCli(['serve', '--config', file, '--state-dir', join(dir, 's1'), '--log-format', 'pretty']);
  assert.equal(pretty.code, 1);
  assert.match(pretty.stderr, human);
  assert.doesNotMatch(pretty.stderr, /\{"level"/);
  const byEnv = await runCli(['serve', '--config', file, '--state-dir', join(dir, 's2')], { env: { ...process.env, HOOKGATE_LOG_FORMAT: 'pretty' } });
  assert.match(byEnv.stderr, human);
  const json = await runCli(['serve', '--config', file, '--state-dir', join(dir, 's3')]);
  assert.match(json.stderr, /^\{"level":50,"time":\d+,.*"msg":"cannot start"/m, 'json when stderr is not a terminal');
  const wrong = await runCli(['serve', '--config', file, '--state-dir', join(dir, 's4')], { env: { ...process.env, HOOKGATE_LOG_FORMAT: 'fancy' } });
  assert.match(wrong.stderr, /HOOKGATE_LOG_FORMAT: expected "json" or "pretty", got "fancy"; using json/);
  assert.match(wrong.stderr, /^\{"level":50/m);
  assertUsageError(await runCli(['serve', '--config', file, '--log-format', 'fancy']), /--log-format: expected "json" or "pretty", got "fancy"/, 'hookgate serve --help');
});

test('logs: log.level and log.format in the config; HOOKGATE_LOG_LEVEL and HOOKGATE_LOG_FORMAT override them', async (t) => {
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => busy.close(() => r())));
  const dir = mkdtempSync(join(tmpdir(), 'hookgate-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env };
  delete env.HOOKGATE_LOG_LEVEL;
  delete env.HOOKGATE_LOG_FORMAT;
  const port = (busy.address() as AddressInfo).port;
  // Before "cannot start" (an error: the gateway's port is taken) serve warns that plugins_allowed does nothing in a file.
  const run = (name: string, log: Record<string, unknown>, more: Record<string, string> = {}) => {
    const file = join(dir, `${name}.json5`);
    writeFileSync(file, JSON.stringify({ log, gateway: { listen: `127.0.0.1:${port}` }, admin: { listen: '127.0.0.1:0' }, runner: { plugins_allowed: ['/opt/x/*'] } }));
    return runCli(['serve', '--config', file, '--state-dir', join(dir, `s-${name}`)], { env: { ...env, ...more } });
  };
  const warning = /runner\.plugins_allowed only limits/;
  const errorsOnly = await run('error', { level: 'error' });
  assert.equal(errorsOnly.code, 1);
  assert.match(errorsOnly.stderr, /"msg":"cannot start"/);
  assert.doesNotMatch(errorsOnly.stderr, warning, 'a warning is below log.level error');
  const envLevel = await run('env-level', { level: 'error' }, { HOOKGATE_LOG_LEVEL: 'warn' });
  assert.match(envLevel.stderr, warning, 'HOOKGATE_LOG_LEVEL wins');
  const pretty = await run('pretty', { format: 'pretty' });
  assert.match(pretty.stderr, /^\d\d:\d\d:\d\d\.\d{3} ERROR cannot start {2}err=".*already in use/m, 'log.format pretty');
  const envFormat = await run('env-format', { format: 'pretty' }, { HOOKGATE_LOG_FORMAT: 'json' });
  assert.match(envFormat.stderr, /^\{"level":50,"time":\d+,.*"msg":"cannot start"/m, 'HOOKGATE_LOG_FORMAT wins');
  const bad = await run('bad', { level: 'loud' });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /log\.level: expected "debug", "info", "warn" or "error"/);
});

test('a pretty line: time, level, message, fields; a multi-line field (a traceback) indented below', () => {
  const line = prettyLine(`${JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 1), msg: 'plugin stderr', plugin: 'auth', n: 3, text: 'Traceback:\n  File "x.py"\nValueError: bad\n' })}\n`, false);
  const [head, ...rest] = line.trimEnd().split('\n');
  assert.match(head, /^\d\d:\d\d:\d\d\.000 WARN {2}plugin stderr {2}plugin=auth n=3$/);
  assert.deepEqual(rest, ['text:', '    Traceback:', '      File "x.py"', '    ValueError: bad']);
  assert.equal(prettyLine('not json\n', false), 'not json\n', 'what is not a record passes through');
  const grouped = prettyLine(`${JSON.stringify({ level: 30, time: 0, msg: 'Error: boom\n    at f (x.js:1)\n    at g (x.js:2)', plugin: 'auth', stream: 'stderr', lines: 3 })}\n`, false);
  const [gHead, ...gRest] = grouped.trimEnd().split('\n');
  assert.match(gHead, /INFO {2}Error: boom {2}plugin=auth stream=stderr lines=3$/, 'a multi-line message: its first line heads the record');
  assert.deepEqual(gRest, ['        at f (x.js:1)', '        at g (x.js:2)']);
});

test('validate checks what it can on this machine: missing, misspelt or non-executable programs, sha256 pins; problems in file order, in our words', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookgate-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ok.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  writeFileSync(join(dir, 'notes.txt'), 'not a program\n', { mode: 0o644 });
  const sha = createHash('sha256').update(readFileSync(join(dir, 'ok.sh'))).digest('hex');
  const file = join(dir, 'hookgate.json5');
  writeFileSync(
    file,
    `{
      plugins: {
        missing: { path: "./nope.py" },
        typo: { command: ["pythn3", "x.py"] },
        plain: { path: "./notes.txt" },
        pinned_wrong: { path: "./ok.sh", sha256: "${'0'.repeat(64)}" },
        pinned_right: { path: "./ok.sh", sha256: "${sha}" },
        on_path: { command: ["sh", "-c", "exit 0"] },
        own_path: { command: ["sh"], env: { PATH: "${dir}" } },
      },
      routes: [],
    }`,
  );
  const res = await runCli(['validate', file]);
  assert.equal(res.code, 1, res.stdout);
  assert.deepEqual(res.stderr.trimEnd().split('\n').slice(1), [
    `  plugins.missing.path: "${join(dir, 'nope.py')}" does not exist`,
    `  plugins.typo.command[0]: "pythn3" is not a program on the PATH (the runner's PATH); check the spelling, or give its full path`,
    `  plugins.plain.path: "${join(dir, 'notes.txt')}" is not executable (chmod +x it to run it as a plugin)`,
    `  plugins.pinned_wrong.sha256: ${join(dir, 'ok.sh')} has sha256 ${sha}, not the pinned ${'0'.repeat(64)} (the file changed, or the pin is wrong)`,
    `  plugins.own_path.command[0]: "sh" is not a program on the PATH (the plugin's env.PATH); check the spelling, or give its full path`,
  ]);

  // serve refuses the same config at start (exit 1), instead of restart-looping on ENOENT.
  const served = await runCli(['serve', '--config', file, '--state-dir', join(dir, 'state')]);
  assert.equal(served.code, 1);
  assert.match(served.stderr, /plugins\.missing\.path: ".*nope\.py" does not exist/);

  const schema = join(dir, 'schema.json5');
  writeFileSync(schema, `{ routes: [{ plugins: ["zz"], action: { type: "static", status: "x" } }], admin: { listen: 8080 }, extra: 1 }`);
  const bad = await runCli(['validate', schema]);
  assert.deepEqual(bad.stderr.trimEnd().split('\n').slice(1), [
    '  routes[0].plugins[0]: no plugin named "zz" in plugins',
    '  routes[0].action.status: expected a number, got "x"',
    '  admin.listen: expected a string, got 8080',
    '  extra: unknown field',
  ]);
});

test('plugin-call copies the plugin\'s stderr (a traceback) to its own stderr; --quiet hides it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hookgate-pcall-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const plugin = join(dir, 'raises.sh');
  writeFileSync(plugin, '#!/bin/sh\nprintf \'Traceback (most recent call last):\\n  File "plugin.py", line 3\\nValueError: boom\\n\' >&2\nexit 1\n', { mode: 0o755 });
  const loud = await runCli(['plugin-call', plugin, '--timeout', '60s']);
  assert.equal(loud.code, 1);
  assert.match(loud.stderr, /^Traceback \(most recent call last\):\n {2}File "plugin\.py", line 3\nValueError: boom\n/m);
  assert.match(loud.stderr, /plugin-call: the plugin exited before answering \(code 1\)/);
  const quiet = await runCli(['plugin-call', plugin, '--timeout', '60s', '--quiet']);
  assert.equal(quiet.code, 1);
  assert.doesNotMatch(quiet.stderr, /Traceback/);
  assert.match(quiet.stderr, /plugin-call: the plugin exited before answering \(code 1\)/);
});
