/**
 * Latencies counted in buckets 1 % wide on a log scale from 0.1 ms, so a 30-minute soak keeps a
 * few hundred counters per window instead of every latency; a percentile is its bucket's upper
 * bound (at most 1 % above the true value).
 */
const FLOOR_MS = 0.1;
const GROWTH = Math.log(1.01);

export class LatencyHistogram {
  /** Count per bucket index; sparse, since most buckets of a run stay empty. */
  readonly #counts = new Map<number, number>();
  #total = 0;

  get count(): number {
    return this.#total;
  }

  add(ms: number): void {
    const bucket = ms <= FLOOR_MS ? 0 : Math.ceil(Math.log(ms / FLOOR_MS) / GROWTH);
    this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + 1);
    this.#total++;
  }

  addAll(latenciesMs: readonly number[]): void {
    for (const ms of latenciesMs) {
      this.add(ms);
    }
  }

  merge(other: LatencyHistogram): void {
    for (const [bucket, n] of other.#counts) {
      this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + n);
    }
    this.#total += other.#total;
  }

  /** As stats.ts's percentile (the ceil(p% · n)-th value), in ms; NaN when empty. */
  percentile(p: number): number {
    if (this.#total === 0) {
      return Number.NaN;
    }
    const rank = Math.min(this.#total, Math.max(1, Math.ceil((p / 100) * this.#total)));
    let seen = 0;
    for (const bucket of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(bucket)!;
      if (seen >= rank) {
        return FLOOR_MS * Math.exp(bucket * GROWTH);
      }
    }
    return Number.NaN;
  }
}
