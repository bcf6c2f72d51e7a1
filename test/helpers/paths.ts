/**
 * @module test/helpers/paths
 * Where the things tests run live: the CLI, the test fixtures and the
 * example plugins.
 */

import { fileURLToPath } from 'node:url';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

/** The repository root (the cwd of every process the tests start). */
export const ROOT = here('../../');
/** `hookgate` (node-runner/cli.ts). */
export const CLI = here('../../node-runner/cli.ts');

/** The raw-protocol test plugin, configured by FIXTURE_* env vars (test/plugin-host). */
export const CONFIGURABLE = here('../fixtures/plugins/configurable.ts');
/** The SDK-based test plugin (test/plugin-host). */
export const SDK_PLUGIN = here('../fixtures/plugins/sdk-plugin.ts');
/** A runner process for the "runner killed" test. */
export const RUNNER_CHILD = here('../fixtures/runner-child.ts');
/** The configurable SDK plugin of the gateway tests (verdict chosen per request by `X-Test-Verdict`). */
export const VERDICT_PLUGIN = here('../fixtures/gateway/verdict-plugin.ts');
/** The configurable SDK plugin of the hook API and edge tests (see its header for what each path does). */
export const EDGE_PLUGIN = here('../fixtures/edge/edge-plugin.ts');

/** The example plugins. */
export const AUTH_TS = here('../../examples/plugins/auth.ts');
export const AUTH_PY = here('../../examples/plugins/auth.py');
export const PUSH_TARGETS_SH = here('../../examples/plugins/push-targets.sh');
