import { z } from "zod";

import type { Component, Dependencies } from "../runtime/component.js";
import type { AmqpConnection } from "../bus/connection.js";
import { ConfirmedPublisher, type OutgoingMessage } from "../bus/publisher.js";
import { parseSection } from "../core/config.js";
import { TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { RelayLoop, type RoundOutcome } from "../core/relay-loop.js";
import type { Metrics } from "../core/metrics.js";
import type { DatabaseHandle } from "../db/database.js";
import { markPublished, tryLockRelay, unpublishedEvents } from "../db/repositories/events.js";
import { routingKey, type RegistryEvent } from "./event.js";
import { EventListener } from "./listener.js";

const COMPONENT = "event-relay";

const settingsSchema = z.object({
  EVENT_RELAY_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(250),
  EVENT_RELAY_POLL_MS: z.coerce.number().int().min(50).max(600_000).default(5_000),
});

export interface EventRelayOptions {
  database: DatabaseHandle;
  amqp: AmqpConnection;
  /** The topic exchange events go to (config.amqp.eventsExchange). */
  exchange: string;
  logger: Logger;
  metrics: Metrics;
  /** Events published per round (one transaction, one confirmed publish). Default 250. */
  batchSize?: number;
  /**
   * Longest wait between looks at the table when no notification arrives, in ms; also the
   * longest wait between retries while RabbitMQ or PostgreSQL is away. Default 5 000.
   */
  pollMs?: number;
}

/** The message for one event: body = the event, message_id = its id, key = entity.operation. */
export function eventMessage(event: RegistryEvent): OutgoingMessage {
  const { id, occurred_at, entity, operation, entity_id, actor, data } = event;
  return {
    body: { id, occurred_at, entity, operation, entity_id, actor, data },
    messageId: String(id),
    routingKey: routingKey(event),
  };
}

/**
 * Publishes the registry event log to RabbitMQ: the oldest unpublished events, in id order, each
 * persistent and confirmed, then marks them published — all inside one transaction holding the
 * relay lock, so with several relays running exactly one publishes at a time and the others
 * wait as standbys. A crash between the confirm and the commit publishes those events again
 * (at least once); consumers drop ids they have seen. Wakes on NOTIFY and polls as a fallback.
 */
export class EventRelay {
  readonly #options: EventRelayOptions;
  readonly #logger: Logger;
  readonly #publisher: ConfirmedPublisher;
  readonly #listener: EventListener;
  readonly #loop: RelayLoop;
  readonly #batchSize: number;
  #exchangeDeclared = false;

  constructor(options: EventRelayOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#batchSize = options.batchSize ?? 250;
    const pollMs = options.pollMs ?? 5_000;
    this.#publisher = new ConfirmedPublisher({
      connection: options.amqp,
      exchange: options.exchange,
      logger: options.logger,
      appId: `broker-${COMPONENT}`,
      // An event nobody subscribes to is still in the table; it must not hold up the others.
      mandatory: false,
      // The round holds a transaction open: fail fast when the connection is down.
      connectWaitMs: 0,
    });
    this.#loop = new RelayLoop({
      round: () => this.#round(),
      idleMs: () => pollMs,
      maxBackoffMs: pollMs,
      onFailure: (err, retryInMs) => {
        this.#exchangeDeclared = false;
        this.#logger.warn({ err, retryInMs }, "cannot publish registry events now");
        this.#options.metrics.retried.inc({ component: COMPONENT });
      },
    });
    this.#listener = new EventListener({
      pool: options.database.pool,
      logger: options.logger,
      onWake: () => this.#loop.notify(),
    });
    options.amqp.on("connected", () => this.#loop.notify(true));
  }

  get isRunning(): boolean {
    return this.#loop.isRunning;
  }

  #started = false;

  start(): void {
    if (this.#started) {
      return;
    }
    this.#started = true;
    this.#listener.start();
    this.#loop.start();
  }

  async #round(): Promise<RoundOutcome> {
    const { amqp, database, metrics } = this.#options;
    if (!amqp.isConnected) {
      if (amqp.isOpening) {
        // Start-up: the connection is on its way and its "connected" event wakes this loop.
        return "idle";
      }
      throw new TransientError("RabbitMQ connection is not open");
    }
    await this.#declareExchange();
    return database.db.transaction().execute(async (trx) => {
      if (!(await tryLockRelay(trx))) {
        return "standby";
      }
      const events = await unpublishedEvents(trx, this.#batchSize);
      if (events.length === 0) {
        return "idle";
      }
      await this.#publisher.publish(events.map(eventMessage));
      await markPublished(
        trx,
        events.map((e) => e.id),
      );
      metrics.messagesOut.inc({ component: COMPONENT }, events.length);
      this.#logger.debug(
        { first: events[0]?.id, last: events.at(-1)?.id, count: events.length },
        "registry events published",
      );
      return events.length === this.#batchSize ? "more" : "idle";
    });
  }

  /** The exchange is declared by the composition root too; a relay run alone must not depend on it. */
  async #declareExchange(): Promise<void> {
    if (this.#exchangeDeclared) {
      return;
    }
    const channel = await this.#options.amqp.createChannel();
    try {
      await channel.assertExchange(this.#options.exchange, "topic", { durable: true });
      this.#exchangeDeclared = true;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /**
   * Stops: lets a round in flight finish (briefly), then closes the publisher, which fails a
   * round still waiting for confirms; its transaction rolls back and those events stay
   * unpublished for the next relay. Idempotent.
   */
  async stop(): Promise<void> {
    await this.#loop.halt();
    await this.#publisher.close();
    await this.#loop.finished();
    await this.#listener.close();
  }
}

/** The `event-relay` component (`broker run event-relay`). */
export function createEventRelay(deps: Dependencies): Component {
  const settings = parseSection(deps.config, settingsSchema, "event relay");
  const relay = new EventRelay({
    database: deps.database,
    amqp: deps.amqp,
    exchange: deps.config.amqp.eventsExchange,
    logger: deps.logger.child({ component: COMPONENT }),
    metrics: deps.metrics,
    batchSize: settings.EVENT_RELAY_BATCH_SIZE,
    pollMs: settings.EVENT_RELAY_POLL_MS,
  });
  let stopped: Promise<void> | undefined;
  return {
    name: COMPONENT,
    async start() {
      relay.start();
    },
    stop() {
      stopped ??= relay.stop();
      return stopped;
    },
    isReady: () => relay.isRunning,
  };
}
