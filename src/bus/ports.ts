import type { Logger } from "../core/logger.js";
import type { BatchHandler } from "./consumer.js";
import type { OutgoingMessage } from "./publisher.js";

/**
 * The messaging shapes domain code (mapper, writers) asks its composition root for, free of
 * amqplib and of the application layer: a queue to consume and a confirmed publisher.
 */

/** A consumer of one durable queue bound to a fanout exchange, handing batches to a handler. */
export interface QueueIntake {
  start(): void;
  /** Stops consuming; in-flight batches finish or go back to RabbitMQ. */
  stop(): Promise<void>;
  /** True while a channel is consuming. */
  readonly isConsuming: boolean;
}

export interface OpenQueueOptions {
  /** Metrics label and log component. */
  readonly component: string;
  /** Queue name without QUEUE_PREFIX (IoTa's name). */
  readonly queue: string;
  /** The fanout exchange the queue is bound to. */
  readonly exchange: string;
  readonly handler: BatchHandler;
  readonly logger: Logger;
}

/** A confirmed publisher to one exchange. */
export interface Publisher {
  /** Resolves once the broker confirmed every message; rejects with TransientError otherwise. */
  publish(messages: readonly OutgoingMessage[]): Promise<void>;
  close(): Promise<void>;
}

export interface OpenPublisherOptions {
  readonly exchange: string;
  readonly logger: Logger;
  /** Whether an unroutable message is an error. Default true. */
  readonly mandatory?: boolean;
}
