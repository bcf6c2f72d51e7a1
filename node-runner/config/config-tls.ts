/**
 * @module config-tls
 * How a runner reaches its config source without handing its credential
 * (or its trust) to whoever answers: which URLs are acceptable, and the
 * `fetch` the stream client uses, which verifies the source's certificate
 * before a request (and so the key) is written.
 *
 * - **URLs.** `https://` always; `http://` only to a loopback host
 *   (`127.0.0.0/8`, `[::1]`, `localhost`) unless the operator says
 *   `--insecure-config-url` (`urlProblem`).
 * - **Trust.** Without pins: the system's CAs, or `--config-ca FILE` (PEM)
 *   instead of them, and the host name, as any HTTPS client. With pins
 *   (`--config-pin sha256:<hex>`, the SHA-256 of the server certificate's
 *   SubjectPublicKeyInfo, DER): the certificate's key must be one of them,
 *   which is enough on its own (a self-signed certificate works); with a CA
 *   as well, both must hold. TLS sessions are not resumed while pinning, so
 *   every connection shows its certificate.
 *
 * The stream itself (events, backoff) is `config-stream.ts`'s; the CLI
 * reads the flags and files.
 */

import { createHash, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector, fetch as undiciFetch } from 'undici';

/** The error code of a certificate that matches no pin. */
export const PIN_MISMATCH = 'ERR_HOOKGATE_CONFIG_PIN';

export interface SourceTrust {
  /** PEM CA certificates trusted instead of the system's */
  ca?: string;
  /** accepted SPKI SHA-256 digests, lower-case hex (`parsePin`) */
  pins?: readonly string[];
}

/**
 * True for a loopback host as a URL spells it: `localhost`, an IPv4
 * address in 127.0.0.0/8, or `[::1]`.
 *
 * @example
 * isLoopbackHost('127.0.0.1') // true
 * isLoopbackHost('[::1]')     // true
 * isLoopbackHost('10.0.0.1')  // false
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return isIP(h) === 6 && (h === '::1' || h === '0:0:0:0:0:0:0:1');
}

/**
 * Why the runner refuses to follow `url` ('' when it may): not http(s), or
 * plain `http://` to a host that is not loopback without `insecure`.
 *
 * @example
 * urlProblem(new URL('http://config.internal:9000/v1/stream'), false) // '--config-url: ... refuses plain http ...'
 */
export function urlProblem(url: URL, insecure: boolean): string {
  if (url.protocol === 'https:') return '';
  if (url.protocol !== 'http:') return `--config-url: expected an http(s) URL, got "${url.href}"`;
  if (isLoopbackHost(url.hostname) || insecure) return '';
  return (
    `--config-url: refusing plain http to ${url.host}, which is not a loopback address: anyone on the path could read the key and serve configs; ` +
    'use https (hookgate config-server --tls-cert/--tls-key), or pass --insecure-config-url to accept the risk'
  );
}

/**
 * Parses a `--config-pin`: `sha256:` and 64 hex digits (colons between
 * bytes allowed, as `openssl` prints them). Returns lower-case hex, or
 * throws with a message saying what is expected.
 *
 * @example
 * parsePin('sha256:AB:CD:...') // 'abcd...'
 */
export function parsePin(pin: string): string {
  const m = /^sha256:([0-9a-fA-F:]+)$/.exec(pin.trim());
  const hex = m?.[1].replaceAll(':', '').toLowerCase() ?? '';
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new Error(`--config-pin: expected "sha256:<64 hex digits>" (the SHA-256 of the server certificate's public key, SPKI DER), got "${pin}"`);
  }
  return hex;
}

/**
 * The pin of a certificate: the SHA-256 of its SubjectPublicKeyInfo (DER),
 * lower-case hex. It survives a renewal that keeps the key.
 *
 * @example
 * spkiSha256(new X509Certificate(readFileSync('cert.pem'))) // '3f1a...'
 */
export function spkiSha256(cert: X509Certificate): string {
  return createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

/**
 * A `fetch` that verifies the config source as `trust` says before any
 * request is written. A certificate that matches no pin fails the request
 * with a `TypeError` whose `cause.code` is `PIN_MISMATCH`; nothing was sent.
 *
 * @example
 * const stream = new ConfigStream({ url, key, fetch: sourceFetch({ pins: [parsePin(flag)] }), ... });
 */
export function sourceFetch(trust: SourceTrust): typeof fetch {
  const pins = trust.pins ?? [];
  const connector = buildConnector({
    ...(trust.ca !== undefined ? { ca: trust.ca } : {}),
    // A pin is a trust anchor of its own: the chain must verify only when a CA is given too.
    rejectUnauthorized: pins.length === 0 || trust.ca !== undefined,
    ...(pins.length ? { maxCachedSessions: 0 } : {}),
  });
  const connect: buildConnector.connector = (options, callback) => {
    connector(options, (err, socket) => {
      if (err) return callback(err, null);
      if (pins.length && options.protocol === 'https:') {
        const cert = (socket as TLSSocket).getPeerX509Certificate?.();
        const pin = cert ? spkiSha256(cert) : '';
        if (!pins.includes(pin)) {
          socket.destroy();
          const shown = pin ? `sha256:${pin}` : 'none';
          return callback(Object.assign(new Error(`the config source's certificate (public key ${shown}) matches no --config-pin; the key was not sent`), { code: PIN_MISMATCH }), null);
        }
      }
      callback(null, socket);
    });
  };
  const agent = new Agent({ connect });
  return ((input: string | URL, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch;
}
