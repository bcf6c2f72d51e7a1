/**
 * @module protocol/frames
 * Frames, docs/protocol.md §1.1: `[u32 BE length][payload]`, at most 1 MiB
 * of payload. Encoding one, and decoding a byte stream into payloads.
 */

import { HookgateError } from '../errors.ts';
import { MAX_PAYLOAD } from './protocol.ts';


/**
 * Prefixes a payload with its u32 big-endian length, in one new buffer.
 * Throws `FRAME_TOO_LARGE` for payloads over `maxPayload` (1 MiB).
 *
 * @example
 * socket.write(encodeFrame(packValue(result)));
 */
export function encodeFrame(payload: Uint8Array, maxPayload = MAX_PAYLOAD): Uint8Array {
  if (payload.length > maxPayload) {
    throw new HookgateError('FRAME_TOO_LARGE', `frame payload of ${payload.length} bytes exceeds the limit of ${maxPayload}`);
  }
  const out = new Uint8Array(4 + payload.length);
  writeU32(out, 0, payload.length);
  out.set(payload, 4);
  return out;
}

/**
 * Incremental frame decoder for a byte stream: feed it chunks as they
 * arrive, get back every payload that is complete (partial frames wait,
 * several frames in one chunk all come out).
 *
 * Not safe to share between streams. After it has thrown (a frame over the
 * limit) the stream is out of sync: close it. Returned payloads may be views
 * of the pushed chunk; decode them before the chunk's memory is reused.
 *
 * @example
 * const dec = new FrameDecoder();
 * socket.on('data', (chunk) => { for (const p of dec.push(chunk)) handle(p); });
 * socket.on('end', () => dec.end()); // throws FRAME_TRUNCATED mid-frame
 */
export class FrameDecoder {
  readonly maxPayload: number;
  #head = new Uint8Array(4);
  #headLen = 0;
  #body: Uint8Array | null = null;
  #bodyLen = 0;

  constructor(maxPayload = MAX_PAYLOAD) {
    this.maxPayload = maxPayload;
  }

  /** Bytes of an unfinished frame held back, waiting for the rest. */
  get pending(): number {
    return this.#body !== null ? 4 + this.#bodyLen : this.#headLen;
  }

  /** Feeds one chunk; returns the payloads it completed, in order. Throws `FRAME_TOO_LARGE`. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      const body = this.#body;
      if (body !== null) {
        const n = Math.min(body.length - this.#bodyLen, end - off);
        body.set(chunk.subarray(off, off + n), this.#bodyLen);
        this.#bodyLen += n;
        off += n;
        if (this.#bodyLen === body.length) {
          out.push(body);
          this.#body = null;
          this.#bodyLen = 0;
        }
        continue;
      }
      if (this.#headLen > 0 || end - off < 4) {
        const n = Math.min(4 - this.#headLen, end - off);
        this.#head.set(chunk.subarray(off, off + n), this.#headLen);
        this.#headLen += n;
        off += n;
        if (this.#headLen < 4) break;
        this.#headLen = 0;
        this.#startBody(readU32(this.#head, 0), out);
        continue;
      }
      const len = readU32(chunk, off);
      this.#check(len);
      if (end - off - 4 >= len) {
        out.push(chunk.subarray(off + 4, off + 4 + len));
        off += 4 + len;
      } else {
        off += 4;
        this.#startBody(len, out);
      }
    }
    return out;
  }

  /** Declares the stream finished; throws `FRAME_TRUNCATED` when it stopped mid-frame. */
  end(): void {
    const pending = this.pending;
    this.#head.fill(0);
    this.#headLen = 0;
    this.#body = null;
    this.#bodyLen = 0;
    if (pending > 0) {
      throw new HookgateError('FRAME_TRUNCATED', `stream ended in the middle of a frame (${pending} bytes of it received)`);
    }
  }

  #startBody(len: number, out: Uint8Array[]): void {
    this.#check(len);
    if (len === 0) out.push(new Uint8Array(0));
    else {
      this.#body = new Uint8Array(len);
      this.#bodyLen = 0;
    }
  }

  #check(len: number): void {
    if (len > this.maxPayload) {
      throw new HookgateError('FRAME_TOO_LARGE', `frame announces ${len} bytes, over the limit of ${this.maxPayload}`);
    }
  }
}

/**
 * Splits a complete body of concatenated frames into payloads (for the
 * runner's `POST /v1/hooks`). Throws `FRAME_TOO_LARGE` or `FRAME_TRUNCATED`.
 */
export function decodeFrames(body: Uint8Array, maxPayload = MAX_PAYLOAD): Uint8Array[] {
  const dec = new FrameDecoder(maxPayload);
  const out = dec.push(body);
  dec.end();
  return out;
}



/** Writes `n` as a big-endian u32 at `off`. */
export function writeU32(buf: Uint8Array, off: number, n: number): void {
  buf[off] = n >>> 24;
  buf[off + 1] = (n >>> 16) & 0xff;
  buf[off + 2] = (n >>> 8) & 0xff;
  buf[off + 3] = n & 0xff;
}

/** Reads the big-endian u32 at `off`. */
export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) >>> 0) + (buf[off + 1] << 16) + (buf[off + 2] << 8) + buf[off + 3];
}
