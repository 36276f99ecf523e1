import type { Config } from "../core/config.js";
import type { AmqpChannel } from "./connection.js";

/** The queue name each consuming component owns (IoTa's names, behind QUEUE_PREFIX). */
export const QUEUE_NAMES = {
  mapper: "lm_physical_timeseries",
  frred: "databolt_logical_msg_queue",
  ubidots: "ubidots_logical_msg_queue",
  influxdb: "influxdb_logical_msg_queue",
} as const;

export interface QueueSpec {
  /** Full queue name (prefix included). */
  name: string;
  /** Fanout exchange the queue receives from. */
  exchange: string;
}

export interface TopologyOptions {
  queueType: "quorum" | "classic";
  deliveryLimit: number;
  deadLetterExchange: string;
}

export function topologyOptions(amqp: Config["amqp"]): TopologyOptions {
  return {
    queueType: amqp.queueType,
    deliveryLimit: amqp.deliveryLimit,
    deadLetterExchange: amqp.deadLetterExchange,
  };
}

/** Name of the queue that holds `queue`'s dead letters. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}.dead`;
}

/** Declares the durable exchanges of design §4 (idempotent). */
export async function declareExchanges(channel: AmqpChannel, amqp: Config["amqp"]): Promise<void> {
  await channel.assertExchange(amqp.ptsExchange, "fanout", { durable: true });
  await channel.assertExchange(amqp.ltsExchange, "fanout", { durable: true });
  await channel.assertExchange(amqp.eventsExchange, "topic", { durable: true });
  await channel.assertExchange(amqp.deadLetterExchange, "direct", { durable: true });
}

/**
 * Declares a consumer's queue, bound to its fanout exchange, with its dead-letter queue. Messages
 * the consumer rejects, and messages delivered more than `deliveryLimit` times (a crash loop), go
 * to `<queue>.dead` through the dead-letter exchange with routing key `<queue>`.
 */
export async function declareConsumerQueue(
  channel: AmqpChannel,
  spec: QueueSpec,
  options: TopologyOptions,
): Promise<void> {
  const quorum = options.queueType === "quorum";
  await channel.assertExchange(options.deadLetterExchange, "direct", { durable: true });
  const dead = deadLetterQueueName(spec.name);
  await channel.assertQueue(dead, {
    durable: true,
    arguments: { "x-queue-type": options.queueType },
  });
  await channel.bindQueue(dead, options.deadLetterExchange, spec.name);
  await channel.assertQueue(spec.name, {
    durable: true,
    arguments: {
      "x-queue-type": options.queueType,
      "x-dead-letter-exchange": options.deadLetterExchange,
      "x-dead-letter-routing-key": spec.name,
      ...(quorum ? { "x-delivery-limit": options.deliveryLimit } : {}),
    },
  });
  await channel.assertExchange(spec.exchange, "fanout", { durable: true });
  await channel.bindQueue(spec.name, spec.exchange, "");
}

/**
 * A dead-letter queue for a component that has no queue of its own (an MQTT source, a poller):
 * `<queue>` bound to the dead-letter exchange with routing key `<queue>`.
 */
export async function declareStandaloneDeadLetterQueue(
  channel: AmqpChannel,
  queue: string,
  options: TopologyOptions,
): Promise<void> {
  await channel.assertExchange(options.deadLetterExchange, "direct", { durable: true });
  await channel.assertQueue(queue, {
    durable: true,
    arguments: { "x-queue-type": options.queueType },
  });
  await channel.bindQueue(queue, options.deadLetterExchange, queue);
}
