import { randomUUID } from "node:crypto";

import type { GetMessage } from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { AmqpConnection } from "../../src/bus/connection.js";
import { BatchConsumer, type BatchHandler, type Delivery } from "../../src/bus/consumer.js";
import { ConfirmedPublisher } from "../../src/bus/publisher.js";
import { deadLetterQueueName, declareExchanges, topologyOptions } from "../../src/bus/topology.js";
import { createLogger } from "../../src/core/logger.js";
import { Metrics } from "../../src/core/metrics.js";
import { PermanentError, TransientError } from "../../src/core/errors.js";
import {
  cleanupAmqp,
  closeConnectionsNamed,
  isolatedAmqpConfig,
  openTestChannel,
  waitFor,
} from "../helpers/bus.js";

const logger = createLogger({ level: "silent" });
const config = isolatedAmqpConfig();
const queues: string[] = [];
const connections: AmqpConnection[] = [];

function connection(name = `bus-test-${randomUUID()}`): AmqpConnection {
  const c = new AmqpConnection({ url: config.url, name, logger, maxBackoffMs: 500 });
  c.start();
  connections.push(c);
  return c;
}

function queueName(): string {
  const q = `${config.queuePrefix}q_${randomUUID().slice(0, 8)}`;
  queues.push(q, deadLetterQueueName(q));
  return q;
}

function consumer(
  conn: AmqpConnection,
  queue: string,
  exchange: string,
  handler: BatchHandler,
  isHealthy = async () => true,
): BatchConsumer {
  const c = new BatchConsumer({
    connection: conn,
    queue: { name: queue, exchange },
    topology: topologyOptions(config),
    handler,
    deadLetters: new ConfirmedPublisher({
      connection: conn,
      exchange: config.deadLetterExchange,
      logger,
    }),
    isHealthy,
    logger,
    metrics: new Metrics({ defaultMetrics: false }),
    component: "test",
    prefetch: 200,
    batchSize: 50,
  });
  c.start();
  return c;
}

beforeAll(async () => {
  const { conn, ch } = await openTestChannel();
  await declareExchanges(ch, config);
  await conn.close();
});

afterAll(async () => {
  for (const c of connections) {
    await c.close();
  }
  await cleanupAmqp(config, queues);
});

