import { backoffDelay, sleep } from "./backoff.js";

/** What one round of a table-to-RabbitMQ relay found: nothing, a full batch, or another relay. */
export type RoundOutcome = "idle" | "more" | "standby";

export interface RelayLoopOptions {
  /** One round: read a batch from the table, publish it confirmed, mark it; throws on failure. */
  readonly round: () => Promise<RoundOutcome>;
  /** How long to wait after a round that found nothing (or found another relay working), in ms. */
  readonly idleMs: () => number;
  /** Longest wait between retries after failures (capped exponential backoff from 200 ms), in ms. */
  readonly maxBackoffMs: number;
  /** Told of each failed round and the wait before the next try (logging, metrics). */
  readonly onFailure: (err: unknown, retryInMs: number) => void;
}

/**
 * The loop shared by the relays that publish rows of a table (registry events, the ingest
 * outbox): rounds back to back while there is more, waits when idle, backs off after failures.
 * A notification ends an idle wait; only an urgent one (RabbitMQ is back) ends a backoff wait,
 * so a stream of notifications during an outage does not turn into a stream of failed rounds.
 */
export class RelayLoop {
  readonly #o: RelayLoopOptions;
  readonly #abort = new AbortController();
  #loop: Promise<void> | undefined;
  /** Set by a notification so the next wait ends at once. */
  #woken = false;
  #wake: (() => void) | undefined;
  #backingOff = false;

  constructor(options: RelayLoopOptions) {
    this.#o = options;
  }

  get isRunning(): boolean {
    return this.#loop !== undefined && !this.#abort.signal.aborted;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** `urgent` also ends a backoff wait; a plain notification only ends an idle one. */
  notify(urgent = false): void {
    this.#woken = true;
    if (urgent || !this.#backingOff) {
      this.#wake?.();
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#abort.signal.aborted) {
      let outcome: RoundOutcome;
      try {
        this.#woken = false;
        outcome = await this.#o.round();
        failures = 0;
      } catch (err) {
        if (this.#abort.signal.aborted) {
          break;
        }
        const delay = backoffDelay(failures++, { initialMs: 200, maxMs: this.#o.maxBackoffMs });
        this.#o.onFailure(err, delay);
        this.#backingOff = true;
        await this.#idle(delay);
        this.#backingOff = false;
        continue;
      }
      if (outcome !== "more") {
        await this.#idle(this.#o.idleMs());
      }
    }
  }

  /** Waits `ms`, or less when woken or stopped. */
  async #idle(ms: number): Promise<void> {
    if (this.#woken && !this.#backingOff) {
      return;
    }
    const wake = new AbortController();
    this.#wake = () => wake.abort();
    const stop = (): void => wake.abort();
    this.#abort.signal.addEventListener("abort", stop, { once: true });
    try {
      await sleep(ms, wake.signal);
    } finally {
      this.#wake = undefined;
      this.#abort.signal.removeEventListener("abort", stop);
    }
  }

  /**
   * Stops starting rounds and waits up to `graceMs` for the one in flight; the caller then closes
   * its publisher (failing a round still waiting for confirms) and awaits {@link finished}.
   */
  async halt(graceMs = 2_000): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    const grace = new AbortController();
    await Promise.race([this.finished(), sleep(graceMs, grace.signal)]);
    grace.abort();
  }

  /** Resolves when the loop has ended (at once if it never started). */
  finished(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }
}
