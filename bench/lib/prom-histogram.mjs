// A Prometheus histogram read from a /metrics text: its cumulative bucket counts, the difference of two readings
// (what happened between them), and quantiles interpolated inside a bucket as Prometheus's histogram_quantile does.

/** Cumulative counts by upper bound (seconds; Infinity last) of `name`'s series whose labels include `labels`. */
export function readHistogram(text, name, labels = {}) {
  const buckets = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const labelText = line.slice(line.indexOf("{") + 1, line.lastIndexOf("}"));
    const found = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!Object.entries(labels).every(([k, v]) => found[k] === v)) continue;
    const le = found.le === "+Inf" ? Infinity : Number(found.le);
    buckets.set(le, (buckets.get(le) ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return [...buckets].sort((a, b) => a[0] - b[0]);
}

/** The observations made between two readings of the same histogram. */
export function histogramDelta(before, after) {
  const was = new Map(before);
  return after.map(([le, count]) => [le, count - (was.get(le) ?? 0)]);
}

/** The q-quantile (0..1), interpolated linearly inside its bucket; NaN for an empty histogram. */
export function quantile(buckets, q) {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(1, count - below);
    }
    lower = le;
    below = count;
  }
  return lower;
}

/**
 * The q-quantile in µs as a table shows it: a number, or "< N" when it falls in a first bucket too wide to say more
 * (an older build's own-time histogram started at 500 µs: interpolating inside it gives that bucket's middle, whatever
 * the times were).
 */
export function quantileMicros(buckets, q) {
  const value = quantile(buckets, q);
  const first = buckets[0]?.[0];
  if (first !== undefined && first >= 0.0001 && value <= first) return `< ${Math.round(first * 1e6)}`;
  return Math.round(value * 1e6);
}

/** The share of observations at or under `bound` (a bucket boundary), exact. */
export function shareAtMost(buckets, bound) {
  const total = buckets.at(-1)?.[1] ?? 0;
  const at = buckets.find(([le]) => le === bound);
  return total === 0 || at === undefined ? NaN : at[1] / total;
}
