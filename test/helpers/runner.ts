/**
 * @module test/helpers/runner
 * A runner in the test process, for the tests that drive its wall clock
 * (runner keys that expire): the real `Runner` on loopback ports, its
 * config written to a temp dir and read as `hookgate serve` reads it, its
 * logs recorded, stopped with the scope. Its plugins are real processes.
 * Every other test starts runners as processes (`startRunner` in
 * ./processes.ts), as users do.
 */

import type { Clock } from '../../src/core/clock.ts';
import { loadConfigFile } from '../../node-runner/config/config-file.ts';
import { recordingLogger, type LogEntry } from '../../node-runner/log.ts';
import { listenersOf, Runner } from '../../node-runner/runner.ts';
import { waitFor } from './http.ts';
import { writeConfig } from './processes.ts';
import { tempDir, type Scope } from './scope.ts';

/** A runner started in this process. */
export interface InProcessRunner {
  /** base URL of the hook API ("http://127.0.0.1:PORT") */
  url: string;
  gateway: string;
  admin: string;
  runner: Runner;
  logs: LogEntry[];
}

/**
 * Starts a `Runner` on `config` (a runner config, see `runnerConfig`) and
 * resolves once it listens and every plugin is ready; stopped with the scope.
 *
 * @example
 * const clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'));
 * const runner = await startRunnerInProcess(s, runnerConfig({ routes }, { keys }), { wallClock: clock });
 * clock.advance(60_000); // keys that expired in that minute are refused now
 */
export async function startRunnerInProcess(s: Scope, config: Record<string, unknown>, opts: { wallClock?: Clock } = {}): Promise<InProcessRunner> {
  const configFile = writeConfig(tempDir(s), config);
  const log = recordingLogger();
  const runner = new Runner({ logger: log, configFile, wallClock: opts.wallClock });
  s.defer(() => runner.stop());
  const loaded = await loadConfigFile(configFile);
  await runner.start(listenersOf(loaded), loaded);
  await waitFor(() => runner.ready, { timeoutMs: 20_000, what: 'every plugin of the in-process runner to be ready' });
  const { runner: url, gateway, admin } = runner.urls;
  if (!url || !gateway || !admin) throw new Error(`the runner config has no runner.listen: ${JSON.stringify(runner.urls)}`);
  return { url, gateway, admin, runner, logs: log.entries };
}
