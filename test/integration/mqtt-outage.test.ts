import { randomBytes } from "node:crypto";

import type amqp from "amqplib";
import mqtt from "mqtt";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import {
  cleanupAmqp,
  closeConnectionsNamed,
  isolatedAmqpConfig,
  openTestChannel,
  waitFor,
} from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { PG } from "../helpers/env.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const MQTT_URL = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
const suffix = randomBytes(4).toString("hex");
const topic = `test-${suffix}/wombat`;
const clientId = `test-${suffix}-wombat`;
const connectionName = `test-${suffix}-mqtt-outage`;
const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + "wombat_ingest.dead";
let db: TestDatabase;
let publisher: mqtt.MqttClient;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

const env = {
  MQTT_URL,
  WOMBAT_MQTT_TOPICS: topic,
  WOMBAT_MQTT_CLIENT_ID: clientId,
};

function reading(serial: string, n: number): string {
  return JSON.stringify({
    timestamp: `2024-02-01T00:${String(n % 60).padStart(2, "0")}:00Z`,
    source_ids: { serial_no: serial },
    timeseries: [{ name: "n", value: n }],
  });
}

/** Correlation ids of the messages now in the mapper's queue (consumed). */
async function drainIds(): Promise<string[]> {
  const ids: string[] = [];
  for (;;) {
    const m = await ch.get(mapperQueue, { noAck: true });
    if (m === false) {
      return ids;
    }
    ids.push(String(m.properties.correlationId));
  }
}

/** Waits until `system` serves and has declared the mapper's queue (it does so on connect). */
async function whenReady(system: RunningSystem): Promise<void> {
  const ready = `http://127.0.0.1:${system.opsPort}/readyz`;
  await waitFor(async () => (await fetch(ready)).status === 200, 15_000, "ready");
  await waitFor(
    async () => {
      // A failed check closes its channel, so each check gets one of its own.
      const probe = await conn.createChannel();
      probe.on("error", () => undefined);
      try {
        await probe.checkQueue(mapperQueue);
        await probe.close();
        return true;
      } catch {
        return false;
      }
    },
    15_000,
    "the mapper's queue",
  );
}

async function collectIds(count: number, timeoutMs = 30_000): Promise<string[]> {
  const ids: string[] = [];
  await waitFor(
    async () => {
      ids.push(...(await drainIds()));
      return ids.length >= count;
    },
    timeoutMs,
    `${count} messages`,
  );
  return ids;
}

async function rawIds(serial: string): Promise<string[]> {
  const { rows } = await db.handle.pool.query<{ correlation_id: string }>(
    "select correlation_id from raw_messages where json_msg->'source_ids'->>'serial_no' = $1",
    [serial],
  );
  return rows.map((r) => r.correlation_id);
}

async function admin(text: string, params: unknown[] = []): Promise<void> {
  const client = new pg.Client({ ...PG, database: "postgres" });
  await client.connect();
  try {
    await client.query(text, params);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  ({ conn, ch } = await openTestChannel());
  publisher = await mqtt.connectAsync(MQTT_URL, { clientId: `test-${suffix}-publisher` });
});

afterAll(async () => {
  await publisher?.endAsync();
  const c = await mqtt.connectAsync(MQTT_URL, { clientId, clean: true });
  await c.endAsync();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), deadQueue]);
  await admin(`alter database ${db.name} allow_connections true`).catch(() => undefined);
  await db?.drop();
});

