/**
 * @module state-dir
 * A runner's state dir (`--state-dir`: the keeper's socket, the plugin
 * snapshot, the last good streamed config) is private and has one runner.
 *
 * - **Private.** Created with mode 0700. An existing one must be a
 *   directory owned by this user and not writable by its group or others;
 *   anything else is refused, since whoever can write there can replace
 *   the last good config or the keeper's socket.
 * - **One runner.** `<dir>/runner.lock` holds `{"pid", "start_time"}` of the
 *   runner that has the dir. It is created atomically with its content (a
 *   temp file hard-linked into place, which fails when the lock exists), so
 *   it is never seen half-written. A lock whose process is gone (no such
 *   pid, a zombie, or a pid reused by a process that started at another
 *   time, per `/proc/<pid>/stat`) is stale and taken over; removing a stale
 *   lock is itself guarded by `runner.lock.takeover` (created exclusively,
 *   ignored after 10 s), so two runners starting at once cannot both win.
 *   Pids are only compared, never signalled. Limits: pids of another pid
 *   namespace (a container sharing the folder) look stale or foreign; give
 *   such runners their own state dirs.
 *
 * The keeper and the files in the dir are other modules' business.
 */

import { closeSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HookgateError } from '../src/core/errors.ts';

/** The lock file in a state dir. */
export const LOCK_FILE = 'runner.lock';

const TAKEOVER_STALE_MS = 10_000;

/** A held state dir; `release()` removes the lock if it is still ours. Idempotent. */
export interface StateDirLock {
  readonly dir: string;
  release(): void;
}

/**
 * Fields 3 (state) and 22 (start time, clock ticks since boot) of
 * `/proc/<pid>/stat`, or null without /proc or when the process is gone.
 *
 * @example
 * processStat(process.pid) // { state: 'R', startTime: 123456 }
 */
export function processStat(pid: number): { state: string; startTime: number | null } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state), so field 22 is fields[19].
    const v = Number(fields[19]);
    return { state: fields[0], startTime: Number.isFinite(v) ? v : null };
  } catch {
    return null;
  }
}

/**
 * Makes `dir` (0700) when it does not exist, else checks that it is a
 * directory owned by this user and not writable by group or others.
 * Throws `HookgateError` (`UNSAFE_PATH`) saying what is wrong and what to do.
 *
 * @example
 * ensurePrivateDir('/var/lib/hookgate');
 */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = statSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw new HookgateError('UNSAFE_PATH', `the state dir ${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid) {
    throw new HookgateError('UNSAFE_PATH', `the state dir ${dir} is owned by uid ${st.uid}, not by this user (uid ${uid}); use a dir of this user's (hookgate creates it with mode 0700)`);
  }
  if (st.mode & 0o022) {
    throw new HookgateError(
      'UNSAFE_PATH',
      `the state dir ${dir} is writable by its group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run "chmod go-w ${dir}" (hookgate creates it with mode 0700)`,
    );
  }
}

interface Holder {
  pid: number;
  start_time: number | null;
}

function readHolder(file: string): { text: string; holder: Holder | null } | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const v = JSON.parse(text) as Holder;
    if (Number.isSafeInteger(v.pid) && v.pid > 0) return { text, holder: { pid: v.pid, start_time: typeof v.start_time === 'number' ? v.start_time : null } };
  } catch {
    // garbage: stale
  }
  return { text, holder: null };
}

/** Whether the runner that wrote the lock still runs (the same process, not a reuse of its pid). */
function holderRuns(h: Holder): boolean {
  if (h.pid === process.pid) return false;
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = processStat(h.pid);
  if (!now) return true;
  if (now.state === 'Z') return false;
  return h.start_time === null || now.startTime === null || now.startTime === h.start_time;
}

/** Removes the stale lock whose content is `text`, unless another runner is doing so or it changed. */
function removeStale(file: string, text: string): void {
  const guard = `${file}.takeover`;
  let fd: number;
  try {
    fd = openSync(guard, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - lstatSync(guard).mtimeMs > TAKEOVER_STALE_MS) unlinkSync(guard);
    } catch {
      // gone meanwhile
    }
    return;
  }
  try {
    if (readHolder(file)?.text === text) unlinkSync(file);
  } finally {
    closeSync(fd);
    unlinkSync(guard);
  }
}

/**
 * Makes sure the state dir is private (`ensurePrivateDir`) and takes its
 * lock. Throws `HookgateError` `STATE_DIR_LOCKED` when another runner
 * holds it (the message names the dir and its pid), `UNSAFE_PATH` when the
 * dir is not private. The lock is released by `release()`; callers do so
 * on exit (a killed runner leaves a stale lock, taken over next time).
 *
 * @example
 * const lock = await lockStateDir('/var/lib/hookgate');
 * process.on('exit', () => lock.release());
 */
export async function lockStateDir(dir: string): Promise<StateDirLock> {
  ensurePrivateDir(dir);
  const file = join(dir, LOCK_FILE);
  const mine = `${JSON.stringify({ pid: process.pid, start_time: processStat(process.pid)?.startTime ?? null })}\n`;
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, mine);
  } finally {
    closeSync(fd);
  }
  try {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        linkSync(tmp, file);
        let released = false;
        return {
          dir,
          release() {
            if (released) return;
            released = true;
            try {
              if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
            } catch {
              // already gone
            }
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const found = readHolder(file);
      if (!found) continue;
      if (found.holder && holderRuns(found.holder)) {
        throw new HookgateError(
          'STATE_DIR_LOCKED',
          `the state dir ${dir} is in use by another runner (pid ${found.holder.pid}); give each runner its own --state-dir, or stop that one first`,
        );
      }
      removeStale(file, found.text);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new HookgateError('STATE_DIR_LOCKED', `cannot take the lock ${file}: it keeps changing; is another runner starting on the same --state-dir?`);
  } finally {
    unlinkSync(tmp);
  }
}
