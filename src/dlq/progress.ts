/**
 * Progress lines for long operations (pure: the clock and the output are given). Nothing is
 * written for an operation that ends within `quietMs`; after that, at most one line per
 * `everyMs`: `<queue>: done/total (pct%), rate msg/s, about N s left`, and a last line at the end
 * (without the time left).
 */
export interface ProgressOptions {
  /** Receives each line (without a newline) and whether it ends the operation. */
  readonly write: (line: string, final: boolean) => void;
  /** Milliseconds since some fixed point. Default Date.now. */
  readonly now?: () => number;
  /** Silence at the start, in ms. Default 1 000. */
  readonly quietMs?: number;
  /** Least time between two lines, in ms. Default 1 000. */
  readonly everyMs?: number;
}

export class ProgressReporter {
  readonly #o: Required<ProgressOptions>;
  readonly #started = new Map<string, number>();
  #lastLine = Number.NEGATIVE_INFINITY;
  #wrote = false;

  constructor(options: ProgressOptions) {
    this.#o = { now: Date.now, quietMs: 1_000, everyMs: 1_000, ...options };
  }

  /** Reports `done` of `total` messages of `queue`. */
  update(queue: string, done: number, total: number): void {
    const now = this.#o.now();
    const started = this.#started.get(queue) ?? now;
    this.#started.set(queue, started);
    const final = done >= total;
    const elapsed = now - started;
    if (final ? !this.#wrote && elapsed < this.#o.quietMs : elapsed < this.#o.quietMs) {
      return;
    }
    if (!final && now - this.#lastLine < this.#o.everyMs) {
      return;
    }
    this.#lastLine = now;
    this.#wrote = true;
    this.#o.write(formatProgress(queue, done, total, elapsed), final);
    if (final) {
      this.#wrote = false;
      this.#started.delete(queue);
    }
  }
}

export function formatProgress(
  queue: string,
  done: number,
  total: number,
  elapsedMs: number,
): string {
  const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
  const exact = elapsedMs > 0 ? (done / elapsedMs) * 1000 : 0;
  const rate = Math.round(exact);
  const left =
    done < total && exact > 0 ? `, about ${Math.ceil((total - done) / exact)} s left` : "";
  return `${queue}: ${done}/${total} (${pct}%), ${rate} msg/s${left}`;
}