describe("an MQTT source through outages: delayed, never lost", () => {
  it("RabbitMQ unreachable: stored with its message in the outbox, acknowledged, and published by the next process", async () => {
    const dead = testConfig(db, { ...amqpConfig, url: "amqp://guest:guest@127.0.0.1:1/%2F" }, env);
    const outage = await startTestSystem(["wombat"], dead);
    try {
      await waitFor(() => outage.components[0]!.isReady!(), 15_000, "subscribed");
      // It can still accept (issue 12): ready without RabbitMQ.
      expect((await fetch(`http://127.0.0.1:${outage.opsPort}/readyz`)).status).toBe(200);
      await publisher.publishAsync(topic, reading("held", 1), { qos: 1 });
      // Raw first, and its normalised message committed to the outbox: durable, so acknowledged.
      await waitFor(async () => (await rawIds("held")).length === 1, 15_000, "raw row");
      await waitFor(
        async () =>
          Number(
            (await db.handle.pool.query<{ n: string }>("select count(*) as n from ingest_outbox"))
              .rows[0]!.n,
          ) === 1,
        15_000,
        "outbox row",
      );
    } finally {
      await outage.stop();
    }
    const healthy = await startTestSystem(["wombat"], testConfig(db, amqpConfig, env));
    try {
      await whenReady(healthy);
      const ids = await collectIds(1);
      expect(ids).toEqual(await rawIds("held"));
    } finally {
      await healthy.stop();
    }
  });

  describe("while running", () => {
    let system: RunningSystem;

    beforeAll(async () => {
      system = await startTestSystem(["wombat"], testConfig(db, amqpConfig, env), {
        connectionName,
      });
      await whenReady(system);
      await drainIds();
    });

    afterAll(async () => {
      await system?.stop();
    });

    it("RabbitMQ connections closed mid-stream: every message arrives, held and retried in process", async () => {
      for (let n = 0; n < 30; n++) {
        await publisher.publishAsync(topic, reading("stream", n), { qos: 1 });
        if (n === 10) {
          expect(await closeConnectionsNamed(connectionName)).toBeGreaterThan(0);
        }
      }
      const ids = await collectIds(30);
      expect(new Set(ids)).toEqual(new Set(await rawIds("stream")));
      expect(new Set(ids).size).toBe(30);
    });

    it("MQTT connection taken away: not ready, reconnects, and the session's messages arrive", async () => {
      const component = system.components[0]!;
      // Another client with our id takes the session over, and the broker drops our connection.
      const impostor = await mqtt.connectAsync(MQTT_URL, { clientId, clean: false });
      await impostor.endAsync();
      await waitFor(() => !component.isReady!(), 5_000, "not ready");
      for (let n = 0; n < 3; n++) {
        await publisher.publishAsync(topic, reading("reconnect", n), { qos: 1 });
      }
      const ids = await collectIds(3);
      expect(new Set(ids)).toEqual(new Set(await rawIds("reconnect")));
      expect(component.isReady!()).toBe(true);
    });

    it("PostgreSQL refusing connections: messages wait unacknowledged and arrive once it is back", async () => {
      const retried = () =>
        system.deps.metrics.retried
          .get()
          .then((m) =>
            m.values
              .filter((v) => v.labels.component === "wombat")
              .reduce((n, v) => n + v.value, 0),
          );
      const before = await retried();
      await admin(`alter database ${db.name} allow_connections false`);
      await admin("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [
        db.name,
      ]);
      try {
        for (let n = 0; n < 5; n++) {
          await publisher.publishAsync(topic, reading("pg-down", n), { qos: 1 });
        }
        await waitFor(async () => (await retried()) > before, 15_000, "a retry");
        expect((await fetch(`http://127.0.0.1:${system.opsPort}/readyz`)).status).toBe(503);
      } finally {
        await admin(`alter database ${db.name} allow_connections true`);
      }
      const ids = await collectIds(5);
      expect(new Set(ids)).toEqual(new Set(await rawIds("pg-down")));
      expect(new Set(ids).size).toBe(5);
    });
  });

  it("acknowledged everything it stored: the session redelivers nothing but a later message", async () => {
    // The system above has stopped. Unacknowledged messages would be redelivered ahead of this one.
    await publisher.publishAsync(topic, "marker", { qos: 1 });
    const got: string[] = [];
    // Listening before the connection exists: the session's messages follow CONNACK at once.
    const session = mqtt.connect(MQTT_URL, { clientId, clean: false });
    session.on("message", (_t, payload) => got.push(payload.toString()));
    try {
      await waitFor(() => got.includes("marker"), 10_000, "the marker");
      expect(got).toEqual(["marker"]);
    } finally {
      await session.endAsync();
    }
  });
});
