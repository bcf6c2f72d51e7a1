/**
 * @module throttle
 * Speed limits for streamed bodies: token buckets in bytes per second,
 * one per connection or shared by every stream with the same group key,
 * and a TransformStream that paces chunks through a bucket.
 */

/** Bytes per second of `mbps` megabits per second. */
export function mbpsToBytes(mbps: number): number {
  return (mbps * 1_000_000) / 8;
}

/**
 * A token bucket: `rate` bytes per second, holding at most a tenth of a
 * second's worth (so a burst stays short). Shared buckets make streams with
 * the same group key share one budget.
 */
export class TokenBucket {
  readonly rate: number;
  #tokens: number;
  #last: number;
  #now: () => number;

  constructor(rate: number, now: () => number = () => performance.now()) {
    this.rate = rate;
    this.#now = now;
    this.#tokens = this.burst;
    this.#last = now();
  }

  /** Largest piece handed out at once. */
  get burst(): number {
    return Math.max(1024, Math.floor(this.rate / 10));
  }

  /**
   * Takes `n` bytes (n <= burst); returns how many ms to wait before
   * sending them (0 when they may go now). The debt is recorded either way.
   */
  take(n: number): number {
    const now = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.rate) / 1000);
    this.#last = now;
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : (-this.#tokens * 1000) / this.rate;
  }
}

/**
 * A TransformStream that passes bytes through `bucket`'s pace.
 *
 * @example
 * body.pipeThrough(throttle(new TokenBucket(mbpsToBytes(10))))
 */
export function throttle(bucket: TokenBucket): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    async transform(chunk, controller) {
      for (let off = 0; off < chunk.length; ) {
        const piece = chunk.subarray(off, off + bucket.burst);
        off += piece.length;
        const wait = bucket.take(piece.length);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        controller.enqueue(piece);
      }
    },
  });
}
