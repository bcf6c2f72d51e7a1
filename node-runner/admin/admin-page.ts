/**
 * @module admin-page
 * The status page at `GET /` of the admin listener: one self-contained
 * HTML page (no CDN, no build step) that polls the admin API every 2 s and
 * shows the config version, routes with their balancers' targets, plugins
 * with state and restarts, and small charts of what changes over the last
 * few minutes, from `/metrics`: requests and errors (5xx, cut off) per
 * second, p50 and p99 of requests and of hook calls (from the histograms'
 * bucket deltas between two polls: a bucket's upper bound), and plugins
 * ready. The page holds no data itself: with `admin.keys` it asks for
 * a key once, keeps it in sessionStorage, and sends it with its calls.
 */

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hookgate status</title>
<style>
  :root { color-scheme: light dark; --fg: #1b1f24; --muted: #667; --bg: #fff; --card: #f5f6f8; --ok: #1a7f37; --bad: #cf222e; --line: #0969da; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9aa; --bg: #0d1117; --card: #161b22; --line: #58a6ff; } }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: var(--bg); color: var(--fg); }
  header { padding: 12px 20px; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; border-bottom: 1px solid var(--card); }
  header h1 { font-size: 18px; margin: 0; }
  .muted { color: var(--muted); }
  main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); }
  section { background: var(--card); border-radius: 8px; padding: 12px 14px; }
  h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 3px 6px; vertical-align: top; }
  th { font-weight: 600; color: var(--muted); }
  .ok { color: var(--ok); } .bad { color: var(--bad); }
  svg { width: 100%; height: 70px; }
  code { font-size: 12px; }
  #error { color: var(--bad); padding: 0 20px; }
  .foot { padding: 0 20px 16px; }
  section.wide { grid-column: 1 / -1; }
  td { word-break: break-word; }
</style>
</head>
<body>
<header>
  <h1>hookgate</h1>
  <span id="ready" class="muted">…</span>
  <span>config <code id="config">…</code></span>
  <span class="muted" id="uptime"></span>
  <span class="muted" id="version"></span>
</header>
<div id="error" role="alert"></div>
<main>
  <section><h2>Requests / s</h2><svg id="rate" viewBox="0 0 300 70" preserveAspectRatio="none"></svg><div class="muted" id="rate-now">–</div></section>
  <section><h2>Errors / s (5xx, cut off)</h2><svg id="errors" viewBox="0 0 300 70" preserveAspectRatio="none"></svg><div class="muted" id="errors-now">–</div></section>
  <section><h2>Request latency p50 / p99</h2><svg id="lat" viewBox="0 0 300 70" preserveAspectRatio="none"></svg><div class="muted" id="lat-now">–</div></section>
  <section><h2>Hook call latency p50 / p99</h2><svg id="hook-lat" viewBox="0 0 300 70" preserveAspectRatio="none"></svg><div class="muted" id="hook-lat-now">–</div></section>
  <section><h2>Plugins ready</h2><svg id="ready-chart" viewBox="0 0 300 70" preserveAspectRatio="none"></svg><div class="muted" id="ready-now">–</div></section>
  <section class="wide"><h2>Routes</h2><table id="routes"><thead><tr><th>id</th><th>match</th><th>plugins</th><th>targets</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Plugins</h2><table id="plugins"><thead><tr><th>name</th><th>state</th><th>pid</th><th>restarts</th><th>hooks</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
