/**
 * @module config/values
 * The config's small value types, each a valibot schema with the message
 * users see: durations (`"500ms"`, `"2m"`), RFC 3339 timestamps, listen
 * addresses, `host:port` targets, connection counts and header names,
 * with the plain functions they are checked and parsed by.
 */

import * as v from 'valibot';

/**
 * Parses a duration: a number of milliseconds, or a string like `"500ms"`,
 * `"2s"`, `"1m"`, `"1.5s"`. Returns NaN when it is not one.
 *
 * @example
 * parseDuration('2s') // 2000
 */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') return input >= 0 && Number.isFinite(input) ? input : NaN;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(input);
  if (!m) return NaN;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000));
}

export const Duration = v.pipe(
  v.union([v.string(), v.number()], 'expected a duration such as "2s", "500ms" or a number of milliseconds'),
  v.transform((x) => parseDuration(x)),
  v.check((n) => !Number.isNaN(n), 'expected a duration such as "2s", "500ms" or a number of milliseconds'),
);

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 timestamp, whose offset (`Z` or `±hh:mm`) is
 * mandatory, into milliseconds since the epoch. Returns NaN for anything
 * else: no offset, a short offset (`+05`), a day the month does not have.
 *
 * @example
 * parseTimestamp('2027-01-01T02:00:00+02:00') // 1798761600000
 * parseTimestamp('2020-01-01T00:00:00+05')    // NaN
 */
export function parseTimestamp(input: string): number {
  const m = RFC3339.exec(input);
  if (!m) return NaN;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const offH = Number(m[9] ?? 0);
  const offM = Number(m[10] ?? 0);
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  if (month < 1 || month > 12 || d.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59 || offH > 23 || offM > 59) return NaN;
  const ms = m[7] ? Number(`${m[7].slice(1)}00`.slice(0, 3)) : 0;
  const offset = (m[8] === '-' ? -1 : 1) * (offH * 60 + offM) * 60_000;
  return d.getTime() + ((hour * 60 + minute) * 60 + second) * 1000 + ms - offset;
}

const TIMESTAMP_MESSAGE = 'expected an ISO 8601 timestamp with a "Z" or "±hh:mm" offset (RFC 3339), such as "2027-01-01T00:00:00Z"';

/** An RFC 3339 timestamp, parsed to ms since the epoch at validation. */
export const Timestamp = v.pipe(
  v.string(TIMESTAMP_MESSAGE),
  v.transform(parseTimestamp),
  v.check((n) => !Number.isNaN(n), TIMESTAMP_MESSAGE),
);

export const Listen = v.pipe(
  v.string(),
  v.regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:8080"'),
  v.check((s) => {
    const port = Number(s.slice(s.lastIndexOf(':') + 1));
    return port >= 0 && port <= 65535;
  }, 'expected a port from 0 to 65535'),
);

/** Whether a `host:port` listen address is on loopback (127.0.0.0/8, [::1], localhost). */
export function isLoopbackListen(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '::1' || host === '0:0:0:0:0:0:0:1';
}

const HOST_PORT = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/;

/**
 * True when `t` is a `host:port` target safe to put into an upstream URL
 * (a host name, IPv4 or bracketed IPv6, and a port 1-65535; nothing else).
 *
 * @example
 * isTarget('10.0.0.1:3000') // true
 * isTarget('evil.com/x:80') // false
 */
export function isTarget(t: unknown): t is string {
  if (typeof t !== 'string') return false;
  const m = HOST_PORT.exec(t);
  if (!m) return false;
  const port = Number(m[1]);
  return port >= 1 && port <= 65535;
}

export const Target = v.pipe(v.string(), v.check((t: string) => isTarget(t), 'expected a "host:port" target'));

/** A number of connections; `min` 0 lets 0 mean "no limit". */
export const ConnectionCount = (min: 0 | 1) =>
  v.pipe(
    v.number('expected a number of connections'),
    v.integer('expected a whole number of connections'),
    v.minValue(min, min === 0 ? 'expected 0 (no limit) or more' : 'expected at least 1'),
  );

export const HeaderValues = v.record(v.string(), v.string());

/** A header name (an HTTP token), as `strip_request_headers` lists them. */
export const HeaderName = v.pipe(v.string(), v.regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'expected a header name (an HTTP token such as "X-User")'));
