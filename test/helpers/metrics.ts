/**
 * @module test/helpers/metrics
 * Reading a Prometheus text exposition in tests: one sample's value by
 * name and labels.
 */

/**
 * The value of the first sample line named `name` whose labels include
 * `labels` (null when there is none).
 *
 * @example
 * sample(text, 'hookgate_http_requests_total', { route: 'api', code: '200' }) // 3
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (.+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return null;
}
