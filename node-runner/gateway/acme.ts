/**
 * @module acme
 * `gateway.acme`: certificates for the exact domains of the routes from an
 * ACME CA (RFC 8555, through `acme-client`), obtained and renewed by the
 * runner, the one supervisor, whether it serves the gateway itself or has
 * gateway workers: they only read the challenge files it writes.
 *
 * - **Which domains.** Every alternative of a route's `match.domain` that
 *   is an exact DNS name (no `*`, not an IP address, at least two labels),
 *   once, one certificate each, stored as `certs/<domain>.crt` + `.key`
 *   (acme-store.ts) for a dir-based TLS store to serve. A domain that
 *   leaves the routes is no longer renewed; its files stay.
 * - **When.** A domain with no usable certificate is ordered at once; one
 *   with a certificate is renewed `renew_before` ahead of its expiry (by
 *   default a third of its lifetime: 30 days for 90-day certificates). A
 *   failed order is tried again after the project's backoff (`Retry`:
 *   1 min doubling to 6 h, ±20 % jitter), per domain, and succeeds back to
 *   the normal rhythm. Time is the injected wall clock; timers are capped
 *   at 6 h so a long wait notices a clock change.
 * - **Never blocking traffic.** Orders run in the background, one at a
 *   time; the gateway serves with whatever certificates it has meanwhile,
 *   an old one until the new one is in place. An order that takes longer
 *   than `attemptTimeoutMs` (15 min) counts as failed and its late result
 *   is dropped.
 * - **HTTP-01** (default). The key authorization is written to
 *   `challenges/<token>` (acme-challenges.ts) before the CA is told to
 *   validate, and removed after, whatever the outcome. The client's own
 *   pre-check (fetching the challenge from port 80 itself) is skipped: from
 *   behind NAT or a load balancer it proves nothing.
 * - **TLS-ALPN-01** (`challenge: "tls-alpn-01"`). The challenge
 *   certificate is written to `alpn/<domain>.pem` (acme-tls-alpn.ts) for
 *   the TLS listener to present to `acme-tls/1` clients, removed after.
 * - **Trust.** `ca` (a PEM file) is trusted for the directory's own TLS,
 *   on requests to the directory's origin only, through an HTTPS agent of
 *   this manager's; nothing turns verification off.
 *
 * Serving the certificates is the TLS listener's business; answering
 * challenges, the gateway's (`serveChallenge`).
 */

