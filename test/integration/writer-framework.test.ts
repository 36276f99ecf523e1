import { randomUUID } from "node:crypto";

import amqplib from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { domainDeps } from "../../src/app/queue-consumer.js";
import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName } from "../../src/bus/topology.js";
import type { Config } from "../../src/core/config.js";
import { TransientError } from "../../src/core/errors.js";
import type { WriterComponent } from "../../src/delivery/ports.js";
import {
  createWriter,
  DestinationRefusedError,
  type DeliveryResult,
  type WriterMessage,
} from "../../src/delivery/writer.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

/**
 * The writer framework with a destination written in the test: what it does when the
 * destination is down for longer than the queue's delivery limit allows, refuses the
 * credentials, or rejects one message; and that a message delivered once is not delivered again.
 */

const WRITER = "probe";
const QUEUE = "probe_logical_msg_queue";

let db: TestDatabase;
let conn: amqplib.ChannelModel;
let ch: amqplib.ConfirmChannel;
let amqpConfig: Config["amqp"];
let system: RunningSystem;

beforeAll(async () => {
  db = await createTestDatabase();
  conn = await amqplib.connect(isolatedAmqpConfig().url);
  ch = await conn.createConfirmChannel();
  amqpConfig = isolatedAmqpConfig({ DELIVERY_LIMIT: "2" });
  system = await startTestSystem(
    ["mapper"],
    testConfig(db, amqpConfig, {
      DELIVERY_LIMIT: "2",
      WRITER_RETRY_INITIAL_MS: "20",
      WRITER_RETRY_MAX_MS: "60",
      WRITER_SUSPEND_MS: "300",
      WRITER_POLL_MS: "50",
    }),
  );
});

afterAll(async () => {
  await system?.stop();
  await cleanupAmqp(amqpConfig);
  await conn?.close();
  await db?.drop();
});

/** A destination the test switches between behaviours; it records every key it accepted. */
class Destination {
  mode: "up" | "down" | "refuse" = "up";
  readonly accepted: string[] = [];
  calls = 0;
  reject = new Set<string>();

  deliver = async (messages: readonly WriterMessage[]): Promise<DeliveryResult[]> => {
    this.calls++;
    if (this.mode === "down") {
      throw new TransientError("destination down");
    }
    if (this.mode === "refuse") {
      throw new DestinationRefusedError("401 invalid token");
    }
    return messages.map((m) => {
      if (this.reject.has(m.message.broker_correlation_id)) {
        return { status: "dead-letter", reason: "bad_payload", error: "the destination said no" };
      }
      this.accepted.push(m.key);
      return { status: "delivered" };
    });
  };
}

function logical(extra: Record<string, unknown> = {}) {
  return {
    broker_correlation_id: randomUUID(),
    p_uid: 1,
    l_uid: 1,
    timestamp: new Date().toISOString(),
    timeseries: [{ name: "v", value: Math.random() }],
    ...extra,
  };
}

async function publish(...bodies: unknown[]): Promise<void> {
  for (const body of bodies) {
    ch.publish(amqpConfig.ltsExchange, "logical_timeseries", Buffer.from(JSON.stringify(body)), {
      persistent: true,
    });
  }
  await ch.waitForConfirms();
}

async function metric(name: string, component = WRITER): Promise<number> {
  const m = system.deps.metrics.registry.getSingleMetric(name);
  const values = m ? (await m.get()).values : [];
  return values
    .filter((v) => v.labels.component === component)
    .reduce((sum, v) => sum + v.value, 0);
}

async function pending(): Promise<{ attempts: number }[]> {
  const { rows } = await db.handle.pool.query<{ attempts: number }>(
    "select attempts from delivery_queue where writer = $1 and delivered_at is null",
    [WRITER],
  );
  return rows;
}

async function queueDepth(name: string): Promise<number> {
  const probe = await conn.createChannel();
  try {
    return (await probe.checkQueue(name)).messageCount;
  } finally {
    await probe.close().catch(() => undefined);
  }
}

async function drainDeadLetters(): Promise<amqplib.GetMessage[]> {
  const out: amqplib.GetMessage[] = [];
  for (;;) {
    const m = await ch.get(deadLetterQueueName(amqpConfig.queuePrefix + QUEUE), { noAck: true });
    if (m === false) {
      return out;
    }
    out.push(m);
  }
}

