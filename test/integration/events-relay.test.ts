import { randomUUID } from "node:crypto";

import type amqp from "amqplib";
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { createLogger } from "../../src/core/logger.js";
import type { Db } from "../../src/db/database.js";
import { countUnpublished, latestEventId, listEvents } from "../../src/db/repositories/events.js";
import { createLogicalDevice } from "../../src/db/repositories/logical-devices.js";
import { setMappingActive, startMapping } from "../../src/db/repositories/mappings.js";
import { createNote } from "../../src/db/repositories/notes.js";
import { createPhysicalDevice } from "../../src/db/repositories/physical-devices.js";
import { withActor } from "../../src/events/actor.js";
import {
  cleanupAmqp,
  closeConnectionsNamed,
  isolatedAmqpConfig,
  openTestChannel,
  waitFor,
} from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

interface Received {
  id: number;
  routingKey: string;
  messageId: string | undefined;
  persistent: boolean;
  body: Record<string, unknown>;
}

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
let testDb: TestDatabase;
let db: Db;
let conn: amqp.ChannelModel;
const received: Received[] = [];
const systems: RunningSystem[] = [];

/** A relay process of its own (its own pool and AMQP connection named `name`). */
async function startRelay(name: string, url = amqpConfig.url): Promise<RunningSystem> {
  const config = testConfig(testDb, { ...amqpConfig, url }, { EVENT_RELAY_POLL_MS: "1000" });
  const system = await startTestSystem(["event-relay"], config, { connectionName: name });
  systems.push(system);
  return system;
}

async function stopAll(): Promise<void> {
  await Promise.all(systems.splice(0).map((s) => s.stop()));
}

/** Makes `count` logical devices in transactions of `perTransaction`. */
async function createDevices(count: number, perTransaction: number): Promise<void> {
  for (let done = 0; done < count; done += perTransaction) {
    const n = Math.min(perTransaction, count - done);
    await sql`insert into logical_devices (name) select 'bulk ' || g from generate_series(1, ${n}::int) g`.execute(
      db,
    );
  }
}

function receivedAfter(since: number): Received[] {
  return received.filter((r) => r.id > since);
}

beforeAll(async () => {
  testDb = await createTestDatabase();
  db = testDb.handle.db;
  const test = await openTestChannel();
  conn = test.conn;
  await test.ch.assertExchange(amqpConfig.eventsExchange, "topic", { durable: true });
  const { queue } = await test.ch.assertQueue("", { exclusive: true });
  await test.ch.bindQueue(queue, amqpConfig.eventsExchange, "#");
  await test.ch.consume(
    queue,
    (msg) => {
      if (!msg) {
        return;
      }
      const body = JSON.parse(msg.content.toString("utf8")) as Record<string, unknown>;
      received.push({
        id: body.id as number,
        routingKey: msg.fields.routingKey,
        messageId: msg.properties.messageId as string | undefined,
        persistent: msg.properties.deliveryMode === 2,
        body,
      });
    },
    { noAck: true },
  );
});

afterEach(stopAll);

afterAll(async () => {
  await stopAll();
  await conn?.close().catch(() => undefined);
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue)]);
  await testDb?.drop();
});

/** A relay whose warnings and errors are kept, as `broker run event-relay` would log them. */
async function startLoggedRelay(url: string): Promise<{ warnings: () => string[] }> {
  const lines: string[] = [];
  const logger = createLogger({ level: "warn", destination: { write: (l) => lines.push(l) } });
  const config = testConfig(testDb, { ...amqpConfig, url }, { EVENT_RELAY_POLL_MS: "1000" });
  systems.push(
    await startTestSystem(["event-relay"], config, {
      logger,
      connectionName: `events-logged-${randomUUID()}`,
    }),
  );
  return { warnings: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg) };
}