import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Client, ClientAutoOptions } from 'acme-client';
import { Counter, type Registry } from 'prom-client';
import { systemClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';
import { ConfigError, type AcmeSettings, type Config, type GatewaySettings } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';
import { Retry } from '../retry.ts';
import { ChallengeFiles } from './acme-challenges.ts';
import { AlpnChallengeFiles } from './acme-tls-alpn.ts';
import { AcmeStore, type StoredCert } from './acme-store.ts';

/** `gateway.acme` with its storage dir resolved. */
export type AcmeConfig = AcmeSettings & { storage: string };

/** The longest a scheduling timer waits before looking at the clock again. */
const MAX_TIMER_MS = 6 * 3_600_000;

/** One request to the CA (acme-client sets none: a CA that stops answering would hold an order forever). */
const REQUEST_TIMEOUT_MS = 30_000;

const DNS_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

/**
 * The domains ACME gets certificates for: each exact DNS name among the
 * routes' `match.domain` alternatives, lower-cased, once, sorted.
 *
 * @example
 * acmeDomains(config) // routes with "a.test, *.b.test" and "A.test" → ['a.test']
 */
export function acmeDomains(config: Pick<Config, 'routes'>): string[] {
  const out = new Set<string>();
  for (const r of config.routes) {
    for (const alt of (r.match?.domain ?? '').split(',')) {
      const d = alt.trim().toLowerCase().replace(/\.$/, '');
      if (d && !d.includes('*') && isIP(d) === 0 && DNS_NAME.test(d)) out.add(d);
    }
  }
  return [...out].sort();
}

/**
 * The gateway settings with `acme.storage` made absolute: as configured,
 * else `<stateDir>/acme`. Without either, ACME has nowhere to keep its
 * account and certificates: `BAD_CONFIG` naming `gateway.acme.storage`
 * (and naming `gateway.acme.challenge` for tls-alpn-01, which no listener
 * answers yet).
 *
 * @example
 * const limits = withAcmeStorage(config.gateway, '/var/lib/hookgate'); // limits.acme.storage === '/var/lib/hookgate/acme'
 */
export function withAcmeStorage<T extends Partial<Pick<GatewaySettings, 'acme'>>>(limits: T, stateDir: string | undefined): Omit<T, 'acme'> & { acme?: AcmeConfig } {
  const acme = limits.acme;
  if (!acme) return limits as Omit<T, 'acme'>;
  // The manager and the responder do TLS-ALPN-01 (acme-tls-alpn.ts); the listeners do not hand acme-tls/1 connections to it yet.
  if (acme.challenge === 'tls-alpn-01') {
    throw new ConfigError(['gateway.acme.challenge: "tls-alpn-01" needs a TLS listener that answers acme-tls/1 handshakes, which this gateway does not have yet; use "http-01"']);
  }
  if (acme.storage) return { ...limits, acme: { ...acme, storage: acme.storage } };
  if (!stateDir) {
    throw new ConfigError([
      'gateway.acme.storage: ACME keeps its account key and certificates on disk, and this runner has no state dir: set gateway.acme.storage to a private folder, or run with --state-dir',
    ]);
  }
  return { ...limits, acme: { ...acme, storage: join(stateDir, 'acme') } };
}

/** One domain's certificate as the admin API shows it. */
export interface AcmeCertStatus {
  domain: string;
  /** the stored certificate, if any */
  cert_file: string | null;
  not_before: string | null;
  not_after: string | null;
  /** when the next order is due (a renewal, or the retry after a failure) */
  next_order: string;
  /** orders failed since the last success */
  failures: number;
  last_error: string | null;
}

export interface AcmeManagerOptions {
  settings: AcmeConfig;
  logger: Logger;
  /** the wall clock (ms since the epoch) certificates expire by; default `systemClock` */
  clock?: Clock;
  /** where `hookgate_acme_renewals_total{result}` goes (default: nowhere) */
  registry?: Registry;
  /** the delay after a failed order: `baseMs` doubling up to `maxMs` (default 1 min to 6 h) */
  backoff?: { baseMs: number; maxMs: number };
  /** jitter source of the backoff (tests pin it) */
  random?: () => number;
  /** how long one order may take before it counts as failed (default 15 min) */
  attemptTimeoutMs?: number;
  /** how the client polls a challenge or order for its status (acme-client's backoff; default 10 polls, 5 s to 30 s, or from HOOKGATE_ACME_POLL_MS) */
  poll?: { attempts: number; minMs: number; maxMs: number };
  /** told of each certificate stored (to reload a TLS store) */
  onIssued?: (cert: StoredCert) => void;
}

interface Entry {
  domain: string;
  cert: StoredCert | null;
  /** wall-clock ms of the next order */
  dueAt: number;
  retry: Retry;
  failures: number;
  lastError: string | null;
}

/**
 * The ACME holder of one runner.
 *
 * Contract: `start(domains)` once; it opens the storage dir (throws
 * `UNSAFE_PATH` for one that is not private) and schedules orders in the
 * background, never waiting for one. `setDomains` may be called any time
 * (each config applied); it is idempotent. `stop()` is idempotent: no
 * order starts after it, one in flight stores nothing, and the challenge
 * files are withdrawn; it does not wait for the CA.
 */
export class AcmeManager {
  readonly store: AcmeStore;
  #opts: AcmeManagerOptions;
  #log: Logger;
  #clock: Clock;
  #challenges: ChallengeFiles;
  #alpn: AlpnChallengeFiles;
  #entries = new Map<string, Entry>();
  #timer: TimerHandle | null = null;
  #running = false;
  #stopped = false;
  #client: Promise<Client> | null = null;
  #interceptor: { eject(): void } | null = null;
  #renewals: Counter<'result'> | null = null;
  /** resolves when the orders due now are done (tests and stop) */
  #idle: Promise<void> = Promise.resolve();

  constructor(opts: AcmeManagerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#clock = opts.clock ?? systemClock;
    this.store = new AcmeStore(opts.settings.storage);
    this.#challenges = new ChallengeFiles(this.store.challengesDir);
    this.#alpn = new AlpnChallengeFiles(this.store.alpnDir);
    if (opts.registry) {
      this.#renewals = new Counter({
        name: 'hookgate_acme_renewals_total',
        help: 'ACME orders (first certificates and renewals) by result: success, failure',
        labelNames: ['result'],
        registers: [opts.registry],
      });
    }
  }

  start(domains: readonly string[]): void {
    this.store.open();
    this.#challenges.clear();
    this.#alpn.clear();
    this.setDomains(domains);
  }

  /** The domains to hold certificates for, from now on. */
  setDomains(domains: readonly string[]): void {
    if (this.#stopped) return;
    const want = new Set(domains);
    for (const d of this.#entries.keys()) if (!want.has(d)) this.#entries.delete(d);
    const now = this.#clock.now();
    for (const domain of want) {
      if (this.#entries.has(domain)) continue;
      const cert = this.store.read(domain);
      const { baseMs, maxMs } = this.#opts.backoff ?? { baseMs: 60_000, maxMs: MAX_TIMER_MS };
      const entry: Entry = { domain, cert, dueAt: cert ? this.#renewAt(cert) : now, retry: new Retry({ baseMs, maxMs, clock: this.#clock, random: this.#opts.random }), failures: 0, lastError: null };
      this.#entries.set(domain, entry);
      if (cert) this.#log.info({ domain, not_after: new Date(cert.notAfter).toISOString(), renew_at: new Date(entry.dueAt).toISOString() }, 'ACME certificate found in storage');
    }
    this.#schedule();
  }

  /** Each domain's certificate and schedule, by domain. */
  status(): AcmeCertStatus[] {
    return [...this.#entries.values()]
      .sort((a, b) => (a.domain < b.domain ? -1 : 1))
      .map((e) => ({
        domain: e.domain,
        cert_file: e.cert?.certFile ?? null,
        not_before: e.cert ? new Date(e.cert.notBefore).toISOString() : null,
        not_after: e.cert ? new Date(e.cert.notAfter).toISOString() : null,
        next_order: new Date(e.dueAt).toISOString(),
        failures: e.failures,
        last_error: e.lastError,
      }));
  }

  /** Resolves once no order is due or running (the clock not moving meanwhile). */
  async idle(): Promise<void> {
    for (;;) {
      const current = this.#idle;
      await current;
      if (current === this.#idle && !this.#running) return;
    }
  }

  stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#clock.clearTimeout(this.#timer);
      this.#timer = null;
      this.#interceptor?.eject();
      this.#challenges.clear();
      this.#alpn.clear();
    }
    return Promise.resolve();
  }

  /**
   * When `cert` is due for renewal: `renew_before` ahead of its expiry, else
   * at two thirds of its lifetime. At most half the lifetime ahead, so that
   * a CA issuing shorter certificates than `renew_before` (6-day ones) does
   * not get an order for each certificate it just issued.
   */
  #renewAt(cert: StoredCert): number {
    const lifetime = cert.notAfter - cert.notBefore;
    return cert.notAfter - Math.min(this.#opts.settings.renew_before ?? lifetime / 3, lifetime / 2);
  }

  #schedule(): void {
    if (this.#stopped || this.#running) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    let next = Infinity;
    for (const e of this.#entries.values()) next = Math.min(next, e.dueAt);
    if (next === Infinity) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next - this.#clock.now()));
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.#idle = this.#runDue();
    }, delay, true);
  }

  /** Orders every due domain, one at a time, then schedules the next wake-up. */
  async #runDue(): Promise<void> {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    try {
      for (;;) {
        const now = this.#clock.now();
        const due = [...this.#entries.values()].filter((e) => e.dueAt <= now).sort((a, b) => a.dueAt - b.dueAt)[0];
        if (!due || this.#stopped) break;
        await this.#order(due);
      }
    } finally {
      this.#running = false;
      this.#schedule();
    }
  }

  async #order(e: Entry): Promise<void> {
    const renewal = e.cert !== null;
    this.#log.info({ domain: e.domain, renewal }, renewal ? 'ACME: renewing the certificate' : 'ACME: ordering a certificate');
    let deadline: TimerHandle | null = null;
    try {
      const timeoutMs = this.#opts.attemptTimeoutMs ?? 15 * 60_000;
      const issued = await Promise.race([
        this.#issue(e.domain),
        new Promise<never>((_, reject) => {
          deadline = this.#clock.setTimeout(() => reject(new Error(`the order took longer than ${Math.round(timeoutMs / 1000)} s`)), timeoutMs, true);
        }),
      ]);
      if (this.#stopped || this.#entries.get(e.domain) !== e) return;
      const cert = this.store.save(e.domain, issued.cert, issued.key);
      e.cert = cert;
      e.failures = 0;
      e.lastError = null;
      e.retry.reset();
      e.dueAt = this.#renewAt(cert);
      this.#renewals?.inc({ result: 'success' });
      this.#log.info({ domain: e.domain, renewal, serial: cert.serial, not_after: new Date(cert.notAfter).toISOString(), renew_at: new Date(e.dueAt).toISOString(), file: cert.certFile }, 'ACME: certificate stored');
      this.#opts.onIssued?.(cert);
    } catch (err) {
      if (this.#stopped) return;
      const delay = e.retry.nextDelay();
      e.failures++;
      e.lastError = errorText(err);
      e.dueAt = this.#clock.now() + delay;
      this.#renewals?.inc({ result: 'failure' });
      const left = e.cert ? Math.round((e.cert.notAfter - this.#clock.now()) / 86_400_000) : null;
      this.#log.warn({ domain: e.domain, renewal, err: e.lastError, failures: e.failures, retry_in_ms: delay, ...(left !== null ? { days_left: left } : {}) }, 'ACME: the order failed; trying again after a backoff');
    } finally {
      this.#clock.clearTimeout(deadline);
    }
  }

  /** One order for `domain`: a new key, a CSR, the challenge (HTTP-01 or TLS-ALPN-01) published, the chain fetched. */
  async #issue(domain: string): Promise<{ cert: string; key: string }> {
    const acme = await import('acme-client');
    const client = await (this.#client ??= this.#newClient().catch((err) => {
      this.#client = null;
      throw err;
    }));
    const key = (this.#opts.settings.key_type === 'rsa' ? await acme.crypto.createPrivateRsaKey(2048) : await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    const [, csr] = await acme.crypto.createCsr({ commonName: domain, altNames: [domain] }, key);
    const type = this.#opts.settings.challenge;
    const opts: ClientAutoOptions = {
      csr,
      email: this.#opts.settings.email,
      termsOfServiceAgreed: true,
      challengePriority: [type],
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type !== type) throw new Error(`ACME offered no ${type} challenge for ${domain} (got ${challenge.type})`);
        if (type === 'http-01') return void this.#challenges.put(challenge.token, keyAuthorization);
        const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
        this.#alpn.put(authz.identifier.value, alpnCert.toString(), alpnKey.toString());
      },
      challengeRemoveFn: async (authz, challenge) => {
        if (challenge.type === 'http-01') this.#challenges.remove(challenge.token);
        else this.#alpn.remove(authz.identifier.value);
      },
    };
    const cert = await client.auto(opts);
    return { cert, key };
  }

  async #newClient(): Promise<Client> {
    const acme = await import('acme-client');
    const s = this.#opts.settings;
    if (!this.#interceptor) {
      const origin = new URL(s.directory).origin;
      const agent = s.ca ? new Agent({ ca: readFileSync(s.ca, 'utf8'), keepAlive: true }) : null;
      // acme-client's one axios instance is shared by every client in the process:
      // the CA and the timeout apply to requests to this directory's origin only.
      const id = acme.axios.interceptors.request.use((config) => {
        if (config.url && URL.canParse(config.url) && new URL(config.url).origin === origin) {
          if (agent) config.httpsAgent = agent;
          config.timeout ||= REQUEST_TIMEOUT_MS;
        }
        return config;
      });
      this.#interceptor = {
        eject: () => {
          acme.axios.interceptors.request.eject(id);
          agent?.destroy();
        },
      };
    }
    let accountKey = this.store.accountKey();
    if (!accountKey) {
      accountKey = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
      this.store.saveAccountKey(accountKey);
      this.#log.info({ file: join(this.store.dir, 'account.key') }, 'ACME: new account key');
    }
    // HOOKGATE_ACME_POLL_MS: the first poll delay (tests against a local CA that answers at once).
    const envPoll = Number(process.env.HOOKGATE_ACME_POLL_MS);
    const poll = this.#opts.poll ?? (envPoll > 0 ? { attempts: 30, minMs: envPoll, maxMs: Math.max(envPoll, 5000) } : undefined);
    return new acme.Client({
      directoryUrl: s.directory,
      accountKey,
      ...(poll ? { backoffAttempts: poll.attempts, backoffMin: poll.minMs, backoffMax: poll.maxMs } : {}),
    });
  }
}

/** An error's message, with the ACME problem's detail when the CA sent one. */
function errorText(err: unknown): string {
  const e = err as { message?: string; response?: { data?: { detail?: string } } };
  return e?.response?.data?.detail ?? e?.message ?? String(err);
}
