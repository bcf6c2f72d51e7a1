/**
 * @module gateway/certificates
 * The certificate stores of a process's TLS listeners, as one thing to
 * list (admin `GET /api/certificates`, the expiry gauge), reload (SIGHUP),
 * extend with a folder (ACME) and close. The runner holds one for the
 * listeners it serves, or, with gateway workers, for listing while each
 * worker holds its own (the runner forwards reloads and added folders).
 */

import { Gauge, type Registry } from 'prom-client';
import type { CertificateInfo } from './cert-store.ts';
import type { LoadedListener } from './listeners.ts';

/** A certificate as the admin API lists it: with the listener serving it. */
export interface ListedCertificate extends CertificateInfo {
  listener: string;
}

/**
 * Every TLS listener's store of one process.
 *
 * Contract: all methods are safe at any time and never throw but
 * `addDir` (an unreadable folder). `close()` is idempotent.
 */
export class ListenerCertificates {
  #listeners: LoadedListener[];

  constructor(listeners: LoadedListener[]) {
    this.#listeners = listeners.filter((l) => l.store !== null);
  }

  /** Whether any listener speaks TLS. */
  get any(): boolean {
    return this.#listeners.length > 0;
  }

  list(): ListedCertificate[] {
    return this.#listeners.flatMap((l) => l.store!.list().map((c) => ({ listener: l.settings.listen, ...c })));
  }

  /** Reloads every store from its files (each keeps its current set when its files are unusable). */
  reload(): void {
    for (const l of this.#listeners) l.store!.reload();
  }

  /**
   * Adds a folder of certificate pairs to the stores of the TLS listeners
   * (the one listening at `listen`, when given). Returns how many stores
   * took it. Throws `CertificateError` when the folder cannot be read.
   *
   * @example
   * certs.addDir('/var/lib/hookgate/acme/certs') // what the ACME module calls once it has written a pair
   */
  addDir(dir: string, listen?: string): number {
    let n = 0;
    for (const l of this.#listeners) {
      if (listen !== undefined && l.settings.listen !== listen) continue;
      l.store!.addDir(dir);
      n++;
    }
    return n;
  }

  watch(): void {
    for (const l of this.#listeners) l.store!.watch();
  }

  close(): void {
    for (const l of this.#listeners) l.store!.close();
  }
}

/**
 * `hookgate_tls_certificate_expiry_seconds{name}`: each served
 * certificate's not-after, in seconds since the epoch (alert on
 * `hookgate_tls_certificate_expiry_seconds - time() < 14 * 86400`).
 * `name` is the pair's name; `listener` tells listeners apart.
 */
export function certificateExpiryGauge(registry: Registry, list: () => ListedCertificate[]): void {
  new Gauge({
    name: 'hookgate_tls_certificate_expiry_seconds',
    help: 'When each certificate served by a TLS listener expires (not-after), in seconds since the epoch',
    labelNames: ['name', 'listener'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of list()) this.set({ name: c.name, listener: c.listener }, Math.floor(Date.parse(c.not_after) / 1000));
    },
  });
}
