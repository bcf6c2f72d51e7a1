/**
 * @module test/helpers/paths
 * Where the things tests run live: the CLI, the test fixtures, the
 * example plugins, the Python SDK and the protocol doc.
 */

import { fileURLToPath } from 'node:url';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

/** The repository root (the cwd of every process the tests start). */
export const ROOT = here('../../');
/** `hookgate` (node-runner/cli/cli.ts). */
export const CLI = here('../../node-runner/cli/cli.ts');

/** The raw-protocol test plugin, configured by FIXTURE_* env vars (test/plugin-host). */
export const CONFIGURABLE = here('../fixtures/plugins/configurable.ts');
/** The SDK-based test plugin (test/plugin-host). */
export const SDK_PLUGIN = here('../fixtures/plugins/sdk-plugin.ts');
/** The same test plugin on the Python SDK; needs PY_SDK_DIR on PYTHONPATH. */
export const SDK_PY_PLUGIN = here('../fixtures/plugins/sdk_plugin.py');
/** Drives the Python SDK's codec over stdin/stdout frames (test/python-sdk-codec.test.ts). */
export const PY_CODEC_DRIVER = here('../fixtures/python/codec_driver.py');
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

/** The folder holding the Python SDK (`hookgate_plugin.py`). */
export const PY_SDK_DIR = here('../../sdk/python');
/** docs/protocol.md, whose worked example bytes the tests check against the codec. */
export const PROTOCOL_DOC = here('../../docs/protocol.md');
