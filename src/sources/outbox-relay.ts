import type { AmqpConnection } from "../bus/connection.js";
import { ConfirmedPublisher } from "../bus/publisher.js";
import { TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { RelayLoop, type RoundOutcome } from "../core/relay-loop.js";
import { RAW_CORRELATION_HEADER } from "../core/message.js";
import type { Metrics } from "../core/metrics.js";
import type { DatabaseHandle } from "../db/database.js";
import {
  deleteOutbox,
  oldestOutbox,
  tryLockOutbox,
  type OutboxRow,
} from "../db/repositories/ingest-outbox.js";

export interface OutboxRelayOptions {
  readonly database: DatabaseHandle;
  readonly amqp: AmqpConnection;
  /** The physical exchange. */
  readonly exchange: string;
  /** The source whose outbox rows this relay publishes. */
  readonly sourceName: string;
  /** AMQP routing key of every message (ignored by the fanout exchange). */
  readonly routingKey: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Rows published per round (one transaction, one confirmed publish). Default 500. */
  readonly batchSize?: number;
  /**
   * Longest wait between looks at the table while nothing says there is work (rows another
   * process left), and the longest backoff while RabbitMQ is away, in ms. Default 5 000.
   */
  readonly pollMs?: number;
}

/**
 * Publishes a source's outbox (the normalised messages its front-end stored instead of
 * publishing, while RabbitMQ could not take them) in id order, each persistent and confirmed,
 * and deletes them in the transaction that holds the source's relay lock: with several processes
 * of one source, one publishes at a time. A crash between RabbitMQ's confirm and the commit
 * publishes those rows again; they carry their msg_key as message_id, and the mapper stores a
 * msg_key once, so the repeat changes nothing downstream.
 *
 * While rows wait ({@link pending}), the front-end stores new messages here too instead of
 * publishing them directly, so a device's messages reach the exchange in the order they were
 * accepted.
 */
export class OutboxRelay {
  readonly #o: OutboxRelayOptions;
  readonly #publisher: ConfirmedPublisher;
  readonly #loop: RelayLoop;
  readonly #batchSize: number;
  /** True while rows may wait: set at start (a previous process may have left some). */
  #pending = true;
  /** Outbox writes in flight, and how many began: pending is cleared only when neither moved. */
  #writing = 0;
  #writes = 0;

  constructor(options: OutboxRelayOptions) {
    this.#o = options;
    this.#batchSize = options.batchSize ?? 500;
    const pollMs = options.pollMs ?? 5_000;
    this.#publisher = new ConfirmedPublisher({
      connection: options.amqp,
      exchange: options.exchange,
      logger: options.logger,
      appId: "broker-outbox",
      // The round holds a transaction open: fail fast when the connection is down.
      connectWaitMs: 0,
      timeoutMs: 10_000,
    });
    this.#loop = new RelayLoop({
      round: () => this.#round(),
      // Rows known to wait (another process holds the lock): look again sooner.
      idleMs: () => (this.#pending ? Math.min(pollMs, 1_000) : pollMs),
      maxBackoffMs: pollMs,
      onFailure: (err, retryInMs) => {
        options.logger.warn({ err, retryInMs }, "cannot publish the outbox now");
        options.metrics.retried.inc({ component: `${options.sourceName}-outbox` });
      },
    });
    options.amqp.on("connected", () => this.#loop.notify(true));
  }

  /** True while outbox rows may be waiting: new messages must queue behind them. */
  get pending(): boolean {
    return this.#pending;
  }

  start(): void {
    this.#loop.start();
  }

  /**
   * Runs `write` (a transaction that stores outbox rows) and then wakes the relay. While it runs
   * the relay does not conclude that the outbox is empty.
   */
  async record<T>(write: () => Promise<T>): Promise<T> {
    this.#writing++;
    this.#writes++;
    this.#pending = true;
    try {
      return await write();
    } finally {
      this.#writing--;
      this.#loop.notify();
    }
  }

  async #round(): Promise<RoundOutcome> {
    const { amqp, database, sourceName, metrics } = this.#o;
    if (!amqp.isConnected) {
      if (!this.#pending || amqp.isOpening) {
        // Nothing waits, or the connection is on its way and its "connected" event wakes us.
        return "idle";
      }
      throw new TransientError("RabbitMQ connection is not open");
    }
    const writesBefore = this.#writes;
    return database.db.transaction().execute(async (trx): Promise<RoundOutcome> => {
      if (!(await tryLockOutbox(trx, sourceName))) {
        return "standby";
      }
      const rows = await oldestOutbox(trx, sourceName, this.#batchSize);
      if (rows.length === 0) {
        // Empty, and no write began or is still committing since the read: direct publishing
        // can resume without overtaking anything.
        if (this.#writing === 0 && this.#writes === writesBefore) {
          this.#pending = false;
        }
        return "idle";
      }
      await this.#publisher.publish(rows.map((r) => this.#message(r)));
      await deleteOutbox(
        trx,
        rows.map((r) => r.id),
      );
      metrics.messagesOut.inc({ component: `${sourceName}-outbox` }, rows.length);
      this.#o.logger.info(
        { count: rows.length, first: rows[0]!.id, last: rows.at(-1)!.id },
        "outbox messages published",
      );
      // Look again at once: an empty look is what lets direct publishing resume.
      return "more";
    });
  }

  #message(r: OutboxRow) {
    return {
      body: Buffer.from(r.body, "utf8"),
      messageId: r.msgKey,
      correlationId: r.correlationId,
      routingKey: this.#o.routingKey,
      headers: { [RAW_CORRELATION_HEADER]: r.rawCorrelationId },
    };
  }

  /**
   * Stops: lets a round in flight finish (briefly), then closes the publisher, which fails a
   * round still waiting for confirms; its transaction rolls back and the rows stay for the next
   * process. Idempotent.
   */
  async stop(): Promise<void> {
    await this.#loop.halt();
    await this.#publisher.close();
    await this.#loop.finished();
  }
}
