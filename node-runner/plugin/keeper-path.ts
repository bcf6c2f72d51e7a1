/**
 * @module plugin/keeper-path
 * Where a state dir's keeper listens. Normally `<state dir>/keeper.sock`;
 * when that path is too long for a Unix socket (about 107 bytes), a short
 * one derived from the state dir, in a private folder of the temp dir.
 * Shared by the keeper and its client, which must agree on it.
 */

import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** Longest socket path used as is (sun_path holds 108 bytes with its NUL; leave room). */
const MAX_SOCKET_PATH = 100;

/**
 * The keeper's socket for `stateDir`.
 *
 * @example
 * keeperSocketPath('/srv/hookgate/.hookgate-state') // '/srv/hookgate/.hookgate-state/keeper.sock'
 */
export function keeperSocketPath(stateDir: string): string {
  const direct = join(resolve(stateDir), 'keeper.sock');
  if (Buffer.byteLength(direct) <= MAX_SOCKET_PATH) return direct;
  const hash = createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 24);
  return join(shortDir(), `keeper-${hash}.sock`);
}

/** The private folder of short keeper socket paths in the temp dir. */
function shortDir(): string {
  return join(tmpdir(), `hookgate-${process.getuid?.() ?? 0}`);
}

/**
 * Makes the socket's folder (0700 when new). The short-path folder in the
 * shared temp dir must also already be ours and private, or this throws
 * with a message saying so: another user must not be able to place our
 * socket there. The state dir itself is the operator's to set up.
 */
export function ensureSocketDir(sockPath: string): void {
  const dir = dirname(sockPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (dir !== shortDir()) return;
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new Error(`the keeper's socket folder ${dir} must be a directory owned by this user with mode 0700`);
  }
}
