/**
 * Real etcd clusters for tests: `startEtcdCluster` runs N members of
 * Debian's etcd-server on loopback ports (data in a temp dir), resolves
 * when every member is healthy, and stops them with the scope (SIGTERM,
 * then SIGKILL). Members can be killed and started again on their data to
 * test a leader lost, a cluster down and back. `ensureEtcd` installs
 * etcd-server with apt when it is missing (as root, as in CI), so these
 * tests never skip.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { join } from 'node:path';
import { ensureAptPackage } from './apt.ts';
import { freePort, waitFor } from './http.ts';
import { tempDir, type Scope } from './scope.ts';

/** The etcd binary, installed with apt when missing; throws saying how to install it otherwise. */
export function ensureEtcd(): string {
  return ensureAptPackage('etcd-server', ['/usr/bin/etcd', '/usr/local/bin/etcd']);
}

export interface EtcdMember {
  name: string;
  client: string;
  peer: string;
  dataDir: string;
  proc: ChildProcess | null;
  /** what the test presents to a TLS member */
  agent?: Agent;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** every member's client URL, comma-separated (for --config-etcd / --etcd) */
  endpoints: string;
  /** SIGKILLs one member; resolves when it is gone */
  kill(m: EtcdMember): Promise<void>;
  /** starts killed members again on their data; resolves when they are healthy (start enough for a quorum at once) */
  restart(...ms: EtcdMember[]): Promise<void>;
  /** the member that leads now (asked through a live member) */
  leader(): Promise<EtcdMember>;
  /** compacts the store at `revision` (through a live member) */
  compact(revision: number): Promise<void>;
  /** the store's current revision */
  revision(): Promise<number>;
  /** adds user `root` with `password` (role root) and turns authentication on */
  enableAuth(password: string): Promise<void>;
}

