/**
 * @module atomic-write
 * The one way the runner replaces a file it owns (the last good config,
 * the plugins file, the config server's versions file): write a temporary
 * file beside it, fsync it, rename it over the old one, fsync the folder.
 * A crash at any point leaves either the old file or the new one, never a
 * torn one, and the rename survives a power loss. The temporary file is
 * removed when a step fails; the error is thrown for the caller to log.
 */

import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Replaces `file` with `data` atomically (see the module doc); the file is
 * created with `mode` (default 0600). Throws what the failing step threw.
 *
 * @example
 * await writeFileAtomic('/var/lib/hookgate/last-good.json', JSON.stringify(doc) + '\n');
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  const tmp = tempName(file);
  try {
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  syncDir(dirname(file));
}

/** `writeFileAtomic`, synchronously, for callers that cannot wait (a write scheduled from a timer that must finish before exit). */
export function writeFileAtomicSync(file: string, data: string, mode = 0o600): void {
  const tmp = tempName(file);
  try {
    const fd = openSync(tmp, 'w', mode);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // never written
    }
    throw err;
  }
  syncDir(dirname(file));
}

function tempName(file: string): string {
  return `${file}.tmp-${process.pid}-${Date.now()}`;
}

/** Makes a rename in `dir` durable. Best effort: some file systems refuse to fsync a folder. */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // the rename itself is done; durability is what is lost
  }
}
