import { z } from "zod";

import type { Component, Dependencies } from "../runtime/component.js";
import type { AmqpConnection } from "../bus/connection.js";
import { ConfirmedPublisher, type OutgoingMessage } from "../bus/publisher.js";
import { parseSection } from "../core/config.js";
import { backoffDelay, sleep } from "../core/backoff.js";
import { TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
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

type RoundOutcome = "idle" | "more" | "standby";

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
  readonly #abort = new AbortController();
  readonly #batchSize: number;
  readonly #pollMs: number;
  #loop: Promise<void> | undefined;
  /** Set by a notification (or reconnection) so the next wait ends at once. */
  #woken = false;
  #wake: (() => void) | undefined;
  /** True while waiting after a failure: only RabbitMQ coming back cuts that wait short. */
  #backingOff = false;
  #exchangeDeclared = false;

  constructor(options: EventRelayOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#batchSize = options.batchSize ?? 250;
    this.#pollMs = options.pollMs ?? 5_000;
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
    this.#listener = new EventListener({
      pool: options.database.pool,
      logger: options.logger,
      onWake: () => this.#notify(),
    });
    options.amqp.on("connected", () => this.#notify(true));
  }

  get isRunning(): boolean {
    return this.#loop !== undefined && !this.#abort.signal.aborted;
  }

  start(): void {
    if (this.#loop) {
      return;
    }
    this.#listener.start();
    this.#loop = this.#run();
  }

  /** `urgent` also ends a backoff wait (RabbitMQ is back); a notification only ends an idle one. */
  #notify(urgent = false): void {
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
        outcome = await this.#round();
        failures = 0;
      } catch (err) {
        if (this.#abort.signal.aborted) {
          break;
        }
        this.#exchangeDeclared = false;
        const delay = backoffDelay(failures++, { initialMs: 200, maxMs: this.#pollMs });
        this.#logger.warn({ err, retryInMs: delay }, "cannot publish registry events now");
        this.#options.metrics.retried.inc({ component: COMPONENT });
        this.#backingOff = true;
        await this.#idle(delay);
        this.#backingOff = false;
        continue;
      }
      if (outcome !== "more") {
        await this.#idle(this.#pollMs);
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

  async #round(): Promise<RoundOutcome> {
    this.#woken = false;
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
    this.#abort.abort();
    this.#wake?.();
    const loop = this.#loop ?? Promise.resolve();
    const grace = new AbortController();
    await Promise.race([loop, sleep(2_000, grace.signal)]);
    grace.abort();
    await this.#publisher.close();
    await loop;
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
