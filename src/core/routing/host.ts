/**
 * @module routing/host
 * The Host header as routing reads it: `hostOf` (the host a route's domain
 * pattern is compared with) and `hostProblem` (a Host header that cannot be
 * routed by, answered 400). Matching domain patterns is
 * `domain-pattern.ts`'s business.
 */

/**
 * The host of a Host header: port removed, lower-cased. A bracketed IPv6
 * literal keeps its brackets; a trailing dot is dropped because
 * `example.com.` names the same host as `example.com`, and a route for one
 * must not be bypassed by sending the other.
 *
 * @example
 * hostOf('API.Example.com:8443') // 'api.example.com'
 * hostOf('[::1]:8080')           // '[::1]'
 */
export function hostOf(hostHeader: string): string {
  let h = hostHeader;
  if (h.charCodeAt(0) === 91 /* [ */) {
    const close = h.indexOf(']');
    if (close !== -1) h = h.slice(0, close + 1);
  } else {
    const colon = h.indexOf(':');
    // A bare IPv6 address has several colons and no port we could tell apart.
    if (colon !== -1 && h.indexOf(':', colon + 1) === -1) h = h.slice(0, colon);
    if (h.charCodeAt(h.length - 1) === 46 /* . */) h = h.slice(0, -1);
  }
  return h.toLowerCase();
}

const HOST_HEADER = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?$/;

/**
 * Why the Host headers of a request cannot be routed by, as the line of a
 * 400 body; '' when there is exactly one and it is a host name, an IPv4
 * address or a bracketed IPv6 address, with an optional port. More than one
 * Host, or one holding a list (`a.example.com,b.example.com`), userinfo or
 * anything else, would let the route and the upstream read different hosts.
 * The data plane passes every Host header it received (Node: from
 * `rawHeaders`, where duplicates are still visible).
 *
 * @example
 * hostProblem(['api.example.com:8443']) // ''
 * hostProblem(['a.example.com', 'b.example.com']) // 'bad request: more than one Host header\n'
 */
export function hostProblem(hosts: readonly string[]): string {
  if (hosts.length > 1) return 'bad request: more than one Host header\n';
  const h = hosts.length ? hosts[0] : '';
  if (h === '') return 'bad request: missing Host header\n';
  const m = HOST_HEADER.exec(h);
  if (!m || (m[1] !== undefined && Number(m[1]) > 65535)) return 'bad request: the Host header is not a host name with an optional port\n';
  return '';
}

/** True when `host` is not already what hostOf would return. */
export function needsHostOf(host: string): boolean {
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if ((c >= 65 && c <= 90) || c === 58 /* : */) return true;
  }
  return host.charCodeAt(host.length - 1) === 46;
}

