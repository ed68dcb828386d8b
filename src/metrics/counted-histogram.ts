import { Histogram } from "prom-client";

/**
 * A histogram observed on every request, counted in plain numbers: prom-client's `observe` validates and hashes
 * its labels on every call (about a microsecond a request for the two histograms of a relayed request), where
 * this one only finds the bucket. Its series are one per label value (`child(value)`, made once and kept by the
 * caller), read when Prometheus scrapes. It is a prom-client Histogram to its registry, so the exposition, the
 * merge of `--workers` processes and `reset()` are prom-client's own.
 */
export class CountedHistogram<L extends string> extends Histogram<L> {
  private readonly series = new Map<string, BucketCounts>();
  private readonly bounds: readonly number[];
  private readonly metricName: string;
  private readonly helpText: string;

  constructor(
    config: { name: string; help: string; buckets: number[]; registers: NonNullable<ConstructorParameters<typeof Histogram>[0]["registers"]> },
    private readonly label: L,
  ) {
    super({ name: config.name, help: config.help, labelNames: [label], buckets: config.buckets, registers: config.registers });
    this.bounds = [...config.buckets].sort((a, b) => a - b);
    this.metricName = config.name;
    this.helpText = config.help;
  }

  /** The series of one label value, made on first use; the caller keeps it. */
  child(value: string): BucketCounts {
    let counts = this.series.get(value);
    if (!counts) {
      counts = new BucketCounts(this.bounds);
      this.series.set(value, counts);
    }
    return counts;
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor resets too, before this class's fields exist.
    if (this.series !== undefined) for (const counts of this.series.values()) counts.clear();
  }

  /**
   * The exposition prom-client would give for the same observations: cumulative buckets, +Inf, sum, count. (Its
   * registry asks this of a metric that has it; `get()`, which the merge of `--workers` uses, is built on it.)
   */
  async getForPromString() {
    const values: Array<{ labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string }> = [];
    const name = this.metricName;
    const bucket = `${name}_bucket`;
    for (const [value, counts] of this.series) {
      // A series appears once observed, as prom-client's do (and again after a reset).
      if (counts.count === 0) continue;
      const shared = { [this.label]: value } as Record<string, string>;
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += counts.counts[i]!;
        values.push({ labels: { le: this.bounds[i]! }, sharedLabels: shared, value: cumulative, metricName: bucket });
      }
      values.push({ labels: { le: "+Inf" }, sharedLabels: shared, value: counts.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: shared, value: counts.sum, metricName: `${name}_sum` });
      values.push({ labels: {}, sharedLabels: shared, value: counts.count, metricName: `${name}_count` });
    }
    return { name, help: this.helpText, type: "histogram", values, aggregator: "sum" };
  }
}

/** One series' observations: a count per bucket (the last one above every bound), their sum and number. */
export class BucketCounts {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}
