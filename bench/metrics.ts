/**
 * `npm run bench:metrics`: what recording one request's metrics costs on
 * the request path, alone (no sockets, no processes), so the figure does
 * not drown in the noise of a shared machine: the gateway's recorder
 * (node-runner/admin/traffic-metrics.ts: a request, its upstream exchange
 * and one hook call) against the same samples through prom-client's own
 * `inc`/`observe` with label objects (what the recorder replaced). Three
 * rounds of 2 million requests each; prints ns per request.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { HOOK_BUCKETS, REQUEST_BUCKETS, trafficMetrics } from '../node-runner/admin/traffic-metrics.ts';

const N = 2_000_000;
for (let round = 1; round <= 3; round++) {
  const t = trafficMetrics(new Registry());
  let t0 = performance.now();
  for (let i = 0; i < N; i++) {
    t.request('bench', 'GET', 200, 0.001 * (i & 7), 120, 250);
    t.upstream('bench', 0.0005);
    t.hook('auth', 'on_request', 'allow', 0.0002);
  }
  const ours = ((performance.now() - t0) * 1e6) / N;
  const r = new Registry();
  const requests = new Counter({ name: 'a_total', help: 'a', labelNames: ['route', 'method', 'code'], registers: [r] });
  const duration = new Histogram({ name: 'b', help: 'b', labelNames: ['route'], buckets: REQUEST_BUCKETS, registers: [r] });
  const upstream = new Histogram({ name: 'u', help: 'u', labelNames: ['route'], buckets: REQUEST_BUCKETS, registers: [r] });
  const calls = new Counter({ name: 'c_total', help: 'c', labelNames: ['plugin', 'hook', 'outcome'], registers: [r] });
  const hookDuration = new Histogram({ name: 'd', help: 'd', labelNames: ['plugin', 'hook'], buckets: HOOK_BUCKETS, registers: [r] });
  t0 = performance.now();
  for (let i = 0; i < N; i++) {
    requests.inc({ route: 'bench', method: 'GET', code: '200' });
    duration.observe({ route: 'bench' }, 0.001 * (i & 7));
    upstream.observe({ route: 'bench' }, 0.0005);
    calls.inc({ plugin: 'auth', hook: 'on_request', outcome: 'allow' });
    hookDuration.observe({ plugin: 'auth', hook: 'on_request' }, 0.0002);
  }
  const prom = ((performance.now() - t0) * 1e6) / N;
  console.log(`round ${round}: per request (request, upstream, one hook call): recorder ${ours.toFixed(0)} ns; prom-client inc/observe ${prom.toFixed(0)} ns (bandwidth not included)`);
}
