/**
 * The config schema: defaults filled in, and every problem reported at once
 * with the path of its field.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { problemsOf } from '../helpers/config.ts';
import { ConfigError, parseConfig, parseDuration, type Config } from '../../src/core/config/config.ts';
import { edgeStateOf, snapshotConfig } from '../../src/core/state/routing-snapshot.ts';

/** Runs parseConfig on a config that must fail and returns its problems. */

/** Asserts that each pattern matches exactly one problem and that there are no others. */
function assertProblems(problems: string[], expected: RegExp[]): void {
  for (const re of expected) {
    assert.equal(problems.filter((p) => re.test(p)).length, 1, `expected one problem matching ${re} in:\n  ${problems.join('\n  ')}`);
  }
  assert.equal(problems.length, expected.length, `unexpected problems:\n  ${problems.join('\n  ')}`);
}

const full = {
  gateway: { listen: '0.0.0.0:8080' },
  runner: {
    listen: '127.0.0.1:7070',
    keys: [
      { id: 'edge', secret: '0123456789abcdef0123', expires_at: '2027-01-01T00:00:00Z' },
      { id: 'ci', secret_env: 'HOOKGATE_CI_KEY' },
    ],
  },
  admin: { listen: '[::1]:9090' },
  routes: [
    {
      match: { domain: '*.example.com', path: '/v1/*', methods: ['get', 'Post'] },
      plugins: ['auth', { plugin: 'ratelimit', on_error: 'allow' }, { plugin: 'auth', with_body: false }],
      plugin_timeout: '2s',
      set: { tier: 'gold' },
      balancer: { type: 'leastconn', targets: ['10.0.0.1:3000', '10.0.0.2:3000'], group_by: 'header:X-Region' },
      action: 'api',
    },
    { id: 'health', match: { path: '/healthz' }, action: { type: 'static', body: 'ok\n', headers: { 'Cache-Control': 'no-store' } } },
    { id: 'old-docs', match: { domain: 'docs.example.com' }, action: { type: 'redirect', to: 'https://example.com/docs', status: 301 } },
  ],
  actions: {
    api: { type: 'proxy', upstream: 'http://{target}', fallback: 'sorry', timeout: '1.5s' },
    sorry: { type: 'static', status: 503, body: 'try again later\n' },
    home: { type: 'redirect', to: 'https://example.com/' },
  },
  plugins: {
    auth: { path: '/usr/local/bin/auth-plugin', with_body: true, env: { AUTH_MODE: 'strict' } },
    ratelimit: {
      command: ['node', 'ratelimit.ts'],
      args: ['--burst', '10'],
      on_error: 'deny',
      sha256: 'ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789',
      ready_timeout: '500ms',
      pool_size: 4,
      queue_limit: 0,
      autostart: true,
    },
  },
};

