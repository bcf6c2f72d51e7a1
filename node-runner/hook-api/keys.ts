/**
 * @module keys
 * The runner's API keys (`runner.keys`): secrets from the config or from
 * environment variables, checked in constant time, with optional expiry
 * (`expires_at`, already ms since the epoch: the schema parses it, so an
 * unparseable one never gets this far).
 */

import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';

export interface Key {
  id: string;
  /** ms since the epoch, or null for no expiry */
  expiresAt: number | null;
}

/** Why a key check failed. */
export type KeyRejection = 'missing' | 'unknown' | 'expired';

interface Entry extends Key {
  digest: Buffer;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * The keys of one config. Immutable; a new config makes a new ring.
 *
 * @example
 * const ring = KeyRing.fromConfig(config, process.env, log);
 * const key = ring.verify(request.headers.get('authorization'));
 * if (!key) return new Response(null, { status: 401 });
 */
export class KeyRing {
  #entries: Entry[];

  constructor(entries: Array<{ id: string; secret: string; expiresAt: number | null }>) {
    this.#entries = entries.map((e) => ({ id: e.id, expiresAt: e.expiresAt, digest: digest(e.secret) }));
  }

  /** Builds the ring of `runner.keys`; a key whose `secret_env` is unset is left out, with an error logged. */
  static fromConfig(config: Config, env: NodeJS.ProcessEnv, log: Logger): KeyRing {
    return KeyRing.fromKeys(config.runner.keys, env, log, 'runner');
  }

  /** The ring of a key list (`runner.keys`, `admin.keys`); `what` names the list in log lines. */
  static fromKeys(keys: Config['runner']['keys'], env: NodeJS.ProcessEnv, log: Logger, what: string): KeyRing {
    const entries: Array<{ id: string; secret: string; expiresAt: number | null }> = [];
    for (const k of keys) {
      const secret = k.secret ?? (k.secret_env ? env[k.secret_env] : undefined);
      if (!secret) {
        log.error({ key: k.id, secret_env: k.secret_env }, `${what} key has no secret: its environment variable is unset; the key is disabled`);
        continue;
      }
      entries.push({ id: k.id, secret, expiresAt: k.expires_at ?? null });
    }
    return new KeyRing(entries);
  }

  get size(): number {
    return this.#entries.length;
  }

  /**
   * Returns the key an `Authorization: Bearer <secret>` header names, or null
   * when it is missing, unknown or expired. Every key is compared (fixed-size
   * digests, constant time), so timing says nothing about which matched.
   */
  verify(authorization: string | null | undefined, now = Date.now()): Key | null {
    const r = this.check(authorization, now);
    return 'reason' in r ? null : r;
  }

  /**
   * `verify`, saying why a header is refused: `missing` (no
   * `Authorization: Bearer …`), `unknown` (no key has that secret),
   * `expired`. Same constant-time comparison.
   *
   * @example
   * const r = ring.check(req.headers.authorization);
   * if ('reason' in r) rejections.inc({ reason: r.reason });
   */
  check(authorization: string | null | undefined, now = Date.now()): Key | { reason: KeyRejection } {
    if (!authorization || !authorization.startsWith('Bearer ')) return { reason: 'missing' };
    const given = digest(authorization.slice(7).trim());
    let found: Entry | null = null;
    for (const e of this.#entries) {
      if (timingSafeEqual(e.digest, given) && !found) found = e;
    }
    if (!found) return { reason: 'unknown' };
    // `!(now < t)`: an expiry that is not a number fails closed.
    if (found.expiresAt !== null && !(now < found.expiresAt)) return { reason: 'expired' };
    return { id: found.id, expiresAt: found.expiresAt };
  }
}
