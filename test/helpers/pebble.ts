/**
 * @module test/helpers/pebble
 * A real ACME server for tests: Debian's `pebble` (Let's Encrypt's test CA)
 * on loopback, with `pebble-challtestsrv` (same package) as its DNS server,
 * which answers every A query with 127.0.0.1, so pebble's validation of
 * any test domain (`a.test`, `b.test`) connects to the test's gateway on
 * the `httpPort` given. `ensurePebble` installs the package with apt when
 * it is missing (as root, as in CI), so these tests never skip.
 *
 * Ports: pebble and challtestsrv bind port 0 (no port can be taken
 * between a probe and the bind), and the ports they got are read from
 * /proc (the sockets of the process, found in /proc/net/{tcp,udp}).
 * Pebble's own HTTPS certificate is made here with openssl for 127.0.0.1
 * (Debian's package ships none); clients trust it by `ca`, nothing
 * disables verification. The CA that signs what pebble issues is made anew
 * at each start and served by its management listener (`root()`).
 */

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request as undiciRequest } from 'undici';
import { ensureAptPackage } from './apt.ts';
import { waitFor } from './http.ts';
import { tempDir, type Scope } from './scope.ts';

/** The pebble binary (its package also has pebble-challtestsrv), installed with apt when missing. */
export function ensurePebble(): string {
  ensureAptPackage('pebble', ['/usr/bin/pebble-challtestsrv']);
  return ensureAptPackage('pebble', ['/usr/bin/pebble']);
}

export interface Pebble {
  /** the ACME directory URL */
  directory: string;
  /** the PEM file of the certificate pebble's HTTPS listeners present (what an ACME client trusts by `ca`) */
  caFile: string;
  /** the PEM of the root that signs the certificates pebble issues (made anew at each start) */
  root(): Promise<string>;
  /** the certificate with this serial number (hex) as pebble has it: its status ("Valid", "Revoked") */
  certStatus(serialHex: string): Promise<{ status: number; body: string }>;
  /** pebble's output so far (for failure messages) */
  output(): string;
}

export interface PebbleOptions {
  /** the port pebble's HTTP-01 validation connects to (the test gateway's plain-HTTP port) */
  httpPort: number;
  /** the port of TLS-ALPN-01 validation (default: a closed one) */
  tlsPort?: number;
  /** PEBBLE_VA_ALWAYS_VALID: every challenge passes without being checked */
  alwaysValid?: boolean;
  /** PEBBLE_VA_NOSLEEP unless false: validation starts at once instead of after up to 15 s */
  noSleep?: boolean;
}

/** The ports of the sockets `pid` listens on (TCP) or has bound (UDP), from /proc. */
function boundPorts(pid: number, proto: 'tcp' | 'udp'): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const file of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9])) continue;
      // TCP: only listening sockets (state 0A); UDP sockets are all "bound" (07).
      if (proto === 'tcp' && f[3] !== '0A') continue;
      ports.push(parseInt(f[1].split(':')[1], 16));
    }
  }
  return [...new Set(ports)];
}

function run(s: Scope, bin: string, args: string[], env: Record<string, string>): { proc: ChildProcess; output: () => string } {
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  const keep = (c: string) => (out = (out + c).slice(-20_000));
  proc.stdout!.setEncoding('utf8').on('data', keep);
  proc.stderr!.setEncoding('utf8').on('data', keep);
  s.defer(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  });
  return { proc, output: () => out };
}

async function waitForLine(p: { proc: ChildProcess; output: () => string }, what: string, line: string): Promise<void> {
  await waitFor(
    () => {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null) throw new Error(`${what} exited (${p.proc.exitCode ?? p.proc.signalCode}): ${p.output()}`);
      return p.output().includes(line);
    },
    { what: `${what} to say "${line}"`, timeoutMs: 60_000 },
  );
}

/**
 * Starts pebble (and its DNS server) for one scope; both are stopped when
 * the scope closes.
 *
 * @example
 * const pebble = await startPebble(s, { httpPort: gatewayPort });
 * // gateway.acme: { email: 'ops@a.test', directory: pebble.directory, ca: pebble.caFile }
 */
export async function startPebble(s: Scope, opts: PebbleOptions): Promise<Pebble> {
  const bin = ensurePebble();
  const dir = tempDir(s, 'hookgate-pebble-');
  const certFile = join(dir, 'listener.crt');
  const keyFile = join(dir, 'listener.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=pebble test listener',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });

  // An empty address turns a challenge server off: challtestsrv is only DNS here.
  const dns = run(s, '/usr/bin/pebble-challtestsrv', ['-dns01', '127.0.0.1:0', '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', '127.0.0.1:0', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''], {});
  await waitForLine(dns, 'pebble-challtestsrv', 'Starting management server');
  const dnsPort = await waitFor(() => boundPorts(dns.proc.pid!, 'udp')[0], { what: 'the DNS server to bind its UDP port' });

  const config = join(dir, 'pebble.json');
  writeFileSync(config, JSON.stringify({
    pebble: {
      listenAddress: '127.0.0.1:0',
      managementListenAddress: '127.0.0.1:0',
      certificate: certFile,
      privateKey: keyFile,
      httpPort: opts.httpPort,
      tlsPort: opts.tlsPort ?? 1,
      ocspResponderURL: '',
      externalAccountBindingRequired: false,
    },
  }));
  const env: Record<string, string> = { PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' };
  if (opts.noSleep !== false) env.PEBBLE_VA_NOSLEEP = '1';
  if (opts.alwaysValid) env.PEBBLE_VA_ALWAYS_VALID = '1';
  const pebble = run(s, bin, ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'], env);
  await waitForLine(pebble, 'pebble', 'ACME directory available');
  const ports = await waitFor(() => {
    const p = boundPorts(pebble.proc.pid!, 'tcp');
    return p.length >= 2 && p;
  }, { what: 'pebble to listen on its two ports' });

  const ca = readFileSync(certFile, 'utf8');
  const agent = new Agent({ connect: { ca } });
  s.defer(() => agent.close());
  const get = async (url: string) => {
    const r = await undiciRequest(url, { dispatcher: agent });
    return { status: r.statusCode, body: await r.body.text() };
  };
  // The ACME listener serves the directory; the management listener serves the roots.
  let acme = 0;
  let management = 0;
  for (const port of ports) {
    if ((await get(`https://127.0.0.1:${port}/roots/0`)).status === 200) management = port;
    else acme = port;
  }
  if (!acme || !management) throw new Error(`cannot tell pebble's ACME port from its management port among ${ports.join(', ')}`);
  return {
    directory: `https://127.0.0.1:${acme}/dir`,
    caFile: certFile,
    async root() {
      const r = await get(`https://127.0.0.1:${management}/roots/0`);
      if (r.status !== 200) throw new Error(`pebble /roots/0: ${r.status} ${r.body}`);
      return r.body;
    },
    certStatus: (serial) => get(`https://127.0.0.1:${management}/cert-status-by-serial/${serial}`),
    output: pebble.output,
  };
}