describe('a full valid config', () => {
  const cfg: Config = parseConfig(structuredClone(full));

  test('keeps the listen addresses and keys, expires_at parsed to ms since the epoch', () => {
    assert.equal(cfg.gateway.listen, '0.0.0.0:8080');
    assert.equal(cfg.runner.listen, '127.0.0.1:7070');
    assert.equal(cfg.admin.listen, '[::1]:9090');
    assert.deepEqual(cfg.runner.keys, [{ ...full.runner.keys[0], expires_at: Date.UTC(2027, 0, 1) }, full.runner.keys[1]]);
  });

  test('route ids default to the route index as a string', () => {
    assert.deepEqual(cfg.routes.map((r) => [r.id, r.index]), [['0', 0], ['health', 1], ['old-docs', 2]]);
  });

  test('durations are parsed to milliseconds', () => {
    assert.equal(cfg.routes[0].plugin_timeout, 2000);
    assert.deepEqual(cfg.actions.api, { type: 'proxy', upstream: 'http://{target}', fallback: 'sorry', timeout: 1500, max_connections: 1024, queue_timeout: 5000 });
    assert.equal(cfg.plugins.ratelimit.ready_timeout, 500);
  });

  test('plugin_timeout defaults to 5000 ms', () => {
    assert.equal(cfg.routes[1].plugin_timeout, 5000);
  });

  test('bindings are normalized and inherit the plugin\'s on_error and with_body unless overridden', () => {
    assert.deepEqual(cfg.routes[0].plugins, [
      { plugin: 'auth', on_error: 'deny', with_body: true },
      { plugin: 'ratelimit', on_error: 'allow', with_body: false },
      { plugin: 'auth', on_error: 'deny', with_body: false },
    ]);
  });

  test('methods are upper-cased', () => {
    assert.deepEqual(cfg.routes[0].match, { domain: '*.example.com', path: '/v1/*', methods: ['GET', 'POST'] });
  });

  test('a route naming an action keeps the name; an inline action has none', () => {
    assert.deepEqual(cfg.routes.map((r) => r.actionName), ['api', '', '']);
    assert.equal(cfg.routes[0].action, 'api');
  });

  test('inline actions get their defaults', () => {
    assert.deepEqual(cfg.routes[1].action, { type: 'static', status: 200, body: 'ok\n', headers: { 'Cache-Control': 'no-store' } });
    assert.deepEqual(cfg.routes[2].action, { type: 'redirect', to: 'https://example.com/docs', status: 301 });
    assert.deepEqual(cfg.actions.home, { type: 'redirect', to: 'https://example.com/', status: 302 });
  });

  test('routes get default set, match, balancer type and edge failure verdict', () => {
    assert.deepEqual(cfg.routes[0].balancer, { type: 'leastconn', targets: ['10.0.0.1:3000', '10.0.0.2:3000'], group_by: 'header:X-Region' });
    assert.deepEqual(cfg.routes[1].set, {});
    assert.deepEqual(cfg.routes[1].plugins, []);
    assert.deepEqual(cfg.routes[0].edge_on_error, { status: 503, body: 'service unavailable\n' });
  });

  test('plugins get their defaults and a lower-case sha256', () => {
    assert.deepEqual(cfg.plugins.auth, {
      path: '/usr/local/bin/auth-plugin',
      args: [],
      env: { AUTH_MODE: 'strict' },
      on_error: 'deny',
      with_body: true,
      autostart: false,
      ready_timeout: 10_000,
      pool_size: 16,
      queue_limit: 1024,
    });
    assert.equal(cfg.plugins.ratelimit.sha256, 'abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789');
    assert.deepEqual(cfg.plugins.ratelimit.command, ['node', 'ratelimit.ts']);
  });
});

describe('client and upstream connection limits', () => {
  test('are parsed, durations to milliseconds, and 0 means no limit', () => {
    const cfg = parseConfig({
      gateway: { header_timeout: '500ms', body_timeout: '2s', max_connections_per_client: 0 },
      actions: { a: { type: 'proxy', upstream: 'http://x', max_connections: 8, queue_timeout: 0 } },
    });
    assert.deepEqual(cfg.gateway, { listen: '127.0.0.1:8080', header_timeout: 500, body_timeout: 2000, max_connections_per_client: 0, strip_request_headers: [], underscores_in_headers: 'drop', workers: 1 });
    assert.deepEqual(cfg.actions.a, { type: 'proxy', upstream: 'http://x', timeout: 30_000, max_connections: 8, queue_timeout: 0 });
  });

  test('a proxy action with them still goes to an edge worker: its snapshot parses', () => {
    const cfg = parseConfig({ routes: [{ id: 'r', action: 'a' }], actions: { a: { type: 'proxy', upstream: 'http://x', max_connections: 8, queue_timeout: '1s' } } });
    const edge = edgeStateOf({ version: 'v', config: snapshotConfig(cfg) });
    assert.equal(edge.state.plan('r')?.action.limits?.maxConnections, 8);
  });
});

