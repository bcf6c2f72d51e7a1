/**
 * `hookgate validate` on configs with `serve` actions: a root or file
 * that is not there is a problem naming its field (resolved against the
 * config file's folder), and a config that edge workers route by (one with
 * `runner.listen`, or any with `--edge`) gets a warning for each serve
 * route, which an edge worker answers with 501.
 */

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, writeConfig } from './helpers/processes.ts';
import { scope, tempDir } from './helpers/scope.ts';

const routes = [
  { id: 'site', match: { path: '/site/*' }, action: 'site' },
  { id: 'gone', match: { path: '/gone/*' }, action: { type: 'drop' } },
];

test('a serve root or file that is missing or of the wrong kind is a problem naming its field; relative paths are against the config folder', async (t) => {
  const dir = tempDir(scope(t));
  mkdirSync(join(dir, 'public'));
  writeFileSync(join(dir, 'page.html'), 'x');
  const file = writeConfig(dir, {
    routes: [...routes, { match: { path: '/one/*' }, action: { type: 'serve', file: 'public' } }, { match: { path: '/two/*' }, action: { type: 'serve', root: 'page.html' } }],
    actions: { site: { type: 'serve', root: 'nope' } },
  });
  const res = await runCli(['validate', file]);
  assert.equal(res.code, 1, res.stderr);
  const lines = res.stderr.split('\n').filter((l) => /^\s+\S/.test(l)).map((l) => l.trim());
  assert.deepEqual(lines, [
    `actions.site.root: "${join(dir, 'nope')}" does not exist`,
    `routes[2].action.file: "${join(dir, 'public')}" is not a regular file (to serve a folder, use "root")`,
    `routes[3].action.root: "${join(dir, 'page.html')}" is not a folder (to serve one file, use "file")`,
  ]);
});

test('validate warns about serve routes when edge workers route by the config (runner.listen, or --edge); drop routes are fine there', async (t) => {
  const dir = tempDir(scope(t));
  mkdirSync(join(dir, 'public'));
  const actions = { site: { type: 'serve', root: 'public' } };
  const local = writeConfig(dir, { routes, actions }, 'local.json5');
  const edge = writeConfig(dir, { runner: { listen: '127.0.0.1:0', keys: [{ id: 'edge', secret: 'edge-key-0123456789abcdef' }] }, routes, actions }, 'edge.json5');
  const warning = /warning: routes\[0\]\.action: route "site" is a "serve" route \(action "site"\); an edge worker cannot serve files and answers it with 501/;

  const plain = await runCli(['validate', local]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.doesNotMatch(plain.stderr, /warning/);

  const flagged = await runCli(['validate', local, '--edge']);
  assert.equal(flagged.code, 0, flagged.stderr);
  assert.match(flagged.stderr, warning);
  assert.equal(flagged.stderr.match(/warning/g)?.length, 1, flagged.stderr);

  const served = await runCli(['validate', edge]);
  assert.equal(served.code, 0, served.stderr);
  assert.match(served.stderr, warning);
  assert.match(served.stdout, /ok \(2 routes/);
});
