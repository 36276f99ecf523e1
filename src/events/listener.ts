import type pg from "pg";

import { backoffDelay, sleep } from "../core/backoff.js";
import type { Logger } from "../core/logger.js";

/** The channel the registry triggers notify at commit (db/migrations/008_registry_events.sql). */
export const EVENTS_CHANNEL = "broker_registry_events";

export interface EventListenerOptions {
  /** The pool one connection is taken from and held for as long as the listener runs. */
  pool: pg.Pool;
  logger: Logger;
  /**
   * Called on every notification, and after every (re)connection, since notifications sent
   * while the listener was away are lost: the callee looks at the table itself.
   */
  onWake: () => void;
  /** Longest wait between reconnection attempts, in ms. Default 10 000. */
  maxBackoffMs?: number;
}

/**
 * LISTENs for new registry events on a connection of its own and reconnects when PostgreSQL
 * drops it. A notification only says "look": readers always read the table, and poll it too, so
 * a lost notification delays an event but never loses it.
 */
export class EventListener {
  readonly #options: EventListenerOptions;
  readonly #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #client: pg.PoolClient | undefined;

  constructor(options: EventListenerOptions) {
    this.#options = options;
  }

  get isListening(): boolean {
    return this.#client !== undefined;
  }

  /** Starts listening in the background; returns at once. */
  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    const { pool, logger, onWake } = this.#options;
    let attempt = 0;
    while (!this.#abort.signal.aborted) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        const delay = backoffDelay(attempt++, { maxMs: this.#options.maxBackoffMs ?? 10_000 });
        logger.warn({ err, retryInMs: delay }, "cannot LISTEN for registry events yet");
        await sleep(delay, this.#abort.signal);
        continue;
      }
      if (this.#abort.signal.aborted) {
        client.release(true);
        break;
      }
      let failure: Error | undefined;
      const dropped = new Promise<void>((resolve) => {
        const signal = this.#abort.signal;
        const done = (): void => {
          signal.removeEventListener("abort", done);
          resolve();
        };
        client.on("error", (err: Error) => {
          failure = err;
          done();
        });
        client.on("end", done);
        signal.addEventListener("abort", done, { once: true });
      });
      client.on("notification", (msg) => {
        if (msg.channel === EVENTS_CHANNEL) {
          onWake();
        }
      });
      try {
        await client.query(`LISTEN ${client.escapeIdentifier(EVENTS_CHANNEL)}`);
        attempt = 0;
        this.#client = client;
        onWake();
        await dropped;
      } catch (err) {
        failure = err as Error;
      }
      this.#client = undefined;
      // A listening connection never goes back to the pool: release(true) closes it.
      client.release(true);
      if (this.#abort.signal.aborted) {
        break;
      }
      const delay = backoffDelay(attempt++, { maxMs: this.#options.maxBackoffMs ?? 10_000 });
      logger.warn({ err: failure, retryInMs: delay }, "registry event LISTEN connection lost");
      await sleep(delay, this.#abort.signal);
    }
  }

  /** Stops listening and closes the connection. Idempotent. */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
  }
}
