import type express from "express";

import type { Logger } from "../../core/logger.js";

/** Shedding is logged at most this often, with the count since the last line, ms. */
const SHED_LOG_INTERVAL_MS = 5_000;

export interface AdmissionOptions {
  /** Most requests held at once (TTN_WEBHOOK_MAX_WAITING), in requests. */
  readonly maxWaiting: number;
  /** Counts each shed request (the component's `broker_messages_shed_total`). */
  readonly onShed: () => void;
  readonly logger: Logger;
}

/**
 * Bounds the requests the webhook holds at once. Under an open-loop load above capacity (The
 * Things Stack sends on whatever we answer), requests would otherwise pile up with their sockets,
 * bodies and parsed items until memory runs out; beyond the bound a request is answered 503 with
 * `Retry-After` at once, before its body is read, and nothing of it is stored: the same contract
 * as the 503 when PostgreSQL is down (the sender retries).
 *
 * The count lives here, not in the Batcher, so that it covers a request from its admission to
 * its end: the body being read, the item queued or in a running batch, the answer being
 * written. A request holds its place until both its response has closed and the batcher is done
 * with its item ({@link Admission.track}), so a sender that gives up does not free a place its
 * item still takes in a batch.
 */
export class Admission {
  readonly #maxWaiting: number;
  readonly #onShed: () => void;
  readonly #logger: Logger;
  readonly #items = new WeakMap<express.Response, Promise<unknown>>();
  #waiting = 0;
  #unlogged = 0;
  #lastLog = Number.NEGATIVE_INFINITY;

  constructor(options: AdmissionOptions) {
    this.#maxWaiting = options.maxWaiting;
    this.#onShed = options.onShed;
    this.#logger = options.logger;
  }

  /** Express middleware: admits the request or answers 503 without reading it. */
  readonly middleware: express.RequestHandler = (_req, res, next) => {
    if (this.#waiting >= this.#maxWaiting) {
      this.#shed(res);
      return;
    }
    this.#waiting++;
    res.once("close", () => {
      const item = this.#items.get(res);
      if (item === undefined) {
        this.#waiting--;
      } else {
        const release = (): void => {
          this.#waiting--;
        };
        void item.then(release, release);
      }
    });
    next();
  };

  /** Keeps the request's place until `item` (its batcher submission) settles. */
  track(res: express.Response, item: Promise<unknown>): void {
    this.#items.set(res, item);
  }

  #shed(res: express.Response): void {
    this.#onShed();
    this.#unlogged++;
    const now = Date.now();
    // One line per interval, not one per request: a flood of warnings would cost the CPU that
    // the overload already lacks. The metric counts every one.
    if (now - this.#lastLog >= SHED_LOG_INTERVAL_MS) {
      this.#logger.warn(
        { shed: this.#unlogged, waiting: this.#waiting, max_waiting: this.#maxWaiting },
        "overloaded: requests answered 503 unread (TTN_WEBHOOK_MAX_WAITING); the sender retries",
      );
      this.#unlogged = 0;
      this.#lastLog = now;
    }
    // The unread body is drained by Node after the answer (the connection stays usable), so a
    // sender keeps its keep-alive connection for the retry.
    res
      .status(503)
      .set("Retry-After", "5")
      .json({
        error: "overloaded",
        message: `${this.#maxWaiting} requests are waiting already; retry later`,
      });
  }
}
