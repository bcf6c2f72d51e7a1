/**
 * @module plugin/reaper
 * Guarantees that no plugin outlives the runner, even when the runner is
 * killed with SIGKILL and runs no cleanup: a small watchdog process, in its
 * own process group, holds a pipe from the runner. The runner tells it the
 * process group of every plugin it starts and stops; when the pipe closes
 * (the runner exited, however it exited), the watchdog sends SIGTERM to
 * every group still listed, SIGKILL a second later, and exits.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { ownFile } from '../own-file.ts';

const CHILD = ownFile(import.meta.url, './reaper-child');

/**
 * The runner's side of the watchdog. One per process is enough
 * (`Reaper.shared()`); `add` and `remove` are cheap and never throw.
 * The watchdog is unreferenced: it never keeps the runner alive.
 */
export class Reaper {
  #child: ChildProcess | null = null;
  static #shared: Reaper | null = null;

  /** The process-wide reaper, started on first use. */
  static shared(): Reaper {
    return (Reaper.#shared ??= new Reaper());
  }

  /** The watchdog's pid (starting it if needed), for tests. */
  get pid(): number | undefined {
    return this.#ensure()?.pid;
  }

  /** Registers a plugin's process group (its pid: plugins lead their group). */
  add(pgid: number): void {
    this.#write(`+${pgid}\n`);
  }

  /** Forgets a process group that has been reaped. */
  remove(pgid: number): void {
    this.#write(`-${pgid}\n`);
  }

  #write(line: string): void {
    const child = this.#ensure();
    if (child?.stdin?.writable) child.stdin.write(line);
  }

  #ensure(): ChildProcess | null {
    if (this.#child) return this.#child;
    try {
      const child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
      child.on('error', () => {});
      child.stdin?.on('error', () => {});
      child.unref();
      (child.stdin as unknown as { unref?: () => void })?.unref?.();
      this.#child = child;
    } catch {
      return null;
    }
    return this.#child;
  }
}