describe("ConfirmedPublisher + BatchConsumer against RabbitMQ", () => {
  it("delivers published messages in batches and acks them", async () => {
    const conn = connection();
    const queue = queueName();
    const seen: string[] = [];
    const sizes: number[] = [];
    const c = consumer(conn, queue, config.ptsExchange, async (batch) => {
      sizes.push(batch.length);
      seen.push(...batch.map((d) => d.messageId ?? ""));
      return batch.map(() => ({ action: "ack" as const }));
    });
    await waitFor(() => c.isConsuming, 10_000, "consumer");
    const publisher = new ConfirmedPublisher({
      connection: conn,
      exchange: config.ptsExchange,
      logger,
    });
    const ids = Array.from({ length: 300 }, (_, i) => `m${i}`);
    await publisher.publish(
      ids.map((id) => ({ body: { id }, messageId: id, correlationId: randomUUID() })),
    );
    await waitFor(() => seen.length === 300, 10_000, "all deliveries");
    expect(seen).toEqual(ids);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    await c.stop();
    const { conn: check, ch } = await openTestChannel();
    const q = await ch.checkQueue(queue);
    expect(q.messageCount).toBe(0);
    await check.close();
  });

  it("rejects a publish nobody can receive instead of confirming it into the void", async () => {
    const conn = connection();
    const { conn: c2, ch } = await openTestChannel();
    const lonely = `${config.ltsExchange}_unbound`;
    await ch.assertExchange(lonely, "fanout", { durable: false, autoDelete: false });
    const publisher = new ConfirmedPublisher({ connection: conn, exchange: lonely, logger });
    await expect(publisher.publish([{ body: {}, messageId: "x" }])).rejects.toBeInstanceOf(
      TransientError,
    );
    await ch.deleteExchange(lonely);
    await c2.close();
  });

  it("does not ack an input until the output publish is confirmed", async () => {
    const conn = connection();
    const input = queueName();
    const relayOut = `${config.ltsExchange}_relay`;
    const { conn: c2, ch } = await openTestChannel();
    await ch.assertExchange(relayOut, "fanout", { durable: true });
    const out = new ConfirmedPublisher({
      connection: conn,
      exchange: relayOut,
      logger,
      timeoutMs: 2000,
    });
    let attempts = 0;
    const c = consumer(conn, input, config.ptsExchange, async (batch) => {
      attempts++;
      await out.publish(batch.map((d) => ({ body: d.body, messageId: d.messageId ?? "" })));
      return batch.map(() => ({ action: "ack" as const }));
    });
    await waitFor(() => c.isConsuming, 10_000, "consumer");
    const pub = new ConfirmedPublisher({ connection: conn, exchange: config.ptsExchange, logger });
    await pub.publish([{ body: { n: 1 }, messageId: "relay-1" }]);
    // Nothing is bound to the output exchange yet: the relay keeps failing and must not ack.
    await waitFor(() => attempts >= 2, 10_000, "retries");
    const before = await ch.checkQueue(input);
    expect(before.messageCount).toBe(0); // delivered, in hand, unacked
    const outQueue = queueName();
    await ch.assertQueue(outQueue, { durable: true });
    await ch.bindQueue(outQueue, relayOut, "");
    await waitFor(
      async () => (await ch.checkQueue(outQueue)).messageCount === 1,
      20_000,
      "relayed message",
    );
    await c.stop();
    // Now acked: a fresh look at the input queue finds nothing to redeliver.
    await waitFor(
      async () => (await ch.checkQueue(input)).messageCount === 0,
      5000,
      "input drained",
    );
    await ch.deleteExchange(relayOut);
    await c2.close();
  });

  it("dead-letters a poison message with its reason and keeps the rest flowing", async () => {
    const conn = connection();
    const queue = queueName();
    const ok: string[] = [];
    const c = consumer(conn, queue, config.ptsExchange, async (batch: readonly Delivery[]) => {
      if (batch.some((d) => d.body.toString() === '"poison"')) {
        throw new PermanentError("bad_content", "this one is poison");
      }
      ok.push(...batch.map((d) => d.messageId ?? ""));
      return batch.map(() => ({ action: "ack" as const }));
    });
    await waitFor(() => c.isConsuming, 10_000, "consumer");
    const pub = new ConfirmedPublisher({ connection: conn, exchange: config.ptsExchange, logger });
    await pub.publish([
      { body: "fine", messageId: "a" },
      { body: "poison", messageId: "p", correlationId: "cid-p" },
      { body: "fine", messageId: "b" },
    ]);
    await waitFor(() => ok.length === 2, 10_000, "good messages");
    expect(ok.sort()).toEqual(["a", "b"]);
    const { conn: c2, ch } = await openTestChannel();
    let dead: GetMessage | false = false;
    await waitFor(
      async () => {
        dead = await ch.get(deadLetterQueueName(queue), { noAck: true });
        return dead !== false;
      },
      10_000,
      "dead letter",
    );
    const msg = dead as unknown as GetMessage;
    expect(msg.content.toString()).toBe('"poison"');
    expect(msg.properties.headers?.["x-broker-reason"]).toBe("bad_content");
    expect(String(msg.properties.headers?.["x-broker-error"])).toContain("poison");
    expect(msg.properties.correlationId).toBe("cid-p");
    await c.stop();
    await c2.close();
  });

  it("resumes after the broker closes its connection, losing nothing", async () => {
    const name = `bus-test-close-${randomUUID()}`;
    const conn = connection(name);
    const queue = queueName();
    const seen = new Set<string>();
    let deliveries = 0;
    const c = consumer(conn, queue, config.ptsExchange, async (batch) => {
      deliveries += batch.length;
      await new Promise((r) => setTimeout(r, 5));
      for (const d of batch) {
        seen.add(d.messageId ?? "");
      }
      return batch.map(() => ({ action: "ack" as const }));
    });
    await waitFor(() => c.isConsuming, 10_000, "consumer");
    const publisherConn = connection();
    const pub = new ConfirmedPublisher({
      connection: publisherConn,
      exchange: config.ptsExchange,
      logger,
    });
    const total = 3000;
    const ids = Array.from({ length: total }, (_, i) => `close-${i}`);
    for (let i = 0; i < total; i += 500) {
      await pub.publish(ids.slice(i, i + 500).map((id) => ({ body: { id }, messageId: id })));
    }
    await waitFor(() => seen.size > 200, 10_000, "some progress");
    expect(await closeConnectionsNamed(name)).toBeGreaterThan(0);
    await waitFor(() => seen.size === total, 60_000, "every message after reconnect");
    expect(deliveries).toBeGreaterThanOrEqual(total);
    await c.stop();
  }, 90_000);

  it("retries a transient failure without losing or dead-lettering the batch", async () => {
    const conn = connection();
    const queue = queueName();
    let failures = 0;
    const done: string[] = [];
    const c = consumer(
      conn,
      queue,
      config.ptsExchange,
      async (batch) => {
        if (failures < 3) {
          failures++;
          throw new Error("database went away");
        }
        done.push(...batch.map((d) => d.messageId ?? ""));
        return batch.map(() => ({ action: "ack" as const }));
      },
      async () => false,
    );
    await waitFor(() => c.isConsuming, 10_000, "consumer");
    const pub = new ConfirmedPublisher({ connection: conn, exchange: config.ptsExchange, logger });
    await pub.publish([{ body: 1, messageId: "t1" }]);
    await waitFor(() => done.length === 1, 20_000, "eventual success");
    const { conn: c2, ch } = await openTestChannel();
    expect((await ch.checkQueue(deadLetterQueueName(queue))).messageCount).toBe(0);
    await c.stop();
    await c2.close();
  });
});
