import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { ensureSocketDir, keeperSocketPath } from '../../node-runner/plugin/keeper-path.ts';

test('a state dir with a short path keeps its keeper socket inside it', () => {
  assert.equal(keeperSocketPath('/srv/hg/.hookgate-state'), '/srv/hg/.hookgate-state/keeper.sock');
});

test('a state dir too deep for a Unix socket path gets a short private one, the same for the keeper and its client', () => {
  const deep = '/' + 'a-rather-long-folder-name/'.repeat(6) + '.hookgate-state';
  const p = keeperSocketPath(deep);
  assert.ok(Buffer.byteLength(p) <= 100, p);
  assert.equal(p, keeperSocketPath(deep), 'derived, so both sides agree');
  assert.notEqual(p, keeperSocketPath(deep + '-other'), 'distinct state dirs get distinct sockets');
});

test('the short-path socket folder in the temp dir must be private; one that is not is refused with a clear message', () => {
  const sock = keeperSocketPath('/' + 'a-rather-long-folder-name/'.repeat(6) + '.hookgate-state');
  ensureSocketDir(sock);
  const dir = dirname(sock);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const fs = process.getBuiltinModule('node:fs');
  fs.chmodSync(dir, 0o755);
  try {
    assert.throws(() => ensureSocketDir(sock), /must be a directory owned by this user with mode 0700/);
  } finally {
    fs.chmodSync(dir, 0o700);
  }
});

test('a state dir the operator made (any mode) is used as it is', (t) => {
  const base = mkdtempSync(join('/var/tmp', 'hg-state-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  process.getBuiltinModule('node:fs').chmodSync(base, 0o755);
  assert.doesNotThrow(() => ensureSocketDir(join(base, 'keeper.sock')));
});