describe('an empty config', () => {
  test('gets default listen addresses and no routes, actions, plugins or keys', () => {
    assert.deepEqual(parseConfig({}), {
      gateway: { listen: '127.0.0.1:8080', header_timeout: 10_000, body_timeout: 30_000, max_connections_per_client: 512, strip_request_headers: [], underscores_in_headers: 'drop', workers: 1 },
      runner: { keys: [] },
      admin: { listen: '127.0.0.1:9090', keys: [] },
      log: { access: false, access_query: false },
      metrics: { requests: true },
      routes: [],
      actions: {},
      plugins: {},
    });
  });

  test('a route with only an action gets id "0" and every default', () => {
    const [route] = parseConfig({ routes: [{ action: { type: 'static' } }] }).routes;
    assert.deepEqual(route, {
      id: '0',
      index: 0,
      actionName: '',
      match: {},
      plugins: [],
      plugin_timeout: 5000,
      set: {},
      action: { type: 'static', status: 200, body: '', headers: {} },
      edge_on_error: { status: 503, body: 'service unavailable\n' },
    });
  });
});

describe('an invalid config reports every schema problem at once, with field paths', () => {
  test('the request-safety fields name what they expect', () => {
    const problems = problemsOf({
      gateway: { strip_request_headers: ['X User'], underscores_in_headers: 'keep' },
      routes: [
        {
          match: { path: '/a//b', case_insensitive: 'yes', allow_encoded_slash: 1 },
          strip_request_headers: ['ok', 'bad:name'],
          balancer: { group_by: 'header:X-Tenant', unknown_group: 'any' },
          action: { type: 'static' },
        },
      ],
    });
    assertProblems(problems, [
      /^gateway\.strip_request_headers\[0\]: expected a header name/,
      /^gateway\.underscores_in_headers: expected "drop" or "allow"$/,
      /^routes\[0\]\.match\.case_insensitive: /,
      /^routes\[0\]\.match\.allow_encoded_slash: /,
      /^routes\[0\]\.strip_request_headers\[1\]: expected a header name/,
      /^routes\[0\]\.balancer\.unknown_group: expected "deny" or "all"$/,
      /^routes\[0\]\.match\.path: "\/a\/\/b": not in the normal form request paths are compared in; write it as "\/a\/b"$/,
    ]);
  });

  test('problems across gateway, keys, routes and plugins all come back together', () => {
    const problems = problemsOf({
      gateway: { listen: 'nope' },
      runner: {
        keys: [
          { id: 'both', secret: '0123456789abcdef', secret_env: 'X' },
          { id: 'short', secret: 'short' },
          { id: 'when', secret_env: 'E', expires_at: 'tomorrow' },
        ],
      },
      routes: [
        { match: { domain: 5 }, action: 'x' },
        { action: { type: 'proxy' } },
        { plugins: [{ plugin: 'b', bogus: 1 }], action: { type: 'static', status: 42 } },
      ],
      plugins: {
        a: {},
        b: { path: '/x', foo: 1 },
        c: { path: '/x', command: ['y'] },
        d: { path: '/x', sha256: 'xyz', on_error: 'maybe', pool_size: 0 },
      },
      extra: 1,
    });
    assertProblems(problems, [
      /^gateway\.listen: expected "host:port"/,
      /^runner\.keys\[0\]: expected exactly one of "secret" or "secret_env"$/,
      /^runner\.keys\[1\]\.secret: expected at least 16 characters$/,
      /^runner\.keys\[2\]\.expires_at: expected an ISO 8601 timestamp/,
      /^routes\[0\]\.match\.domain: /,
      /^routes\[1\]\.action\.upstream: required field is missing$/,
      /^routes\[2\]\.plugins\[0\]\.bogus: unknown field$/,
      /^routes\[2\]\.action\.status: .*100/,
      /^plugins\.a: expected exactly one of "path", "command" or "attach"$/,
      /^plugins\.b\.foo: unknown field$/,
      /^plugins\.c: expected exactly one of "path", "command" or "attach"$/,
      /^plugins\.d\.on_error: expected "deny" or "allow"$/,
      /^plugins\.d\.sha256: expected 64 hex digits$/,
      /^plugins\.d\.pool_size: /,
      /^extra: unknown field$/,
      /^routes\[0\]\.action: no action named "x" in actions$/,
    ]);
  });

  test('the error message lists every problem on its own line', () => {
    try {
      parseConfig({ gateway: { listen: 'nope' }, extra: 1 });
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, `invalid config:\n  ${err.problems.join('\n  ')}`);
      assert.equal(err.problems.length, 2);
    }
  });

  test('a route without an action, a bad binding, an unknown action type and a bad id are each named', () => {
    const problems = problemsOf({
      routes: [{}, { plugins: [5], action: { type: 'ftp' } }, { id: 'a b', action: { type: 'redirect', to: '/x', status: 200 } }],
    });
    assertProblems(problems, [
      /^routes\[0\]\.action: required field is missing$/,
      /^routes\[1\]\.plugins\[0\]: expected a plugin name or \{ plugin, on_error\?, with_body\?, cache\? \}$/,
      /^routes\[1\]\.action\.type: expected an action with type "proxy", "static", "redirect", "serve", "drop" or "pass"$/,
      /^routes\[2\]\.id: expected letters, digits/,
      /^routes\[2\]\.action\.status: expected 301, 302, 303, 307 or 308$/,
    ]);
  });

  test('balancer, inline headers and edge failure verdict fields are checked', () => {
    const problems = problemsOf({
      routes: [
        {
          balancer: { type: 'weighted', group_by: 'cookie:a', targets: [''] },
          action: { type: 'static', headers: { 'X-A': 1 } },
          edge_on_error: { status: 1000 },
        },
      ],
    });
    assertProblems(problems, [
      /^routes\[0\]\.balancer\.type: expected "roundrobin", "random" or "leastconn"$/,
      /^routes\[0\]\.balancer\.targets\[0\]: /,
      /^routes\[0\]\.balancer\.group_by: expected "header:<Name>" or "var:<name>"$/,
      /^routes\[0\]\.action\.headers\.X-A: /,
      /^routes\[0\]\.edge_on_error\.status: /,
    ]);
  });

  test('bad durations are named', () => {
    const problems = problemsOf({
      routes: [{ plugin_timeout: '-1s', action: { type: 'static' } }, { plugin_timeout: 'soon', action: { type: 'static' } }],
      plugins: { p: { path: '/p', ready_timeout: -5 } },
    });
    assertProblems(problems, [
      /^routes\[0\]\.plugin_timeout: expected a duration/,
      /^routes\[1\]\.plugin_timeout: expected a duration/,
      /^plugins\.p\.ready_timeout: expected a duration/,
    ]);
  });

  test('bad client limits and upstream connection limits are named', () => {
    const problems = problemsOf({
      gateway: { header_timeout: 'soon', body_timeout: -1, max_connections_per_client: 1.5 },
      actions: { a: { type: 'proxy', upstream: 'http://x', max_connections: 0, queue_timeout: 'later' }, b: { type: 'proxy', upstream: 'http://x', max_connections: '8' } },
    });
    assertProblems(problems, [
      /^gateway\.header_timeout: expected a duration/,
      /^gateway\.body_timeout: expected a duration/,
      /^gateway\.max_connections_per_client: expected a whole number of connections/,
      /^actions\.a\.max_connections: expected at least 1/,
      /^actions\.a\.queue_timeout: expected a duration/,
      /^actions\.b\.max_connections: expected a number of connections/,
    ]);
  });

  test('a plugin name with a space is refused', () => {
    assertProblems(problemsOf({ plugins: { 'bad name': { path: '/x' } } }), [/^plugins\.bad name: expected a plugin name of letters/]);
  });

  const listens = ['localhost', '127.0.0.1:', ':8080', 'http://127.0.0.1:8080', '127.0.0.1:123456', 'a b:80'];
  for (const listen of listens) {
    test(`listen address ${JSON.stringify(listen)} is refused`, () => {
      assertProblems(problemsOf({ admin: { listen } }), [/^admin\.listen: expected "host:port"/]);
    });
  }

  test('a listen port over 65535 is refused', () => {
    assertProblems(problemsOf({ admin: { listen: '127.0.0.1:70000' } }), [/^admin\.listen: /]);
  });

  test('a config that is null or not an object is refused', () => {
    assertProblems(problemsOf(null), [/^\(config\): /]);
    assertProblems(problemsOf('routes: []'), [/^\(config\): /]);
  });

  test('a config that is an array is refused', () => {
    assertProblems(problemsOf([]), [/^\(config\): /]);
  });
});

