/**
 * @module test/helpers/scope
 * Cleanup that always runs. A `Scope` owns what a test (or a file, or a
 * describe block) starts — temp dirs, servers, processes, clients — and
 * tears it down in reverse order whether the tests passed or not.
 *
 * * `scope(t)`: closed when test `t` ends.
 * * `suiteScope()`: closed by `after` of the file (at top level) or of the
 *   describe block it is called in, for what a `before` starts once.
 * * `tempDir(s)`: a temp dir removed when its scope closes.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';

/**
 * Owns cleanups and runs them in reverse order on `close()`, each once,
 * every one even when an earlier one fails. One failure is rethrown as
 * it is; several, as an AggregateError.
 */
export class Scope {
  #cleanups: Array<() => unknown> = [];
  #closed = false;

  /** Registers a cleanup; it runs on close (at once if already closed). */
  defer(fn: () => unknown): void {
    if (this.#closed) void Promise.resolve().then(fn);
    else this.#cleanups.push(fn);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const errors: unknown[] = [];
    for (const fn of this.#cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
  }
}

/**
 * A scope closed when the test ends (passed or failed).
 *
 * @example
 * test('...', async (t) => { const s = scope(t); const up = await startUpstream(s); ... });
 */
export function scope(t: TestContext): Scope {
  const s = new Scope();
  t.after(() => s.close());
  return s;
}

/**
 * A scope closed after the tests of the file (called at top level) or of
 * the describe block it is called in, for what their `before` starts.
 *
 * @example
 * const files = suiteScope();
 * let gw: Gateway;
 * before(async () => { gw = await startGateway(files, baseConfig({ ... })); });
 */
export function suiteScope(): Scope {
  const s = new Scope();
  after(() => s.close());
  return s;
}

/** A temp dir removed when the scope closes. */
export function tempDir(s: Scope, prefix = 'hookgate-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  s.defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
