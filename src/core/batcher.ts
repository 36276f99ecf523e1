/**
 * Gathers items submitted one at a time (one per HTTP request, one per MQTT message) into
 * batches, so the work behind them costs one query and one confirm round per batch instead of
 * per item. Each submit resolves or rejects with its own item's result.
 */
export interface BatcherOptions<TIn, TOut> {
  /** Processes a batch; must return one result per item, in order. Throwing fails every item. */
  process: (items: TIn[]) => Promise<TOut[]>;
  /** Largest batch. Default 200. */
  maxSize?: number;
  /** How long the first item of a partial batch waits for company, in ms. Default 2. */
  maxWaitMs?: number;
  /** Batches processed at the same time (each uses one database connection). Default 4. */
  concurrency?: number;
  /**
   * Items that must be waiting before a batch starts beside one already running, in items.
   * Fewer wait for a running batch to end (one batch's time, a few ms), so that a moderate load
   * makes fewer, larger batches: each batch has a fixed cost in statements and round trips. The
   * first batch never waits for it. Default 1: any waiting item may start a batch.
   */
  overlapAt?: number;
}

/**
 * Whether another batch may start now: a slot is free, something waits, and either no batch
 * runs or enough wait to be worth a batch of their own (see {@link BatcherOptions.overlapAt}).
 * Shared by the Batcher and the queue consumer.
 */
export function mayStartBatch(
  waiting: number,
  running: number,
  limits: { readonly concurrency: number; readonly overlapAt: number },
): boolean {
  return (
    waiting > 0 && running < limits.concurrency && (running === 0 || waiting >= limits.overlapAt)
  );
}

interface Pending<TIn, TOut> {
  item: TIn;
  resolve: (value: TOut) => void;
  reject: (err: unknown) => void;
}

export class Batcher<TIn, TOut> {
  readonly #process: (items: TIn[]) => Promise<TOut[]>;
  readonly #maxSize: number;
  readonly #maxWaitMs: number;
  readonly #concurrency: number;
  readonly #overlapAt: number;
  #queue: Pending<TIn, TOut>[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = 0;
  readonly #idle = new Set<() => void>();

  constructor(options: BatcherOptions<TIn, TOut>) {
    this.#process = options.process;
    this.#maxSize = options.maxSize ?? 200;
    this.#maxWaitMs = options.maxWaitMs ?? 2;
    this.#concurrency = options.concurrency ?? 4;
    this.#overlapAt = Math.max(1, options.overlapAt ?? 1);
  }

  submit(item: TIn): Promise<TOut> {
    return new Promise<TOut>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#queue.length >= this.#maxSize) {
        this.#flush();
      } else {
        this.#timer ??= setTimeout(() => this.#flush(), this.#maxWaitMs);
      }
    });
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    // Stopping short of a free slot is fine: the running batch's end flushes again.
    const limits = { concurrency: this.#concurrency, overlapAt: this.#overlapAt };
    while (mayStartBatch(this.#queue.length, this.#running, limits)) {
      const batch = this.#queue.splice(0, this.#maxSize);
      this.#running++;
      void this.#run(batch);
    }
  }

  async #run(batch: Pending<TIn, TOut>[]): Promise<void> {
    try {
      const results = await this.#process(batch.map((p) => p.item));
      batch.forEach((p, i) => p.resolve(results[i] as TOut));
    } catch (err) {
      for (const p of batch) {
        p.reject(err);
      }
    } finally {
      this.#running--;
      if (this.#queue.length > 0) {
        this.#flush();
      } else if (this.#running === 0) {
        for (const wake of this.#idle) {
          wake();
        }
        this.#idle.clear();
      }
    }
  }

  /** Resolves when nothing is queued or running (for a graceful stop). */
  drained(): Promise<void> {
    if (this.#queue.length === 0 && this.#running === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idle.add(resolve));
  }
}