describe('references between routes, actions and plugins are checked', () => {
  test('unknown plugins, actions and fallbacks, duplicate ids and {target} without a balancer are all reported', () => {
    const problems = problemsOf({
      routes: [
        { plugins: ['auth', 'nope'], action: 'missing' },
        { id: '0', action: { type: 'proxy', upstream: 'http://{target}/', fallback: 'gone' } },
        { id: 'x', action: 'p' },
        { id: 'x', action: { type: 'static' } },
      ],
      actions: { p: { type: 'proxy', upstream: 'http://a', fallback: 'q' }, q: { type: 'proxy', upstream: 'http://b' } },
      plugins: { auth: { path: '/auth' } },
    });
    assertProblems(problems, [
      /^routes\[0\]\.plugins\[1\]: no plugin named "nope" in plugins$/,
      /^routes\[0\]\.action: no action named "missing" in actions$/,
      /^routes\[1\]\.id: "0" is already the id of routes\[0\]$/,
      /^routes\[1\]\.action\.fallback: no action named "gone" in actions$/,
      /^routes\[1\]\.balancer: the action's upstream uses \{target\}, so the route needs a balancer$/,
      /^routes\[3\]\.id: "x" is already the id of routes\[2\]$/,
      /^actions\.p\.fallback: "q" is a proxy; a fallback must be static or redirect$/,
    ]);
  });

  test('a named proxy action using {target} needs a balancer on the route', () => {
    const problems = problemsOf({ routes: [{ id: 'api', action: 'api' }], actions: { api: { type: 'proxy', upstream: 'http://{target}' } } });
    assertProblems(problems, [/^routes\[0\]\.balancer: the action's upstream uses \{target\}/]);
  });

  test('a named action\'s unknown fallback is reported under actions', () => {
    assertProblems(problemsOf({ actions: { api: { type: 'proxy', upstream: 'http://a', fallback: 'nowhere' } } }), [
      /^actions\.api\.fallback: no action named "nowhere" in actions$/,
    ]);
  });

  test('a route\'s inline proxy action may not fall back to a proxy either', () => {
    const problems = problemsOf({
      routes: [{ action: { type: 'proxy', upstream: 'http://a', fallback: 'other' } }],
      actions: { other: { type: 'proxy', upstream: 'http://b' } },
    });
    assertProblems(problems, [/^routes\[0\]\.action\.fallback: "other" is a proxy; a fallback must be static or redirect$/]);
  });

  test('schema and reference problems are reported together', () => {
    const problems = problemsOf({ routes: [{ action: { type: 'static' }, bogus: 1 }, { plugins: ['nope'], action: { type: 'static' } }] });
    assertProblems(problems, [/^routes\[0\]\.bogus: unknown field$/, /^routes\[1\]\.plugins\[0\]: no plugin named "nope"/]);
  });
});

describe('parseDuration', () => {
  const good: Array<[string | number, number]> = [
    ['2s', 2000],
    ['500ms', 500],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    [' 3 s ', 3000],
    ['10', 10],
    [250, 250],
    [0, 0],
  ];
  for (const [input, ms] of good) {
    test(`${JSON.stringify(input)} is ${ms} ms`, () => {
      assert.equal(parseDuration(input), ms);
    });
  }

  const bad: Array<string | number> = ['x', '', '-1s', '1e3', '2 days', '1d', -1, Infinity, NaN];
  for (const input of bad) {
    test(`${JSON.stringify(input) ?? String(input)} is not a duration (NaN)`, () => {
      assert.ok(Number.isNaN(parseDuration(input)));
    });
  }
});

describe('gateway.workers', () => {
  test('is 1 by default, a whole number from 1 to 256, or "auto"; anything else names the field', () => {
    assert.equal(parseConfig({}).gateway.workers, 1);
    assert.equal(parseConfig({ gateway: { workers: 4 } }).gateway.workers, 4);
    assert.equal(parseConfig({ gateway: { workers: 'auto' } }).gateway.workers, 'auto');
    for (const bad of [0, 1.5, 'many', 1000]) {
      const problems = problemsOf({ gateway: { workers: bad } });
      assert.equal(problems.length, 1, String(bad));
      assert.match(problems[0], /^gateway\.workers: expected a whole number of workers from 1 to 256, or "auto"/);
    }
  });
});
