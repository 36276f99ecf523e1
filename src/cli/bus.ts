import { hostname } from "node:os";

import { AmqpConnection } from "../bus/connection.js";
import { ConfirmedPublisher } from "../bus/publisher.js";
import { declareExchanges } from "../bus/topology.js";
import { loadConfig } from "../core/config.js";
import { createLogger } from "../core/logger.js";

/** How long a command waits for RabbitMQ before it gives up with one line, in ms. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Runs `fn` with a confirmed publisher to the logical exchange on a RabbitMQ connection of its
 * own, closed afterwards (commands that release held messages). The publisher is mandatory: with
 * no writer queue bound, a release fails and its messages stay releasable. Routine connection
 * logs are left out of the command's stderr unless LOG_LEVEL asks for debug.
 */
export async function withLogicalPublisher<T>(
  fn: (publisher: ConfirmedPublisher) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  const verbose = config.logLevel === "debug" || config.logLevel === "trace";
  const logger = createLogger({
    level: verbose ? config.logLevel : "error",
    destination: process.stderr,
  });
  const connection = new AmqpConnection({
    url: config.amqp.url,
    name: `broker cli ${hostname()}:${process.pid}`,
    logger,
  });
  connection.start();
  const publisher = new ConfirmedPublisher({
    connection,
    exchange: config.amqp.ltsExchange,
    logger,
  });
  try {
    await connection.waitUntilConnected(CONNECT_TIMEOUT_MS);
    const channel = await connection.createChannel();
    try {
      await declareExchanges(channel, config.amqp);
    } finally {
      await channel.close().catch(() => undefined);
    }
    return await fn(publisher);
  } finally {
    await publisher.close();
    await connection.close();
  }
}
