/**
 * @module commands/validate
 * `hookgate validate <config.json5>`: checks a config as `serve` would
 * load it; every problem with the path of its field (exit 1), warnings on
 * stderr (exit 0 with only warnings).
 */

import { ConfigError } from '../../../src/core/config/config.ts';
import { loadConfigFile } from '../../config/config-file.ts';
import { command, printConfigError } from './kit.ts';

export default command({
  help: `usage: hookgate validate <config.json5>

Checks a config as "hookgate serve" would load it and prints every problem
with the path of its field (exit 1), and warnings such as a non-executable
file in plugins_dir (on stderr; exit 0 when there are only warnings).
`,
  positionals: 1,
  options: {},
  async run({ positionals: [file] }) {
    try {
      const config = await loadConfigFile(file, (w) => process.stderr.write(`${file}: warning: ${w}\n`));
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