describe("event relay", () => {
  it("starts without a warning while its RabbitMQ connection is still opening", async () => {
    const relay = await startLoggedRelay(amqpConfig.url);
    const since = await latestEventId(db);
    await withActor(db, "tester", (trx) => createLogicalDevice(trx, { name: "quiet-start" }));
    await waitFor(() => receivedAfter(since).length >= 1, 15_000, "the event");
    expect(relay.warnings()).toEqual([]);
  });

  it("does warn once RabbitMQ has failed to answer", async () => {
    const relay = await startLoggedRelay("amqp://guest:guest@127.0.0.1:1/%2F");
    await waitFor(
      () => relay.warnings().includes("cannot publish registry events now"),
      15_000,
      "the relay's warning",
    );
    expect(relay.warnings()).toContain("RabbitMQ connection failed");
  });

  it("publishes each event once, in id order, with its routing key, and marks it published", async () => {
    await startRelay(`events-relay-${randomUUID()}`);
    const since = await latestEventId(db);
    await withActor(db, "tester", async (trx) => {
      const pd = await createPhysicalDevice(trx, { source_name: "ttn", name: "relay-pd" });
      const ld = await createLogicalDevice(trx, { name: "relay-ld" });
      await startMapping(trx, pd.uid, ld.uid);
      await setMappingActive(trx, { puid: pd.uid }, false);
      await createNote(trx, pd.uid, "a note");
    });
    const expected = await listEvents(db, { since, limit: 1000 });
    await waitFor(() => receivedAfter(since).length >= expected.length, 15_000, "events");
    const got = receivedAfter(since);
    expect(got.map((r) => r.routingKey)).toEqual([
      "physical_device.create",
      "logical_device.create",
      "mapping.start",
      "mapping.pause",
      "note.create",
    ]);
    expect(got.map((r) => r.body)).toEqual(expected);
    expect(got.map((r) => r.messageId)).toEqual(expected.map((e) => String(e.id)));
    expect(got.every((r) => r.persistent)).toBe(true);
    await waitFor(async () => (await countUnpublished(db)) === 0, 15_000, "all marked published");
  });

  it("keeps events while RabbitMQ is unreachable and sends them later, in order, none twice", async () => {
    const since = await latestEventId(db);
    const unreachable = await startRelay(
      `events-down-${randomUUID()}`,
      "amqp://guest:guest@127.0.0.1:1/%2F",
    );
    await createDevices(300, 60);
    expect(await countUnpublished(db)).toBe(300);
    await unreachable.stop();

    await startRelay(`events-up-${randomUUID()}`);
    const expected = (await listEvents(db, { since, limit: 1000 })).map((e) => e.id);
    expect(expected).toHaveLength(300);
    await waitFor(() => receivedAfter(since).length >= 300, 20_000, "300 events");
    await waitFor(async () => (await countUnpublished(db)) === 0, 15_000, "all marked published");
    expect(receivedAfter(since).map((r) => r.id)).toEqual(expected);
  });

  it("with two relays and their connections closed mid-stream, every event arrives, in order", async () => {
    const names = [`events-a-${randomUUID()}`, `events-b-${randomUUID()}`];
    await Promise.all(names.map((n) => startRelay(n)));
    const since = await latestEventId(db);
    await createDevices(100, 10);
    await waitFor(() => receivedAfter(since).length > 0, 15_000, "the first events");
    let closed = 0;
    for (const name of names) {
      closed += await closeConnectionsNamed(name);
    }
    expect(closed).toBeGreaterThan(0);
    await createDevices(100, 10);

    const expected = (await listEvents(db, { since, limit: 1000 })).map((e) => e.id);
    expect(expected).toHaveLength(200);
    await waitFor(async () => (await countUnpublished(db)) === 0, 20_000, "all published");
    const distinct = (): number => new Set(receivedAfter(since).map((r) => r.id)).size;
    await waitFor(() => distinct() >= 200, 15_000, "200 distinct events");
    // At least once: a batch whose confirms were cut off may come again, so consumers drop ids
    // they have seen. What they keep must be everything, in order.
    const firstSeen = [...new Set(receivedAfter(since).map((r) => r.id))];
    expect(firstSeen).toEqual(expected);
  });
});
