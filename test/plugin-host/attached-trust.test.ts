/**
 * Plugin host, attached plugins' sockets: the runner sends requests'
 * headers and bodies to an attached plugin's socket, so it only connects
 * to one nobody else could have put there. A socket in a folder every user
 * may write to without the sticky bit is refused, and so is one owned by a
 * user other than the runner's, root, or the one `attach.uid` names. A
 * refused socket gets no connection at all; its calls get on_error.
 */

import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/http.ts';
import { config, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';

const T = { timeout: 15_000 };
const asRoot = { ...T, skip: process.getuid?.() !== 0 ? 'needs root to give a socket to another user' : false };

/** A socket that only counts who connects (whoever put it there would see the traffic). */
async function listener(h: Harness, path: string): Promise<{ connections: () => number }> {
  let n = 0;
  const server = createServer((c) => {
    n++;
    c.destroy();
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  h.defer(() => new Promise<void>((r) => server.close(() => r())));
  return { connections: () => n };
}

const attached = (socket: string, extra: Record<string, unknown> = {}) => ({ attach: { socket, hooks: ['on_request'], health_interval: '100ms', ...extra } });

test('a socket in a folder every user may write to, without the sticky bit, is refused without connecting; with the sticky bit it is used', T, async (t) => {
  const h = new Harness(t);
  const open = join(h.dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const socket = join(open, 'side.sock');
  const sock = await listener(h, socket);
  const m = h.manager();
  await m.apply(config({ plugins: { side: attached(socket) }, routes: [route('api', ['side'])] }));

  const refused = await waitFor(() => (statusOf(m, 'side').lastError ? statusOf(m, 'side') : null), { what: 'the first check' });
  assert.match(refused.lastError, /refusing to connect to .*side\.sock \(its folder .*open is writable by every user and has no sticky bit/);
  assert.equal(refused.ready, false);
  const v = await m.onRequest('api', request({ r: 'api' }));
  assert.equal(v.ok, false);
  assert.equal(v.s, 503);
  assert.equal(sock.connections(), 0, 'nothing was sent to the socket');
  assert.equal(h.logs("refusing to connect to the attached plugin's socket", { plugin: 'side' }).length, 1);

  chmodSync(open, 0o1777);
  await waitFor(() => sock.connections() > 0, { what: 'the socket to be used once the folder is sticky' });
});

test('a socket owned by another user is refused unless attach.uid names that user', asRoot, async (t) => {
  const h = new Harness(t);
  const socket = join(h.dir, 'side.sock');
  const sock = await listener(h, socket);
  chownSync(socket, 12345, 12345);
  const m = h.manager();
  await m.apply(config({ plugins: { side: attached(socket) }, routes: [route('api', ['side'])] }));
  const refused = await waitFor(() => (statusOf(m, 'side').lastError ? statusOf(m, 'side') : null), { what: 'the first check' });
  assert.match(refused.lastError, /refusing to connect to .*\(it is owned by uid 12345, not by this user \(uid 0\) or root; if that user runs the plugin, say so with attach\.uid: 12345\)/);
  assert.equal(sock.connections(), 0);

  await m.apply(config({ plugins: { side: attached(socket, { uid: 12345 }) }, routes: [route('api', ['side'])] }));
  await waitFor(() => sock.connections() > 0, { what: 'the socket to be used once attach.uid names its owner' });
});