/** TLS for the members' client URLs: their certificate, and the CA clients must present a certificate from. */
export interface EtcdTls {
  certFile: string;
  keyFile: string;
  clientCaFile: string;
  /** what the test itself presents (health checks): a CA for the server and a client certificate */
  caFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

async function gateway(m: EtcdMember, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await fetch(`${m.client}${path}`, { method: 'POST', body: JSON.stringify(body), headers, signal: AbortSignal.timeout(5000), ...(m.agent ? { dispatcher: m.agent } : {}) } as RequestInit);
  if (!res.ok) throw new Error(`${m.name} ${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

async function healthy(m: EtcdMember): Promise<boolean> {
  try {
    const res = await fetch(`${m.client}/health`, { signal: AbortSignal.timeout(2000), ...(m.agent ? { dispatcher: m.agent } : {}) } as RequestInit);
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

/**
 * Starts an etcd cluster of `size` members on 127.0.0.1.
 *
 * @example
 * const etcd = await startEtcdCluster(s, 3);
 * // hookgate serve --config-etcd etcd.endpoints
 */
export async function startEtcdCluster(s: Scope, size = 3, opts: { maxTxnOps?: number; tls?: EtcdTls } = {}): Promise<EtcdCluster> {
  const scheme = opts.tls ? 'https' : 'http';
  const bin = ensureEtcd();
  const read = (f: string) => readFileSync(f, 'utf8');
  const agent = opts.tls ? new Agent({ connect: { ca: read(opts.tls.caFile), cert: read(opts.tls.clientCertFile), key: read(opts.tls.clientKeyFile) } }) : undefined;
  if (agent) s.defer(() => agent.close());
  const root = tempDir(s, 'hookgate-etcd-');
  const members: EtcdMember[] = [];
  let initial = '';
  let token = '';
  const tails = new Map<EtcdMember, string>();
  const launch = (m: EtcdMember) => {
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.client,
      '--advertise-client-urls', m.client,
      '--listen-peer-urls', m.peer,
      '--initial-advertise-peer-urls', m.peer,
      '--initial-cluster', initial,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', token,
      '--log-level', 'error',
      // Heartbeats and elections that a loaded machine (a test suite beside a
      // benchmark) does not miss: slower failover, no spurious elections.
      '--heartbeat-interval', '250',
      '--election-timeout', '2500',
      ...(opts.maxTxnOps ? ['--max-txn-ops', String(opts.maxTxnOps)] : []),
      ...(opts.tls ? ['--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile, '--trusted-ca-file', opts.tls.clientCaFile, '--client-cert-auth'] : []),
    ];
    m.proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    m.proc.stderr!.setEncoding('utf8').on('data', (c: string) => tails.set(m, ((tails.get(m) ?? '') + c).slice(-2000)));
  };
  const stopOne = async (m: EtcdMember, signal: NodeJS.Signals) => {
    const p = m.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  };
  s.defer(() => Promise.all(members.map((m) => stopOne(m, 'SIGTERM'))).then(() => {}));
  // A port found free can be taken by another process before etcd binds it
  // (a benchmark beside the suite): a member that exits, or a cluster that is
  // not healthy in time, is started again on new ports.
  let why = '';
  for (let attempt = 1; ; attempt++) {
    members.length = 0;
    for (let i = 1; i <= size; i++) {
      members.push({ name: `m${i}`, client: `${scheme}://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}`, dataDir: join(root, `a${attempt}-m${i}`), proc: null, agent });
    }
    initial = members.map((m) => `${m.name}=${m.peer}`).join(',');
    token = `hookgate-test-${process.pid}-${Date.now()}-${attempt}`;
    for (const m of members) launch(m);
    try {
      await waitFor(
        async () => {
          const dead = members.find((m) => m.proc!.exitCode !== null || m.proc!.signalCode !== null);
          if (dead) throw new Error(`etcd member ${dead.name} exited: ${tails.get(dead) ?? ''}`);
          return (await Promise.all(members.map(healthy))).every(Boolean);
        },
        { timeoutMs: 30_000, what: `a ${size}-member etcd cluster to be healthy` },
      );
      break;
    } catch (err) {
      why = (err as Error).message;
      await Promise.all(members.map((m) => stopOne(m, 'SIGKILL')));
      if (attempt === 3) throw new Error(`no healthy etcd cluster after 3 attempts; last: ${why}`);
    }
  }
  const live = async () => {
    for (const m of members) if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null && (await healthy(m))) return m;
    throw new Error('no etcd member is up');
  };
  return {
    members,
    endpoints: members.map((m) => m.client).join(','),
    kill: (m) => stopOne(m, 'SIGKILL'),
    restart: async (...ms) => {
      for (const m of ms) launch(m);
      await waitFor(async () => (await Promise.all(ms.map(healthy))).every(Boolean), { timeoutMs: 60_000, what: `etcd members ${ms.map((m) => m.name).join(', ')} to be healthy again` });
    },
    leader: async () => {
      const ids = new Map<string, EtcdMember>();
      let leader = '';
      for (const m of members) {
        if (!m.proc || m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
        const st = await gateway(m, '/v3/maintenance/status', {}).catch(() => null);
        if (!st) continue;
        ids.set(String((st.header as { member_id: string }).member_id), m);
        leader = String(st.leader);
      }
      const m = ids.get(leader);
      if (!m) throw new Error('no etcd leader found');
      return m;
    },
    compact: async (revision) => {
      await gateway(await live(), '/v3/kv/compaction', { revision: String(revision), physical: true });
    },
    enableAuth: async (password) => {
      const m = await live();
      await gateway(m, '/v3/auth/role/add', { name: 'root' });
      await gateway(m, '/v3/auth/user/add', { name: 'root', password });
      await gateway(m, '/v3/auth/user/grant', { user: 'root', role: 'root' });
      await gateway(m, '/v3/auth/enable', {});
    },
    revision: async () => {
      const st = await gateway(await live(), '/v3/kv/range', { key: Buffer.from('\0').toString('base64') });
      return Number((st.header as { revision: string }).revision);
    },
  };
}