describe("writer framework", () => {
  const destination = new Destination();
  let writer: WriterComponent;

  beforeAll(async () => {
    writer = createWriter(domainDeps(system.deps), {
      name: WRITER,
      queue: QUEUE,
      deliver: destination.deliver,
      batchSize: 10,
    });
    await writer.start();
    await waitFor(async () => writer.isReady(), 15_000, "writer consuming");
  });
  afterAll(() => writer?.stop());

  it("keeps retrying past the delivery limit while the destination is down, loses nothing, and delivers once it is back", async () => {
    destination.mode = "down";
    const messages = Array.from({ length: 25 }, () => logical());
    await publish(...messages);
    // Every message retried more often than the queue's delivery limit (2) would allow.
    await waitFor(
      async () => {
        const rows = await pending();
        return rows.length === 25 && rows.every((r) => r.attempts > 4);
      },
      20_000,
      "retries past the delivery limit",
    );
    // Taken off the RabbitMQ queue (acknowledged), so no consumer timeout and no delivery count.
    expect(await queueDepth(amqpConfig.queuePrefix + QUEUE)).toBe(0);
    expect(await drainDeadLetters()).toEqual([]);
    expect(await metric("broker_writer_retried_total")).toBeGreaterThan(25);
    destination.mode = "up";
    await waitFor(async () => (await pending()).length === 0, 20_000, "all delivered");
    expect(new Set(destination.accepted).size).toBe(25);
    expect(destination.accepted).toHaveLength(25);
    expect(await drainDeadLetters()).toEqual([]);
    expect(await metric("broker_writer_delivered_total")).toBe(25);
  });

  it("does not deliver a message again when RabbitMQ hands it over a second time", async () => {
    const before = destination.accepted.length;
    const again = logical();
    await publish(again);
    await waitFor(async () => destination.accepted.length === before + 1, 15_000, "delivered");
    await publish(again);
    await publish(logical());
    await waitFor(async () => destination.accepted.length === before + 2, 15_000, "next one");
    expect(destination.accepted).toHaveLength(before + 2);
  });

  it("dead-letters only the message the destination will never take, with its reason", async () => {
    const bad = logical();
    const good = logical();
    destination.reject.add(bad.broker_correlation_id);
    await publish(bad, good);
    let dead: amqplib.GetMessage[] = [];
    await waitFor(
      async () => {
        dead = dead.concat(await drainDeadLetters());
        return dead.length === 1 && (await pending()).length === 0;
      },
      15_000,
      "dead letter",
    );
    expect(dead[0]!.properties.correlationId).toBe(bad.broker_correlation_id);
    expect(dead[0]!.properties.headers?.["x-broker-reason"]).toBe("bad_payload");
    expect(dead[0]!.properties.headers?.["x-broker-queue"]).toBe(amqpConfig.queuePrefix + QUEUE);
    expect(JSON.parse(dead[0]!.content.toString())).toEqual(bad);
  });

  it("dead-letters a stored row that is no longer the message it was taken in as (edited by hand), and delivers the rest", async () => {
    // Intake checked every stored body at the gate; a claim trusts the table but still refuses
    // a body that is not JSON or no longer agrees with its row's columns.
    const before = destination.accepted.length;
    const good = logical();
    const edited = logical();
    const rows = [
      { msg: logical(), body: "{not json" },
      { msg: edited, body: JSON.stringify({ ...edited, broker_correlation_id: randomUUID() }) },
      { msg: edited, body: JSON.stringify({ ...edited, l_uid: 2 }) },
      { msg: good, body: JSON.stringify(good) },
    ];
    for (const { msg, body } of rows) {
      await db.handle.pool.query(
        `insert into delivery_queue (writer, msg_key, l_uid, p_uid, correlation_id, body)
         values ($1, $2, $3, $4, $5, $6)`,
        [WRITER, randomUUID(), msg.l_uid, msg.p_uid, msg.broker_correlation_id, body],
      );
    }
    let dead: amqplib.GetMessage[] = [];
    await waitFor(
      async () => {
        dead = dead.concat(await drainDeadLetters());
        return dead.length === 3 && (await pending()).length === 0;
      },
      15_000,
      "three dead letters and the good row delivered",
    );
    expect(dead.map((d) => d.properties.headers?.["x-broker-reason"])).toEqual([
      "invalid_message",
      "invalid_message",
      "invalid_message",
    ]);
    expect(dead.map((d) => d.content.toString()).sort()).toEqual(
      rows
        .slice(0, 3)
        .map((r) => r.body)
        .sort(),
    );
    expect(destination.accepted.length).toBe(before + 1);
  });

  it("stops sending while the credentials are refused, says so, keeps the messages and resumes", async () => {
    destination.mode = "refuse";
    const before = destination.accepted.length;
    const messages = Array.from({ length: 5 }, () => logical());
    await publish(...messages);
    await waitFor(async () => (await metric("broker_writer_suspended")) === 1, 15_000, "suspended");
    expect(writer.isReady()).toBe(false);
    // Suspended: no attempt counted against the messages, none dead-lettered.
    const rows = await pending();
    expect(rows).toHaveLength(5);
    expect(rows.every((r) => r.attempts === 0)).toBe(true);
    expect(await drainDeadLetters()).toEqual([]);
    destination.mode = "up";
    await waitFor(async () => (await pending()).length === 0, 15_000, "resumed");
    expect(destination.accepted.length).toBe(before + 5);
    expect(await metric("broker_writer_suspended")).toBe(0);
    expect(writer.isReady()).toBe(true);
  });

  it("reports the age of the oldest undelivered message", async () => {
    destination.mode = "down";
    await publish(logical());
    await waitFor(
      async () => (await metric("broker_writer_lag_seconds")) > 0,
      15_000,
      "lag reported",
    );
    destination.mode = "up";
    await waitFor(async () => (await pending()).length === 0, 15_000, "delivered");
  });
});