(() => {
  const KEY = 'hookgate-admin-key';
  const history = { rate: [], ready: [], errors: [], p50: [], p99: [], h50: [], h99: [] };
  let lastCount = null, lastAt = 0, asking = null, lastErrors = null, lastReq = null, lastHook = null, prevAt = 0;
  const $ = (id) => document.getElementById(id);
  const text = (v) => document.createTextNode(v == null ? '' : String(v));
  async function api(path) {
    const headers = {};
    const key = sessionStorage.getItem(KEY);
    if (key) headers.authorization = 'Bearer ' + key;
    const res = await fetch(path, { headers });
    if (res.status === 401) {
      // A key was given since this call went out: try it before asking again.
      const current = sessionStorage.getItem(KEY);
      if (current && current !== key) return api(path);
      // One question for all the calls that were refused together.
      if (!asking) asking = Promise.resolve().then(() => {
        const k = prompt(key ? 'That key was refused; the admin key (one of admin.keys):' : 'This admin API needs a key (one of admin.keys):');
        if (k) sessionStorage.setItem(KEY, k);
        return k;
      }).finally(() => setTimeout(() => { asking = null; }, 0));
      const k = await asking;
      if (k && k !== key) return api(path);
      throw new Error('no admin key');
    }
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    return path === '/metrics' ? res.text() : res.json();
  }
  function rows(tbody, items, cells) {
    tbody.replaceChildren(...items.map((it) => {
      const tr = document.createElement('tr');
      for (const c of cells(it)) { const td = document.createElement('td'); if (c instanceof Node) td.append(c); else td.append(text(c)); tr.append(td); }
      return tr;
    }));
  }
  function spark(svg, xs, ys) {
    const max = Math.max(1e-9, ...xs, ...(ys || []));
    const line = (vs, dash) => '<polyline fill="none" stroke="var(--line)" stroke-width="2"' + (dash ? ' stroke-dasharray="4 3"' : '') + ' points="' + vs.map((v, i) => (i * 300 / Math.max(1, vs.length - 1)).toFixed(1) + ',' + (68 - v / max * 64).toFixed(1)).join(' ') + '"/>';
    svg.innerHTML = line(xs, false) + (ys ? line(ys, true) : '');
  }
  /** Every sample of a metric: [labels text, value]. */
  function samples(metrics, name) {
    const out = [];
    for (const line of metrics.split('\\n')) {
      if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
      const sp = line.lastIndexOf(' ');
      out.push([line.slice(name.length, sp), Number(line.slice(sp + 1))]);
    }
    return out;
  }
  /** A histogram's cumulative counts by upper bound, summed over its series. */
  function buckets(metrics, name) {
    const by = new Map();
    for (const [labels, v] of samples(metrics, name + '_bucket')) {
      const le = /le="([^"]*)"/.exec(labels);
      if (le) by.set(le[1], (by.get(le[1]) || 0) + v);
    }
    return by;
  }
  /** The q-quantile (upper bound of its bucket, ms) of what was observed between two bucket snapshots; null when nothing was. */
  function quantile(now, before, q) {
    const les = [...now.keys()].sort((a, b) => (a === '+Inf' ? Infinity : Number(a)) - (b === '+Inf' ? Infinity : Number(b)));
    const d = les.map((le) => now.get(le) - ((before && before.get(le)) || 0));
    const total = d[d.length - 1];
    if (!total) return null;
    for (let i = 0; i < les.length; i++) if (d[i] >= q * total) return les[i] === '+Inf' ? Number(les[i - 1] || 0) * 1000 : Number(les[i]) * 1000;
    return null;
  }
  const ms = (v) => (v === null ? '–' : v < 1 ? v.toFixed(2) : v.toFixed(v < 10 ? 1 : 0)) + ' ms';
  function counter(metrics, name) {
    let sum = 0, seen = false;
    for (const line of metrics.split('\\n')) {
      if (line.startsWith(name + '{') || line.startsWith(name + ' ')) { sum += Number(line.slice(line.lastIndexOf(' ') + 1)); seen = true; }
    }
    return seen ? sum : null;
  }
  function state(p) { const s = document.createElement('span'); s.className = p.ready ? 'ok' : 'bad'; s.textContent = p.state; return s; }
  async function tick() {
    try {
      const [o, r, p, m] = await Promise.all([api('/api/overview'), api('/api/routes'), api('/api/plugins'), api('/metrics')]);
      $('error').textContent = '';
      $('ready').textContent = o.ready ? 'ready' : 'not ready';
      $('ready').className = o.ready ? 'ok' : 'bad';
      $('config').textContent = o.config ? o.config.version + ' (' + o.config.source + ')' : 'none';
      $('uptime').textContent = 'up ' + o.uptime_s + ' s';
      $('version').textContent = 'v' + o.version;
      rows($('routes').tBodies[0], r.routes, (x) => [x.id, [x.match.domain, x.match.path].filter(Boolean).join(' ') || '(any)', x.plugins.map((b) => b.plugin).join(', '), x.balancer ? x.balancer.type + ': ' + x.balancer.targets.join(', ') : '']);
      rows($('plugins').tBodies[0], p.plugins, (x) => [x.name, state(x), x.pid, x.restarts, x.hooks.join(', ')]);
      const count = counter(m, 'hookgate_http_requests_total');
      const now = Date.now();
      if (count !== null && lastCount !== null) history.rate.push(Math.max(0, (count - lastCount) / ((now - lastAt) / 1000)));
      if (count !== null) { lastCount = count; lastAt = now; $('requests').textContent = String(count); }
      const errors = samples(m, 'hookgate_http_requests_total').filter(([l]) => /code="(5\\d\\d|0)"/.test(l)).reduce((n, [, v]) => n + v, 0);
      const req = buckets(m, 'hookgate_http_request_duration_seconds');
      const hook = buckets(m, 'hookgate_hook_duration_seconds');
      if (lastErrors !== null && lastAt) {
        const secs = Math.max(0.001, (now - prevAt) / 1000);
        history.errors.push(Math.max(0, (errors - lastErrors) / secs));
        const r50 = quantile(req, lastReq, 0.5), r99 = quantile(req, lastReq, 0.99), k50 = quantile(hook, lastHook, 0.5), k99 = quantile(hook, lastHook, 0.99);
        history.p50.push(r50 || 0); history.p99.push(r99 || 0); history.h50.push(k50 || 0); history.h99.push(k99 || 0);
        const rate = history.rate.length ? history.rate[history.rate.length - 1] : 0;
        const e = history.errors[history.errors.length - 1];
        $('errors-now').textContent = e.toFixed(1) + ' errors/s' + (rate > 0 ? ' (' + (100 * e / rate).toFixed(1) + ' % of requests)' : '');
        $('lat-now').textContent = 'p50 ' + ms(r50) + ' · p99 ' + ms(r99) + ' (dashed)';
        $('hook-lat-now').textContent = 'p50 ' + ms(k50) + ' · p99 ' + ms(k99) + ' (dashed)';
      }
      lastErrors = errors; lastReq = req; lastHook = hook; prevAt = now;
      history.ready.push(o.plugins.ready);
      for (const k of Object.keys(history)) if (history[k].length > 90) history[k].shift();
      spark($('rate'), history.rate);
      spark($('ready-chart'), history.ready);
      spark($('errors'), history.errors);
      spark($('lat'), history.p50, history.p99);
      spark($('hook-lat'), history.h50, history.h99);
      $('rate-now').textContent = history.rate.length ? history.rate[history.rate.length - 1].toFixed(1) + ' req/s' : (count === null ? 'no request metrics' : 'measuring…');
      $('ready-now').textContent = o.plugins.ready + ' of ' + o.plugins.total;
    } catch (err) {
      $('error').textContent = String(err.message || err);
    }
  }
  tick();
  setInterval(tick, 2000);
})();
</script>
<footer class="muted foot">requests served: <span id="requests">–</span> · refreshed every 2 s from the admin API</footer>
</body>
</html>
`;
