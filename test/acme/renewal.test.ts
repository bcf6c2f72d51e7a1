/**
 * When ACME orders, driven by the injected wall clock (a FakeClock started
 * at the real date, since pebble's certificates carry real dates): the first
 * order at once, a renewal a third of the lifetime before expiry and not a
 * moment sooner, a failed order tried again after the backoff (doubling,
 * per domain) while the old certificate stays in place, and the normal
 * rhythm back after a success. Each order is real: pebble validates
 * HTTP-01 against a listener serving the challenge files.
 */

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { recordingLogger } from '../../node-runner/log.ts';
import { serveChallenge } from '../../node-runner/gateway/acme-challenges.ts';
import { AcmeManager } from '../../node-runner/gateway/acme.ts';
import type { StoredCert } from '../../node-runner/gateway/acme-store.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { startPebble } from '../helpers/pebble.ts';
import { scope, tempDir } from '../helpers/scope.ts';

test('a certificate is renewed a third of its lifetime before expiry; a failed order is retried after a doubling backoff while the old one stays', async (t) => {
  const s = scope(t);
  const storage = join(tempDir(s), 'acme');
  // A 3-day certificate for a.test already stored (made with openssl, dated now): due for renewal in 2 days.
  mkdirSync(join(storage, 'certs'), { recursive: true, mode: 0o700 });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3', '-subj', '/CN=a.test',
    '-addext', 'subjectAltName=DNS:a.test', '-keyout', join(storage, 'certs', 'a.test.key'), '-out', join(storage, 'certs', 'a.test.crt')], { stdio: 'ignore' });
  let serving = true;
  const server = createServer((req, res) => {
    if (!serving || !serveChallenge(join(storage, 'challenges'), req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.defer(() => new Promise<void>((r) => server.close(() => r())));
  s.defer(() => server.closeAllConnections());
  const pebble = await startPebble(s, { httpPort: (server.address() as AddressInfo).port });

  // The wall clock starts at the real date: pebble dates what it issues by the real one.
  const clock = new FakeClock(Date.now());
  const registry = new Registry();
  const issued: StoredCert[] = [];
  const log = recordingLogger();
  const manager = new AcmeManager({
    settings: { email: 'ops@a.test', directory: pebble.directory, ca: pebble.caFile, storage, key_type: 'ecdsa', challenge: 'http-01' },
    logger: log,
    clock,
    registry,
    backoff: { baseMs: 60_000, maxMs: 3_600_000 },
    random: () => 0.5, // no jitter: delays are exactly base, 2×base, ...
    poll: { attempts: 30, minMs: 100, maxMs: 1000 },
    onIssued: (c) => issued.push(c),
  });
  s.defer(() => manager.stop());
  const renewals = async () => Object.fromEntries((await registry.getSingleMetric('hookgate_acme_renewals_total')!.get()).values.map((v) => [v.labels.result, v.value]));
  const step = async (ms: number) => {
    clock.advance(ms);
    await manager.idle();
  };
  const crtFile = join(storage, 'certs', 'a.test.crt');
  const serial = () => new X509Certificate(readFileSync(crtFile)).serialNumber;
  const stored = new X509Certificate(readFileSync(crtFile));
  const storedSerial = stored.serialNumber;
  const renewAt = Date.parse(stored.validTo) - (Date.parse(stored.validTo) - Date.parse(stored.validFrom)) / 3;
  const a = () => manager.status().find((x) => x.domain === 'a.test')!;

  manager.start(['a.test', 'c.test']);
  assert.equal(issued.length, 0, 'start never waits for an order');
  await step(0);
  assert.deepEqual(issued.map((c) => c.domain), ['c.test'], `a domain without a certificate is ordered at once, one with a good one is not: ${JSON.stringify(manager.status())}`);
  assert.equal(a().next_order, new Date(renewAt).toISOString(), 'renewal is due a third of the lifetime before expiry');

  // Just before the renewal time: nothing (timers wake every 6 h at most, and find nothing due).
  serving = false;
  await step(renewAt - clock.now() - 1000);
  assert.equal(a().failures, 0);
  assert.equal(issued.length, 1);
  // At it: ordered, but the CA cannot validate (the challenge is not served): failed, the certificate stays.
  await step(1000);
  let st = a();
  assert.equal(st.failures, 1, 'ordered at its time');
  assert.ok(st.last_error, 'the failure is told');
  assert.equal(st.next_order, new Date(clock.now() + 60_000).toISOString(), 'retried after the base delay');
  assert.equal(serial(), storedSerial, 'the stored certificate is untouched by a failed order');
  await step(59_999);
  assert.equal(a().failures, 1, 'not retried before the backoff is over');
  await step(1);
  st = a();
  assert.equal(st.failures, 2, 'retried when it is over, and failed again');
  assert.equal(st.next_order, new Date(clock.now() + 120_000).toISOString(), 'the delay doubled');
  assert.deepEqual(await renewals(), { success: 1, failure: 2 });
  assert.ok(log.entries.some((e) => e.msg === 'ACME: the order failed; trying again after a backoff' && e.level === 'warn' && e.domain === 'a.test'));

  // Served again: the next try succeeds, the new certificate replaces the old, the rhythm is back to normal.
  serving = true;
  await step(120_000);
  st = a();
  assert.equal(issued.length, 2, `renewed after the backoff: ${st.last_error}`);
  assert.equal(st.failures, 0);
  assert.equal(st.last_error, null);
  const renewed = issued[1];
  assert.equal(renewed.domain, 'a.test');
  assert.notEqual(renewed.serial, storedSerial);
  assert.equal(serial(), renewed.serial, 'the new certificate is the one on disk');
  assert.equal(st.next_order, new Date(renewed.notAfter - (renewed.notAfter - renewed.notBefore) / 3).toISOString());
  assert.deepEqual(await renewals(), { success: 2, failure: 2 });
});

test('renew_before sets how long ahead of expiry a certificate is renewed', async (t) => {
  const s = scope(t);
  const storage = join(tempDir(s), 'acme');
  const pebble = await startPebble(s, { httpPort: 1, alwaysValid: true });
  const clock = new FakeClock(Date.now());
  const issued: StoredCert[] = [];
  const manager = new AcmeManager({
    settings: { email: 'ops@a.test', directory: pebble.directory, ca: pebble.caFile, storage, key_type: 'rsa', challenge: 'http-01', renew_before: 30 * 86_400_000 },
    logger: recordingLogger(),
    clock,
    poll: { attempts: 30, minMs: 100, maxMs: 1000 },
    onIssued: (c) => issued.push(c),
  });
  s.defer(() => manager.stop());
  manager.start(['b.test']);
  clock.advance(0);
  await manager.idle();
  assert.equal(issued.length, 1, manager.status()[0]?.last_error ?? '');
  assert.equal(manager.status()[0].next_order, new Date(issued[0].notAfter - 30 * 86_400_000).toISOString());
  assert.equal(new X509Certificate(readFileSync(join(storage, 'certs', 'b.test.crt'))).publicKey.asymmetricKeyType, 'rsa', 'key_type: rsa');
});
