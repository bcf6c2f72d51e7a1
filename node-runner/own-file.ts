/**
 * @module own-file
 * Paths of the runner's own files that are started as processes (the
 * keeper, the reaper). From a checkout they are `.ts` files run by Node's
 * type stripping; in the published package they are the compiled `.js`
 * files beside the caller. `new URL('./x.ts', import.meta.url)` is not
 * rewritten by the compiler, so the extension follows the caller's own.
 */
import { fileURLToPath } from 'node:url';

/**
 * The file `name` (a relative module path without extension) beside the
 * module at `base` (its `import.meta.url`), with the caller's extension.
 *
 * @example ownFile(import.meta.url, './keeper') // …/plugin/keeper.ts in a checkout, keeper.js in the package
 */
export function ownFile(base: string, name: string): string {
  const ext = base.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(name + ext, base));
}
