import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { domainDeps } from "../../src/app/queue-consumer.js";
import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName } from "../../src/bus/topology.js";
import type { Config } from "../../src/core/config.js";
import type { WriterComponent } from "../../src/delivery/ports.js";
import {
  createWriter,
  type DeliveryResult,
  type WriterMessage,
} from "../../src/delivery/writer.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

/**
 * A PostgreSQL outage far longer than a consumer may hold messages. RabbitMQ 3.10 sets its
 * consumer acknowledgement timeout per node only (30 min), so the test cannot shorten it; it shows
 * instead that the intake holds nothing while PostgreSQL is away (no consumer, every message
 * ready on the queue, none unacknowledged), which leaves the timeout nothing to act on, and that
 * an outage spanning many hold periods costs each message at most one delivery: with a delivery
 * limit of 2, nothing is dead-lettered and everything arrives once.
 */

const WRITER = "outage";
const QUEUE = "outage_logical_msg_queue";

let db: TestDatabase;
let amqpConfig: Config["amqp"];
let proxy: TcpProxy;
let system: RunningSystem;
let probes = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  proxy = new TcpProxy({ host: db.pg.host, port: db.pg.port });
  await proxy.up();
  amqpConfig = isolatedAmqpConfig({ DELIVERY_LIMIT: "2" });
  system = await startTestSystem(
    ["mapper"],
    testConfig({ ...db, pg: { ...db.pg, host: "127.0.0.1", port: proxy.port } }, amqpConfig, {
      DELIVERY_LIMIT: "2",
      CONSUMER_HOLD_MS: "300",
      WRITER_RETRY_INITIAL_MS: "20",
      WRITER_RETRY_MAX_MS: "100",
      WRITER_POLL_MS: "50",
    }),
  );
});

afterAll(async () => {
  await system?.stop();
  await proxy?.down();
  await cleanupAmqp(amqpConfig);
  await db?.drop();
});

describe("writer intake during a long PostgreSQL outage", () => {
  const accepted: string[] = [];
  let writer: WriterComponent;

  beforeAll(async () => {
    const deps = domainDeps({
      ...system.deps,
      isHealthy: async () => {
        probes++;
        return system.deps.isHealthy();
      },
    });
    writer = createWriter(deps, {
      name: WRITER,
      queue: QUEUE,
      batchSize: 10,
      deliver: async (messages: readonly WriterMessage[]): Promise<DeliveryResult[]> =>
        messages.map((m) => {
          accepted.push(m.key);
          return { status: "delivered" };
        }),
    });
    await writer.start();
    await waitFor(async () => writer.isReady(), 15_000, "writer consuming");
  });
  afterAll(() => writer?.stop());

  it("hands the messages back, stops consuming until PostgreSQL answers, and loses or dead-letters nothing", async () => {
    const queue = amqpConfig.queuePrefix + QUEUE;
    const { conn, ch } = await openTestChannel();
    try {
      await proxy.down();
      const confirm = await conn.createConfirmChannel();
      for (let i = 0; i < 30; i++) {
        const body = {
          broker_correlation_id: randomUUID(),
          p_uid: 1,
          l_uid: 1,
          timestamp: new Date().toISOString(),
          timeseries: [{ name: "v", value: i }],
        };
        confirm.publish(amqpConfig.ltsExchange, "", Buffer.from(JSON.stringify(body)), {
          persistent: true,
        });
      }
      await confirm.waitForConfirms();
      await confirm.close();

      // Released: no consumer, all 30 ready on the queue, none held unacknowledged.
      const idle = async (): Promise<boolean> => {
        const q = await ch.checkQueue(queue);
        return q.consumerCount === 0 && q.messageCount === 30;
      };
      await waitFor(idle, 20_000, "intake handed the messages back and stopped consuming");
      // Many hold periods pass (each a recovery probe); the intake stays away from the queue.
      const seen = probes;
      await waitFor(() => probes >= seen + 4, 60_000, "recovery probes");
      expect(await idle()).toBe(true);

      await proxy.up();
      await waitFor(() => accepted.length >= 30, 60_000, "all delivered");
      const q = await ch.checkQueue(queue);
      expect(q.messageCount).toBe(0);
      expect(q.consumerCount).toBe(1);
      expect((await ch.checkQueue(deadLetterQueueName(queue))).messageCount).toBe(0);
      expect(new Set(accepted).size).toBe(30);
      expect(accepted).toHaveLength(30);
    } finally {
      await conn.close();
    }
  });
});
