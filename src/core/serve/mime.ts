/**
 * @module mime
 * The Content-Type of a served file, by its extension: a small built-in
 * table of the types web servers actually serve (the common part of
 * nginx's `mime.types` and the `mime-db` entries marked as sourced from
 * IANA), text types with `charset=utf-8`. Anything else is
 * `application/octet-stream`, which browsers download rather than render,
 * so an unknown extension never becomes HTML by sniffing (the serve action
 * also sends `X-Content-Type-Options: nosniff`).
 *
 * A table here rather than the `mime-types` package: it keeps the core
 * free of a 200 KB database, and a wrong guess for a rare extension costs a
 * download instead of a render. Which files are served is `serve.ts`'s.
 */

const UTF8 = '; charset=utf-8';

/** Extension (lower case, no dot) → type. */
const TYPES: Record<string, string> = {
  // text
  html: `text/html${UTF8}`,
  htm: `text/html${UTF8}`,
  css: `text/css${UTF8}`,
  js: `text/javascript${UTF8}`,
  mjs: `text/javascript${UTF8}`,
  cjs: `text/javascript${UTF8}`,
  txt: `text/plain${UTF8}`,
  text: `text/plain${UTF8}`,
  md: `text/markdown${UTF8}`,
  csv: `text/csv${UTF8}`,
  tsv: `text/tab-separated-values${UTF8}`,
  xml: `application/xml${UTF8}`,
  ics: `text/calendar${UTF8}`,
  vtt: `text/vtt${UTF8}`,
  // data
  json: `application/json${UTF8}`,
  map: `application/json${UTF8}`,
  jsonld: `application/ld+json${UTF8}`,
  webmanifest: `application/manifest+json${UTF8}`,
  yaml: `application/yaml${UTF8}`,
  yml: `application/yaml${UTF8}`,
  toml: `application/toml${UTF8}`,
  rss: `application/rss+xml${UTF8}`,
  atom: `application/atom+xml${UTF8}`,
  wasm: 'application/wasm',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tgz: 'application/gzip',
  tar: 'application/x-tar',
  bz2: 'application/x-bzip2',
  xz: 'application/x-xz',
  zst: 'application/zstd',
  '7z': 'application/x-7z-compressed',
  rar: 'application/vnd.rar',
  deb: 'application/vnd.debian.binary-package',
  rpm: 'application/x-rpm',
  jar: 'application/java-archive',
  epub: 'application/epub+zip',
  doc: 'application/msword',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xls: 'application/vnd.ms-excel',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ppt: 'application/vnd.ms-powerpoint',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
  rtf: 'application/rtf',
  // images
  png: 'image/png',
  apng: 'image/apng',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  svg: 'image/svg+xml',
  svgz: 'image/svg+xml',
  ico: 'image/x-icon',
  bmp: 'image/bmp',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  heic: 'image/heic',
  jxl: 'image/jxl',
  // fonts
  woff: 'font/woff',
  woff2: 'font/woff2',
  ttf: 'font/ttf',
  otf: 'font/otf',
  eot: 'application/vnd.ms-fontobject',
  // audio and video
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  oga: 'audio/ogg',
  ogg: 'audio/ogg',
  opus: 'audio/ogg',
  wav: 'audio/wav',
  flac: 'audio/flac',
  weba: 'audio/webm',
  mid: 'audio/midi',
  midi: 'audio/midi',
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  webm: 'video/webm',
  ogv: 'video/ogg',
  mov: 'video/quicktime',
  mkv: 'video/x-matroska',
  avi: 'video/x-msvideo',
  mpeg: 'video/mpeg',
  mpg: 'video/mpeg',
  ts: 'video/mp2t',
  m3u8: 'application/vnd.apple.mpegurl',
  mpd: 'application/dash+xml',
};

/** What a file whose extension the table does not know is sent as. */
export const DEFAULT_TYPE = 'application/octet-stream';

/**
 * The Content-Type of a file name (its last extension, any case).
 *
 * @example
 * contentTypeOf('app.JS')       // 'text/javascript; charset=utf-8'
 * contentTypeOf('archive.tar.gz') // 'application/gzip'
 * contentTypeOf('Makefile')     // 'application/octet-stream'
 */
export function contentTypeOf(name: string): string {
  const slash = Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\'));
  const base = name.slice(slash + 1);
  const dot = base.lastIndexOf('.');
  if (dot <= 0) return DEFAULT_TYPE;
  const ext = base.slice(dot + 1).toLowerCase();
  return Object.hasOwn(TYPES, ext) ? TYPES[ext] : DEFAULT_TYPE;
}
