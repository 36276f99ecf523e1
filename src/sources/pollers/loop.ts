import { backoffDelay, sleep } from "../../core/backoff.js";
import type { Logger } from "../../core/logger.js";

/** How one poll went. */
export interface PollOutcome {
  /**
   * False when something could not be fetched or stored (vendor, PostgreSQL or RabbitMQ
   * unavailable): the next poll comes sooner, after a backoff delay, instead of a full interval.
   */
  readonly complete: boolean;
  /** The vendor asked not to be called again before this many ms (Retry-After). */
  readonly notBeforeMs?: number;
}

export interface PollLoopOptions {
  /** Names the poller in logs. */
  readonly name: string;
  /** Time between the starts of two complete polls, in ms. */
  readonly intervalMs: number;
  /** First delay after an incomplete poll, in ms; doubles (with jitter) per failure. */
  readonly retryInitialMs: number;
  /** Longest delay after an incomplete poll, in ms (never more than `intervalMs`). */
  readonly retryMaxMs: number;
  readonly logger: Logger;
  /** One poll. Must return promptly once `signal` aborts. Throwing counts as incomplete. */
  readonly poll: (signal: AbortSignal) => Promise<PollOutcome>;
  /** Told how each poll ended (metrics, tests). */
  readonly onPoll?: (result: "complete" | "incomplete" | "failed") => void;
}

/**
 * Runs a poller on its schedule: the first poll at once, then one every `intervalMs` counted
 * from the start of the previous one (a poll that overruns is followed at once, never doubled).
 * An incomplete or failed poll is retried after a capped, jittered, growing delay. `stop()`
 * aborts the poll in flight through its signal and resolves when the loop has ended.
 */
export class PollLoop {
  readonly #o: PollLoopOptions;
  readonly #abort = new AbortController();
  #running: Promise<void> | undefined;

  constructor(options: PollLoopOptions) {
    this.#o = options;
  }

  start(): void {
    this.#running ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }

  async #run(): Promise<void> {
    const { signal } = this.#abort;
    const o = this.#o;
    let failures = 0;
    while (!signal.aborted) {
      const started = Date.now();
      let outcome: PollOutcome;
      let failed = false;
      try {
        outcome = await o.poll(signal);
      } catch (err) {
        if (signal.aborted) {
          break;
        }
        failed = true;
        outcome = { complete: false };
        o.logger.warn({ err, poller: o.name }, "poll failed; retrying after a backoff delay");
      }
      if (signal.aborted) {
        break;
      }
      o.onPoll?.(failed ? "failed" : outcome.complete ? "complete" : "incomplete");
      let delay: number;
      if (outcome.complete) {
        failures = 0;
        delay = Math.max(0, started + o.intervalMs - Date.now());
      } else {
        const maxMs = Math.min(o.retryMaxMs, o.intervalMs);
        delay = backoffDelay(failures++, { initialMs: Math.min(o.retryInitialMs, maxMs), maxMs });
        delay = Math.max(delay, outcome.notBeforeMs ?? 0);
        o.logger.info({ poller: o.name, retryInMs: delay }, "poll incomplete; retrying early");
      }
      // setTimeout cannot wait longer than about 24.8 days.
      await sleep(Math.min(delay, 2_147_483_647), signal);
    }
  }
}

/** Collects how a poll is going, for its {@link PollOutcome}. */
export class OutcomeTracker {
  #complete = true;
  #notBeforeMs = 0;

  /** Something was not fetched or stored; `err` may carry the vendor's Retry-After. */
  incomplete(err?: unknown): void {
    this.#complete = false;
    const retryAfter = (err as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
    if (typeof retryAfter === "number") {
      this.#notBeforeMs = Math.max(this.#notBeforeMs, retryAfter);
    }
  }

  get outcome(): PollOutcome {
    return this.#complete
      ? { complete: true }
      : { complete: false, ...(this.#notBeforeMs > 0 ? { notBeforeMs: this.#notBeforeMs } : {}) };
  }
}
