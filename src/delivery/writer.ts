import type { Component, Dependencies } from "../app/component.js";
import { createQueueConsumer } from "../app/queue-consumer.js";
import type { Delivery, Outcome } from "../bus/consumer.js";
import { PermanentError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { decodeMessage, messageKey, type LogicalMessage } from "../core/message.js";

/** One valid logical message handed to a destination. */
export interface WriterMessage {
  /** The message as received (validated; `l_uid` present; unknown keys kept). */
  readonly message: LogicalMessage;
  /** Its idempotency key, {@link messageKey}: the same for a redelivery or a replay. */
  readonly key: string;
}

/**
 * Delivers a batch to the destination and returns one outcome per message, in order.
 *
 * Throw {@link TransientError} when the destination is unavailable: the whole batch stays
 * unacknowledged and is retried with capped backoff. Throw {@link PermanentError} only for a
 * failure caused by content; the batch is then retried one message at a time so that only the
 * bad ones are dead-lettered. For a known-bad message, prefer returning a dead-letter outcome.
 * Deliveries must be idempotent by `key`: a batch may be handed over again after a retry, a
 * redelivery or a replay.
 */
export type DeliverFunction = (messages: readonly WriterMessage[]) => Promise<Outcome[]>;

export interface WriterOptions {
  /** Component name: used for `broker run`, logs (`component`) and metrics labels. */
  name: string;
  /**
   * Queue name without `QUEUE_PREFIX` (e.g. `QUEUE_NAMES.frred`). The queue is durable, bound to
   * the logical timeseries exchange, and dead-letters to `<queue>.dead`.
   */
  queue: string;
  /** The destination-specific part. */
  deliver: DeliverFunction;
  /** Logger for the component. Default `deps.logger.child({ component: name })`. */
  logger?: Logger;
  /**
   * Destination readiness on top of "the consumer is consuming" (must be cheap and synchronous).
   * Default: always ready.
   */
  isReady?: () => boolean;
  /** Runs once in `start()` before consuming begins. Default: nothing. */
  onStart?: () => Promise<void>;
  /** Runs once in `stop()` after the consumer stopped and in-flight work is settled. Default: nothing. */
  onStop?: () => Promise<void>;
  /** Unacknowledged deliveries RabbitMQ may send ahead. Default `config.amqp.prefetch` (PREFETCH). */
  prefetch?: number;
  /** Largest batch handed to `deliver`. Default `config.amqp.batchSize` (BATCH_SIZE). */
  batchSize?: number;
}

type Checked =
  | { readonly ok: true; readonly item: WriterMessage }
  | { readonly ok: false; readonly outcome: Outcome };

/**
 * The gate every writer applies: the body must be a valid normalised message (else dead-letter
 * with the validation reason) and must carry `l_uid` (else dead-letter `missing_l_uid`: only the
 * logical mapper publishes here, so a message without one is a producer bug).
 */
export function checkDelivery(delivery: Delivery): Checked {
  let decoded;
  try {
    decoded = decodeMessage(delivery.body);
  } catch (err) {
    if (err instanceof PermanentError) {
      return {
        ok: false,
        outcome: { action: "dead-letter", reason: err.reason, error: err.message },
      };
    }
    throw err;
  }
  if (decoded.l_uid === undefined) {
    return {
      ok: false,
      outcome: {
        action: "dead-letter",
        reason: "missing_l_uid",
        error: "a logical message must carry l_uid",
        correlationId: decoded.broker_correlation_id,
      },
    };
  }
  const message = decoded as LogicalMessage;
  return { ok: true, item: { message, key: messageKey(message) } };
}

/**
 * Builds a delivery component: a {@link BatchConsumer} on `QUEUE_PREFIX + queue` bound to the
 * logical timeseries exchange, a confirmed dead-letter publisher, and the validation gate of
 * {@link checkDelivery}. Valid messages go to `deliver` in batches; everything else is
 * dead-lettered with its reason. Destination-neutral: a new destination supplies only
 * `deliver` (and optionally readiness and start/stop hooks).
 */
export function createWriter(deps: Dependencies, options: WriterOptions): Component {
  const { config } = deps;
  const logger = options.logger ?? deps.logger.child({ component: options.name });
  async function handle(batch: readonly Delivery[]): Promise<Outcome[]> {
    const checked = batch.map(checkDelivery);
    const valid = checked.flatMap((c) => (c.ok ? [c.item] : []));
    const delivered = valid.length > 0 ? await options.deliver(valid) : [];
    if (delivered.length !== valid.length) {
      throw new Error(
        `${options.name}: deliver returned ${delivered.length} outcomes for ${valid.length} messages`,
      );
    }
    let next = 0;
    return checked.map((c) => (c.ok ? delivered[next++]! : c.outcome));
  }

  const queue = createQueueConsumer(deps, {
    component: options.name,
    queue: options.queue,
    exchange: config.amqp.ltsExchange,
    handler: handle,
    logger,
    prefetch: options.prefetch,
    batchSize: options.batchSize,
  });

  let started: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;
  return {
    name: options.name,
    start() {
      started ??= (async () => {
        await options.onStart?.();
        queue.start();
      })();
      return started;
    },
    stop() {
      stopped ??= (async () => {
        await started?.catch(() => undefined);
        await queue.stop();
        await options.onStop?.();
      })();
      return stopped;
    },
    isReady: () => queue.consumer.isConsuming && (options.isReady?.() ?? true),
  };
}
