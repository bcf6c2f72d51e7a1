/**
 * @module commands/validate
 * `hookgate validate <config.json5>`: checks a config as `serve` would
 * load it; every problem with the path of its field (exit 1), warnings on
 * stderr (exit 0 with only warnings).
 */

import { ConfigError } from '../../../src/core/config/config.ts';
import { edgeWarnings } from '../../../src/core/config/config-actions.ts';
import { loadConfigFile } from '../../config/config-file.ts';
import { command, printConfigError } from './kit.ts';

export default command({
  help: `usage: hookgate validate <config.json5> [--edge]

Checks a config as "hookgate serve" would load it and prints every problem
with the path of its field (exit 1), and warnings such as a non-executable
file in plugins_dir (on stderr; exit 0 when there are only warnings).

A config that edge workers route by (one with runner.listen, or any config
with --edge) also gets a warning for each route whose action an edge worker
answers with 501 ("serve", "pass").

  --edge    warn as for a config that edge workers use, even without runner.listen
`,
  positionals: 1,
  options: { edge: { type: 'boolean' } },
  async run({ values, positionals: [file] }) {
    try {
      const warn = (w: string) => process.stderr.write(`${file}: warning: ${w}\n`);
      const config = await loadConfigFile(file, warn);
      // With runner.listen, loadConfigFile has warned already.
      if (values.edge && config.runner.listen === undefined) for (const w of edgeWarnings(config)) warn(w);
      process.stdout.write(`${file}: ok (${config.routes.length} routes, ${Object.keys(config.plugins).length} plugins)\n`);
      return 0;
    } catch (err) {
      if (err instanceof ConfigError) {
        printConfigError(file, err, '');
        return 1;
      }
      throw err;
    }
  },
});
