/**
 * @module metric-series
 * Counters and histograms for the request path, registered in a
 * prom-client Registry but recorded without it: a series is a plain object
 * made once per label set (`series(...)`), and recording is `s.value += n`
 * or `observe(s, v)`, with no label hashing, no validation and no object
 * made per call. prom-client's own `inc`/`observe` hash and check the labels
 * on every call, which a request must not pay for. On scrape these families
 * hand prom-client the same JSON its own metrics give (`get()`), so the
 * text exposition and the aggregation over gateway workers
 * (`AggregatorRegistry`, sum) are prom-client's.
 *
 * Label values are the caller's to bound (route ids, plugin names, a
 * fixed set of methods and outcomes): a family keeps every series it was
 * asked for, as prom-client does.
 */

import type { Registry } from 'prom-client';

type Labels = Record<string, string>;

/** One counter series: add to `value`. */
export interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

/** One histogram series: record with `observe`. */
export interface HistogramSeries {
  readonly labels: Labels;
  /** observations per bucket (not cumulative), the last one for +Inf */
  readonly counts: Float64Array;
  readonly bounds: readonly number[];
  sum: number;
  count: number;
}

/**
 * Records one observation.
 *
 * @example
 * observe(duration.series('api'), 0.0042);
 */
export function observe(s: HistogramSeries, v: number): void {
  const b = s.bounds;
  let i = 0;
  while (i < b.length && v > b[i]) i++;
  s.counts[i]++;
  s.sum += v;
  s.count++;
}

abstract class Family<S extends { labels: Labels }> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';
  readonly labelNames: readonly string[];
  #series = new Map<string, S>();

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    registry.registerMetric(this as never);
  }

  /** The series of these label values (in `labelNames` order), made on first use; keep it to record without a lookup. */
  series(...values: string[]): S {
    const key = values.join('\u0000');
    let s = this.#series.get(key);
    if (!s) {
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]));
      this.#series.set(key, (s = this.make(labels)));
    }
    return s;
  }

  protected abstract make(labels: Labels): S;
  protected abstract values(s: S, out: unknown[]): void;

  /** prom-client's metric JSON (what `Registry.getMetricsAsJSON` and the text format read). */
  get(): { name: string; help: string; type: string; aggregator: string; values: unknown[] } {
    const values: unknown[] = [];
    for (const s of this.#series.values()) this.values(s, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Forgets every series (prom-client's `Registry.resetMetrics` calls it). */
  reset(): void {
    this.#series.clear();
  }
}

/** A counter family (`_total` in the name is the caller's). */
export class CounterFamily extends Family<CounterSeries> {
  readonly type = 'counter';
  protected make(labels: Labels): CounterSeries {
    return { labels, value: 0 };
  }
  protected values(s: CounterSeries, out: unknown[]): void {
    out.push({ labels: s.labels, value: s.value });
  }
}

/** A histogram family with fixed upper bounds (seconds, for durations). */
export class HistogramFamily extends Family<HistogramSeries> {
  readonly type = 'histogram';
  readonly bounds: readonly number[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], bounds: readonly number[]) {
    super(registry, name, help, labelNames);
    this.bounds = bounds;
  }

  protected make(labels: Labels): HistogramSeries {
    return { labels, counts: new Float64Array(this.bounds.length + 1), bounds: this.bounds, sum: 0, count: 0 };
  }

  protected values(s: HistogramSeries, out: unknown[]): void {
    let acc = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      acc += s.counts[i];
      out.push({ labels: { ...s.labels, le: i < this.bounds.length ? this.bounds[i] : '+Inf' }, value: acc, metricName: `${this.name}_bucket` });
    }
    out.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
    out.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
  }
}
