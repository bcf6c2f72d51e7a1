/**
 * @module gateway/serve
 * The `serve` action on the self-hosted gateway: finding the file on disk
 * and streaming it. Which file a path names and what the answer is
 * (conditional requests, ranges) are the core's rules (`src/core/serve/serve.ts`,
 * on the path the one normaliser gave, `src/core/routing/path.ts`); this module does
 * the file system part:
 *
 * * **Inside the root, after symlinks.** The root and the named file are
 *   both resolved with `realpath`, and the file is served only when its
 *   real path is the root's or below it; a symlink pointing out of the root
 *   (or a parent swapped for one) is refused (404, never the fallback). The
 *   root is resolved per request, so pointing a `current` symlink at a new
 *   release takes effect at once.
 * * **Regular files only.** The file is opened with `O_NOFOLLOW` (the last
 *   component cannot have become a symlink since the check) and
 *   `O_NONBLOCK` (a FIFO cannot hang the open), then `fstat`ed: a
 *   directory answers with its index (a 301 to the slashed path first,
 *   when the request's path lacks it and the index exists), anything else
 *   but a regular file is refused. There are no directory listings.
 * * **Streams, with backpressure.** The answer is piped from the file
 *   handle (`FileHandle.createReadStream`, 64 KiB reads) to the response;
 *   a slow client holds at most the stream's buffer and the socket's, never
 *   the file. A client that goes away closes the file.
 * * **After the verdict, through on_response.** The route's on_request
 *   verdict has been applied before this runs (a deny never gets here); the
 *   file's status and headers go through `Pipeline.respond`, so an
 *   on_response plugin can change them as for a proxied answer.
 *
 * GET and HEAD only (405 with `Allow` otherwise). A `fallback` (single-page
 * apps) is served, with 200, for a path that names nothing on disk; a
 * refused path never gets it.
 */

import { constants, type Stats } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, join, sep } from 'node:path';
import { pipeline as pump, type Transform } from 'node:stream';
import type { Logger } from '../../src/core/log.ts';
import { textAnswer, type Answer, type Facts, type HeaderList, type Pipeline } from '../../src/core/gateway/pipeline.ts';
import type { RequestInfo } from '../../src/core/protocol/protocol.ts';
import { fileAnswer, servePath, type ServeStep } from '../../src/core/serve/serve.ts';
import type { TokenBucket } from '../../src/core/gateway/throttle.ts';

/** What serving needs from the HTTP data plane. */
export interface ServeDeps {
  pipeline: Pipeline;
  logger: Logger;
  /** writes a pipeline answer (with its length and request id) */
  send: (res: ServerResponse, a: Answer) => void;
  /** a Transform pacing bytes through a speed-limit bucket */
  throttle: (bucket: TokenBucket) => Transform;
}

const NOT_FOUND = 'not found\n';
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
/** Errors that mean "nothing servable here", not a failure of the gateway. */
const ABSENT = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'EACCES', 'EPERM', 'ENAMETOOLONG', 'EISDIR', 'ENXIO']);

/** An open regular file to answer with. */
interface Found {
  kind: 'file';
  fh: FileHandle;
  stat: Stats;
  name: string;
}

type Lookup = Found | { kind: 'redirect'; to: string } | { kind: 'missing' } | { kind: 'refused'; why: string };

function isAbsent(err: unknown): boolean {
  return ABSENT.has((err as NodeJS.ErrnoException).code ?? '');
}

