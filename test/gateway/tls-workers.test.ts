/**
 * TLS with `gateway.workers`: every worker serves the TLS listener (on
 * the shared port), h2 and HTTP/1.1 alike, and a replaced certificate
 * reaches every worker after SIGHUP.
 */

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { join } from 'node:path';
import { test } from 'node:test';
import { HAS_OPENSSL, makeCa, makeCert } from '../helpers/certs.ts';
import { request, waitFor } from '../helpers/http.ts';
import { startGateway } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';

function peer(port: number, alpn: string): Promise<PeerCertificate & { alpn: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'w.test', rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
      const c = s.getPeerCertificate();
      const a = String(s.alpnProtocol);
      s.destroy();
      resolve({ ...c, alpn: a });
    });
    s.once('error', reject);
  });
}

test('with two gateway workers both serve TLS and SIGHUP swaps the certificate in each', { timeout: 120_000, skip: HAS_OPENSSL ? false : 'openssl is not installed' }, async (t) => {
  const s = scope(t);
  const dir = tempDir(s);
  const ca = makeCa(join(dir, 'ca'));
  const pair = makeCert(ca, join(dir, 'site'), 'w', ['w.test']);
  const gw = await startGateway(s, {
    gateway: { listen: '127.0.0.1:0', tls: pair, workers: 2 },
    admin: { listen: '127.0.0.1:0' },
    routes: [{ action: { type: 'static', body: 'ok\n' } }],
  });
  const port = Number(new URL(gw.url).port);
  await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { what: 'ready' });
  for (const alpn of ['h2', 'http/1.1']) assert.equal((await peer(port, alpn)).alpn, alpn);
  // Distinct workers: each answers on its own connections; both must show the new certificate.
  const fresh = makeCert(ca, join(dir, 'next'), 'w', ['w.test'], { subject: 'w.test v2' });
  writeFileSync(pair.key, readFileSync(fresh.key));
  writeFileSync(pair.cert, readFileSync(fresh.cert));
  process.kill(gw.pid, 'SIGHUP');
  await waitFor(async () => {
    const seen = await Promise.all(Array.from({ length: 16 }, () => peer(port, 'http/1.1')));
    return seen.every((c) => c.subject.CN === 'w.test v2');
  }, { what: 'every worker serving the new certificate', timeoutMs: 30_000 });
  const list = JSON.parse((await request(`${gw.admin}/api/certificates`)).text) as { certificates: Array<{ subject: string }> };
  assert.equal(list.certificates[0].subject, 'CN=w.test v2', 'the runner lists what the workers serve');
});
