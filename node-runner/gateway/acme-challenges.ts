/**
 * @module acme-challenges
 * ACME HTTP-01 challenge responses (RFC 8555 §8.3) shared between the
 * process that holds ACME (the runner) and every process that serves the
 * plain-HTTP gateway (the runner itself, or its gateway workers).
 *
 * They go through files, `<storage>/challenges/<token>` holding the key
 * authorization, rather than the runner's IPC to its workers: a file
 * written (atomically) before the ACME server is told to validate is seen
 * at once by every worker, with no acknowledgement protocol, by a worker
 * started or restarted in the middle of an order too, and by the runner's
 * own listener alike.
 *
 * The token in the request is checked before it names a file: base64url
 * characters only (what RFC 8555 allows), at most 256, so no `/`, `.`,
 * `%` or NUL can reach the path. `GET` and `HEAD` of
 * `/.well-known/acme-challenge/<token>` (the raw target, a query ignored)
 * are answered before routing, on any Host: the key authorization is no
 * secret (the token joined with the account key's thumbprint). Anything
 * else under that prefix is 404, since the gateway owns it once ACME is on.
 *
 * Running the orders is `acme.ts`'s business; files on disk `acme-store.ts`'s.
 */

import { mkdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { removeFiles, writeFileAtomic } from './acme-store.ts';

/** The path prefix of HTTP-01 challenge requests. */
export const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * Whether `token` may name a challenge file: base64url characters only, 1
 * to 256 of them.
 *
 * @example
 * isChallengeToken('evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA') // true
 * isChallengeToken('../../etc/passwd')                            // false
 */
export function isChallengeToken(token: string): boolean {
  return TOKEN.test(token);
}

/**
 * The challenge responses the ACME holder publishes, as files in `dir`
 * (made 0700 when missing).
 *
 * Contract: `put` returns once the file is in place (every reader sees it);
 * `remove` and `clear` never throw for files already gone. Not for several
 * holders at once: one runner holds a storage dir.
 */
export class ChallengeFiles {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Publishes `keyAuthorization` for `token`. Throws for a token that is not base64url. */
  put(token: string, keyAuthorization: string): void {
    if (!isChallengeToken(token)) throw new Error(`ACME challenge token ${JSON.stringify(token)} is not base64url`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(join(this.dir, token), keyAuthorization, 0o644);
  }

  /** Withdraws the response for `token`. */
  remove(token: string): void {
    if (isChallengeToken(token)) removeFiles(this.dir, (name) => name === token);
  }

  /** Withdraws every response (left over by a holder that died mid-order). */
  clear(): void {
    removeFiles(this.dir, isChallengeToken);
  }
}

/**
 * The challenge dir the gateway answers from: `<gateway.acme.storage>/challenges`,
 * or null without ACME (the storage resolved by the runner, `withAcmeStorage`).
 *
 * @example
 * challengeDir({ acme: { storage: '/var/lib/hookgate/acme' } }) // '/var/lib/hookgate/acme/challenges'
 */
export function challengeDir(limits: { acme?: { storage?: string } }): string | null {
  const storage = limits.acme?.storage;
  return storage ? join(storage, 'challenges') : null;
}

/**
 * Answers an HTTP-01 challenge request from the files in `dir`, and says
 * whether it did: false for any request outside the challenge prefix
 * (routing goes on), true when it answered (200 with the key
 * authorization, or 404 for an unknown or malformed token or another
 * method than GET/HEAD: the prefix is the gateway's once ACME is on).
 *
 * @example
 * if (dir && serveChallenge(dir, req, res)) return;
 */
export function serveChallenge(dir: string, req: IncomingMessage, res: ServerResponse): boolean {
  const url = req.url ?? '';
  if (!url.startsWith(CHALLENGE_PREFIX)) return false;
  const q = url.indexOf('?');
  const token = url.slice(CHALLENGE_PREFIX.length, q < 0 ? undefined : q);
  let body: string | null = null;
  if ((req.method === 'GET' || req.method === 'HEAD') && isChallengeToken(token)) {
    try {
      body = readFileSync(join(dir, token), 'utf8');
    } catch {
      // no such challenge
    }
  }
  const text = body ?? 'no such ACME challenge\n';
  res.writeHead(body === null ? 404 : 200, { 'content-type': body === null ? 'text/plain; charset=utf-8' : 'application/octet-stream', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : text);
  return true;
}