/** True when `real` is `root` or below it (both real paths). */
function inside(root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** Opens `real` as a regular file or directory; null when it is absent or something else. */
async function openReal(real: string): Promise<{ fh: FileHandle; stat: Stats } | null> {
  let fh: FileHandle;
  try {
    fh = await open(real, OPEN_FLAGS);
  } catch (err) {
    if (isAbsent(err)) return null;
    throw err;
  }
  try {
    const stat = await fh.stat();
    if (stat.isFile() || stat.isDirectory()) return { fh, stat };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
  await fh.close().catch(() => {});
  return null;
}

/** Resolves `segments` below the real `root`: an open file, or why there is none. `index` answers for a directory. */
async function lookup(root: string, segments: string[], index: string | null, redirectTo: string | null): Promise<Lookup> {
  let real: string;
  try {
    real = await realpath(join(root, ...segments));
  } catch (err) {
    if (isAbsent(err)) return { kind: 'missing' };
    throw err;
  }
  if (!inside(root, real)) return { kind: 'refused', why: 'resolves outside the root (a symlink)' };
  const opened = await openReal(real);
  if (!opened) return { kind: 'missing' };
  if (opened.stat.isFile()) return { kind: 'file', ...opened, name: basename(real) };
  await opened.fh.close().catch(() => {});
  if (index === null) return { kind: 'missing' };
  const found = await lookup(real, [index], null, null);
  if (found.kind !== 'file') return found.kind === 'refused' ? found : { kind: 'missing' };
  // The index was checked against its own folder (below the root), so a symlinked index cannot leave it.
  if (redirectTo !== null) {
    await found.fh.close().catch(() => {});
    return { kind: 'redirect', to: redirectTo };
  }
  return found;
}

/** Finds the file a serve step names (see the module). */
async function find(f: Facts, s: ServeStep): Promise<Lookup> {
  const a = s.action;
  if (a.file !== undefined) {
    let real: string;
    try {
      real = await realpath(a.file);
    } catch (err) {
      if (isAbsent(err)) return { kind: 'missing' };
      throw err;
    }
    const opened = await openReal(real);
    if (!opened || !opened.stat.isFile()) {
      await opened?.fh.close().catch(() => {});
      return { kind: 'missing' };
    }
    return { kind: 'file', ...opened, name: basename(real) };
  }
  const sp = s.path === null ? null : servePath(s.path, f.m.mp, !s.prefixed);
  if (sp === null) return { kind: 'refused', why: 'the path names a file that may not be served' };
  let root: string;
  try {
    root = await realpath(a.root!);
  } catch (err) {
    if (isAbsent(err)) return { kind: 'missing' };
    throw err;
  }
  const redirect = !sp.trailingSlash && sp.canAddSlash ? `${f.path}/${f.query ? `?${f.query}` : ''}` : null;
  const found = await lookup(root, sp.segments, a.index, s.prefixed ? redirect : null);
  if (found.kind !== 'missing' || a.fallback === undefined) return found;
  const fb = await lookup(root, a.fallback.split('/'), null, null);
  return fb.kind === 'file' ? fb : { kind: 'missing' };
}

/**
 * Answers a request with a serve step: GET and HEAD from the file system,
 * 405 otherwise. Never throws; a failure is logged and answered with 500
 * (or cuts the answer short once it started). `info` is the request's
 * on_request data when a plugin was asked (for on_response).
 *
 * @example
 * if (s.kind === 'serve') return serveFiles(res, f, s, info, { pipeline, logger, send: sendAnswer, throttle: throttled });
 */
export function serveFiles(res: ServerResponse, f: Facts, s: ServeStep, info: RequestInfo | null, deps: ServeDeps): void {
  if (f.method !== 'GET' && f.method !== 'HEAD') {
    return deps.send(res, textAnswer(405, 'method not allowed: this route serves files (GET, HEAD)\n', ['allow', 'GET, HEAD']));
  }
  serve(res, f, s, info, deps).catch((err) => {
    deps.logger.error({ route: f.plan.route.id, err: (err as Error).message }, 'serving a file failed');
    if (!res.headersSent) deps.send(res, textAnswer(500, 'internal error\n'));
    else res.destroy();
  });
}

async function serve(res: ServerResponse, f: Facts, s: ServeStep, info: RequestInfo | null, deps: ServeDeps): Promise<void> {
  const found = await find(f, s);
  if (res.destroyed) {
    if (found.kind === 'file') await found.fh.close();
    return;
  }
  if (found.kind === 'refused') {
    deps.logger.debug({ route: f.plan.route.id, path: f.path, why: found.why }, 'serve: path refused');
    return deps.send(res, textAnswer(404, NOT_FOUND));
  }
  if (found.kind === 'missing') return deps.send(res, textAnswer(404, NOT_FOUND));
  if (found.kind === 'redirect') return deps.send(res, { kind: 'answer', status: 301, headers: ['location', found.to, 'content-type', 'text/plain; charset=utf-8'], body: 'moved permanently\n' });
  await answerWith(res, f, found, info, deps, s.download);
}

async function answerWith(res: ServerResponse, f: Facts, file: Found, info: RequestInfo | null, deps: ServeDeps, download: TokenBucket | null): Promise<void> {
  const plan = fileAnswer(f.method, f.headers, { size: file.stat.size, mtimeMs: file.stat.mtimeMs, name: file.name });
  let r;
  try {
    r = await deps.pipeline.respond(f, info, '', plan.status, plan.headers);
  } catch (err) {
    await file.fh.close().catch(() => {});
    throw err;
  }
  if (r.kind === 'answer' || res.destroyed || plan.body === null) await file.fh.close();
  if (res.destroyed) return;
  if (r.kind === 'answer') return deps.send(res, r);
  const headers: HeaderList = r.headers;
  headers.push('x-request-id', f.requestId);
  res.writeHead(r.status, headers);
  if (plan.body === null) return void res.end();
  const stream = file.fh.createReadStream({ start: plan.body.start, end: plan.body.end, autoClose: true });
  const done = (err: Error | null | undefined) => {
    // A client that went away is not an error of ours; anything else cuts the answer short.
    if (err && !res.destroyed) res.destroy();
    if (err && (err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') deps.logger.warn({ route: f.plan.route.id, err: err.message }, 'serve: streaming a file failed');
  };
  if (download) pump(stream, deps.throttle(download), res, done);
  else pump(stream, res, done);
}
