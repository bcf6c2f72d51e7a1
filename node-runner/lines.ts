/**
 * @module lines
 * Splits a byte stream into text lines with a bound on line length, so a
 * plugin that writes megabytes without a newline cannot grow our memory.
 */

import { StringDecoder } from 'node:string_decoder';

/** Default longest line kept: 1 MiB. Longer lines are reported and skipped. */
export const MAX_LINE = 1_048_576;

/**
 * Feed it chunks; it calls `onLine` for every complete line (without the
 * newline or a trailing CR) and `onOverflow` once for each line that grew
 * past `maxLine` (that line is dropped up to its newline).
 *
 * @example
 * const split = new LineSplitter((l) => handle(l), () => log.warn('line too long'));
 * child.stdout.on('data', (c) => split.push(c));
 */
export class LineSplitter {
  readonly maxLine: number;
  #onLine: (line: string) => void;
  #onOverflow: () => void;
  #buf = '';
  #skipping = false;
  #utf8 = new StringDecoder('utf8');

  constructor(onLine: (line: string) => void, onOverflow: () => void = () => {}, maxLine = MAX_LINE) {
    this.#onLine = onLine;
    this.#onOverflow = onOverflow;
    this.maxLine = maxLine;
  }

  push(chunk: Buffer | string): void {
    // A multi-byte character split across Buffer chunks is held back until complete.
    let text = typeof chunk === 'string' ? chunk : this.#utf8.write(chunk);
    for (;;) {
      const nl = text.indexOf('\n');
      if (nl < 0) break;
      const part = text.slice(0, nl);
      text = text.slice(nl + 1);
      if (this.#skipping) {
        this.#skipping = false;
        this.#buf = '';
        continue;
      }
      let line = this.#buf + part;
      this.#buf = '';
      if (line.length > this.maxLine) {
        this.#onOverflow();
        continue;
      }
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.#onLine(line);
    }
    if (this.#skipping) return;
    this.#buf += text;
    if (this.#buf.length > this.maxLine) {
      this.#buf = '';
      this.#skipping = true;
      this.#onOverflow();
    }
  }

  /** Delivers a last line that had no newline. */
  end(): void {
    this.#buf += this.#utf8.end();
    if (!this.#skipping && this.#buf) this.#onLine(this.#buf.endsWith('\r') ? this.#buf.slice(0, -1) : this.#buf);
    this.#buf = '';
    this.#skipping = false;
  }
}
