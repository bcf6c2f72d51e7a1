/**
 * @module test/helpers/apt
 * Debian packages the tests need (etcd-server, pebble), installed with apt
 * when missing, as root (as in CI), so those tests never skip.
 */

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * The first of `binaries` that exists, after installing `pkg` with apt
 * when none does; throws saying how to install it when this is not root.
 *
 * @example
 * const etcd = ensureAptPackage('etcd-server', ['/usr/bin/etcd', '/usr/local/bin/etcd']);
 */
export function ensureAptPackage(pkg: string, binaries: string[]): string {
  const found = binaries.find((p) => existsSync(p));
  if (found) return found;
  if (process.getuid?.() !== 0) throw new Error(`${binaries[0]} is not installed and this is not root: apt-get install ${pkg}`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 300_000 });
  execFileSync('apt-get', ['install', '-y', '-qq', pkg], { stdio: 'ignore', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const installed = binaries.find((p) => existsSync(p));
  if (!installed) throw new Error(`apt-get install ${pkg} did not install ${binaries[0]}`);
  return installed;
}
