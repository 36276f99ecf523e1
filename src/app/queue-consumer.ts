import { BatchConsumer, type BatchHandler } from "../bus/consumer.js";
import type {
  OpenPublisherOptions,
  OpenQueueOptions,
  Publisher,
  QueueIntake,
} from "../bus/ports.js";
import { ConfirmedPublisher } from "../bus/publisher.js";
import { topologyOptions } from "../bus/topology.js";
import type { Logger } from "../core/logger.js";
import type { WriterDeps } from "../delivery/ports.js";
import type { MapperDeps } from "../mapper/mapper.js";
import type { Dependencies } from "../runtime/component.js";

export interface QueueConsumerOptions {
  /** Metrics label and log component. */
  component: string;
  /** Queue name without QUEUE_PREFIX (IoTa's name, e.g. `lm_physical_timeseries`). */
  queue: string;
  /** The fanout exchange the queue is bound to. */
  exchange: string;
  handler: BatchHandler;
  logger: Logger;
  /** Default PREFETCH. */
  prefetch?: number;
  /** Default BATCH_SIZE. */
  batchSize?: number;
}

/** A consuming component's queue, wired from the process's config: the one place that does it. */
export interface QueueConsumer {
  readonly consumer: BatchConsumer;
  start(): void;
  /** Stops consuming (finishing or requeueing in-flight batches), then closes its publisher. */
  stop(): Promise<void>;
}

export function createQueueConsumer(
  deps: Dependencies,
  options: QueueConsumerOptions,
): QueueConsumer {
  const { config } = deps;
  const deadLetters = new ConfirmedPublisher({
    connection: deps.amqp,
    exchange: config.amqp.deadLetterExchange,
    logger: options.logger,
  });
  const consumer = new BatchConsumer({
    connection: deps.amqp,
    queue: { name: config.amqp.queuePrefix + options.queue, exchange: options.exchange },
    topology: topologyOptions(config.amqp),
    handler: options.handler,
    deadLetters,
    isHealthy: deps.isHealthy,
    logger: options.logger,
    metrics: deps.metrics,
    component: options.component,
    prefetch: options.prefetch ?? config.amqp.prefetch,
    batchSize: options.batchSize ?? config.amqp.batchSize,
    concurrency: config.amqp.consumerConcurrency,
    holdMs: config.amqp.consumerHoldMs,
  });
  let stopped: Promise<void> | undefined;
  return {
    consumer,
    start: () => consumer.start(),
    stop() {
      stopped ??= consumer.stop().then(() => deadLetters.close());
      return stopped;
    },
  };
}

/** `deps.openQueue`: a queue consumer wired from the process's config. */
function openQueue(deps: Dependencies, options: OpenQueueOptions): QueueIntake {
  const queue = createQueueConsumer(deps, options);
  return {
    start: () => queue.start(),
    stop: () => queue.stop(),
    get isConsuming() {
      return queue.consumer.isConsuming;
    },
  };
}

/** `deps.openPublisher`: a confirmed publisher on the process's AMQP connection. */
function openPublisher(deps: Dependencies, options: OpenPublisherOptions): Publisher {
  return new ConfirmedPublisher({ connection: deps.amqp, ...options });
}

/** The messaging and database adapters the domain components (mapper, writers) declare. */
export function domainDeps(deps: Dependencies): WriterDeps & MapperDeps {
  return {
    config: deps.config,
    logger: deps.logger,
    metrics: deps.metrics,
    db: deps.database.db,
    isHealthy: deps.isHealthy,
    openQueue: (options) => openQueue(deps, options),
    openPublisher: (options) => openPublisher(deps, options),
  };
}
