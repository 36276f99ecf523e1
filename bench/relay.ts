/**
 * A relay built from the router's own bus parts and nothing else: consumes the physical
 * exchange's mapper queue in batches and republishes every message, confirmed, to the logical
 * exchange, acking after the confirms. It is the mapper without the database and the routing
 * decision, so `npm run bench` can show what the database and the logic cost on top of two
 * RabbitMQ hops. Started by bench/run.ts as its own process, configured by the same environment
 * variables as `broker run`.
 */
import { AmqpConnection } from "../src/bus/connection.js";
import { BatchConsumer } from "../src/bus/consumer.js";
import { ConfirmedPublisher } from "../src/bus/publisher.js";
import { QUEUE_NAMES, topologyOptions } from "../src/bus/topology.js";
import { loadConfig } from "../src/core/config.js";
import { createLogger } from "../src/core/logger.js";
import { Metrics } from "../src/core/metrics.js";

const config = loadConfig();
const logger = createLogger({ level: "warn" });
const amqp = new AmqpConnection({ url: config.amqp.url, name: "bench relay", logger });
amqp.start();
const lts = new ConfirmedPublisher({
  connection: amqp,
  exchange: config.amqp.ltsExchange,
  logger,
  mandatory: false,
});
const consumer = new BatchConsumer({
  connection: amqp,
  queue: { name: config.amqp.queuePrefix + QUEUE_NAMES.mapper, exchange: config.amqp.ptsExchange },
  topology: topologyOptions(config.amqp),
  deadLetters: new ConfirmedPublisher({
    connection: amqp,
    exchange: config.amqp.deadLetterExchange,
    logger,
  }),
  isHealthy: async () => amqp.isConnected,
  logger,
  metrics: new Metrics({ defaultMetrics: false }),
  component: "relay",
  prefetch: config.amqp.prefetch,
  batchSize: config.amqp.batchSize,
  concurrency: config.amqp.consumerConcurrency,
  handler: async (batch) => {
    await lts.publish(batch.map((d) => ({ body: d.body, messageId: d.messageId ?? "" })));
    return batch.map(() => ({ action: "ack" as const }));
  },
});
consumer.start();
process.stdout.write("relay ready\n");
process.on("SIGTERM", () => {
  void consumer
    .stop()
    .then(() => lts.close())
    .then(() => amqp.close())
    .finally(() => process.exit(0));
});
