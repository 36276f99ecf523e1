import { randomUUID } from "node:crypto";

import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { ConfirmedPublisher, type OutgoingMessage } from "../../src/bus/publisher.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { createLogger } from "../../src/core/logger.js";
import { listHeld } from "../../src/db/repositories/held-messages.js";
import { setMappingActive, startMapping } from "../../src/db/repositories/mappings.js";
import {
  RELEASE_HEADER,
  RELEASE_RETRY_HEADER,
  releaseHeld,
  type ReleasePublisher,
} from "../../src/mapper/release.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { captureExchange, type Capture, type Captured } from "../helpers/capture.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
let db: TestDatabase;
let system: RunningSystem;
let conn: amqp.ChannelModel;
let ch: amqp.ConfirmChannel;
let lts: ConfirmedPublisher;
let capture: Capture;
let captured: Captured[];

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function physicalDevice(name = "pd"): Promise<number> {
  const [row] = await sql<{ uid: number }>(
    "insert into physical_devices (source_name, name, source_ids) values ('ttn', $1, '{}') returning uid",
    [name],
  );
  return row!.uid;
}

async function logicalDevice(name = "ld"): Promise<number> {
  const [row] = await sql<{ uid: number }>(
    "insert into logical_devices (name) values ($1) returning uid",
    [name],
  );
  return row!.uid;
}

function msg(p_uid: number, timestamp: string, value = 1) {
  return {
    broker_correlation_id: randomUUID(),
    p_uid,
    timestamp,
    timeseries: [{ name: "temperature", value }],
  };
}

async function publish(...bodies: unknown[]): Promise<void> {
  for (const body of bodies) {
    ch.publish(amqpConfig.ptsExchange, "physical_timeseries", Buffer.from(JSON.stringify(body)), {
      persistent: true,
    });
  }
  await ch.waitForConfirms();
}

async function stored(puid: number) {
  return sql<{
    cid: string;
    logical_uid: number | null;
    hold_reason: string | null;
    released_at: string | null;
  }>(
    `select json_msg->>'broker_correlation_id' as cid, logical_uid, hold_reason, released_at
     from physical_timeseries where physical_uid = $1 order by ts`,
    [puid],
  );
}

function deliveredTo(cid: string): Captured[] {
  return captured.filter((c) => c.body.broker_correlation_id === cid);
}

/** Minutes after a fixed instant, as ISO text. */
function t(minutes: number): string {
  return new Date(Date.parse("2025-06-01T00:00:00Z") + minutes * 60_000).toISOString();
}

beforeAll(async () => {
  db = await createTestDatabase();
  system = await startTestSystem(["mapper"], testConfig(db, amqpConfig));
  conn = await (await import("amqplib")).default.connect(amqpConfig.url);
  ch = await conn.createConfirmChannel();
  capture = await captureExchange(amqpConfig.url, amqpConfig.ltsExchange);
  captured = capture.messages;
  lts = new ConfirmedPublisher({
    connection: system.deps.amqp,
    exchange: amqpConfig.ltsExchange,
    logger: createLogger({ level: "silent" }),
  });
  await waitFor(
    () => system.components.every((c) => c.isReady?.() ?? true),
    15_000,
    "mapper consuming",
  );
});

afterAll(async () => {
  await lts?.close();
  await system?.stop();
  await capture?.close();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue)]);
  await db?.drop();
});

describe("route by time, hold and release, on RabbitMQ and PostgreSQL", () => {
  it("a sensor replaced mid-stream: every reading lands on the right series, in any arrival order", async () => {
    const oldSensor = await physicalDevice("old sensor");
    const newSensor = await physicalDevice("new sensor");
    const site = await logicalDevice("paddock 4");
    const elsewhere = await logicalDevice("bench");
    await startMapping(db.handle.db, oldSensor, site, t(0));

    // The new sensor reports from minute 60, while the operator is still on the way back.
    const early = [msg(newSensor, t(61), 61), msg(newSensor, t(62), 62)];
    await publish(...early);
    await waitFor(async () => (await stored(newSensor)).length === 2, 10_000, "held rows");
    expect((await stored(newSensor)).map((r) => r.hold_reason)).toEqual([
      "no_mapping",
      "no_mapping",
    ]);

    // The operator maps the new sensor from when it was installed, releasing what it held; the
    // old sensor's mapping ends there.
    await startMapping(db.handle.db, newSensor, site, t(60));
    const summary = await releaseHeld(db.handle.db, lts, { puid: newSensor });
    expect(summary).toMatchObject({ released: 2, resumed: 0, still_held: 0 });
    // The old sensor goes to the bench; its later readings go there, its earlier ones stay put.
    await startMapping(db.handle.db, oldSensor, elsewhere, t(90));

    // Late and out of order, across both changes.
    const late = [
      msg(newSensor, t(95), 95),
      msg(oldSensor, t(59), 59),
      msg(oldSensor, t(91), 91),
      msg(newSensor, t(63), 63),
      msg(oldSensor, t(70), 70),
      msg(oldSensor, t(30), 30),
    ];
    await publish(...late);
    await waitFor(
      async () => (await stored(oldSensor)).length === 4 && (await stored(newSensor)).length === 4,
      10_000,
      "all rows",
    );
    await waitFor(
      () =>
        [...early, ...late].filter((m) => deliveredTo(m.broker_correlation_id).length > 0)
          .length === 7,
      10_000,
      "seven deliveries",
    );
    const target = (m: { broker_correlation_id: string }) =>
      deliveredTo(m.broker_correlation_id).map((c) => c.body.l_uid);
    expect(early.map(target)).toEqual([[site], [site]]);
    expect(late.map(target)).toEqual([[site], [site], [elsewhere], [site], [], [site]]);
    // The old sensor's minute-70 reading fell between its two mappings: held, not forwarded.
    const held = await listHeld(db.handle.db, { puid: oldSensor });
    expect(held).toEqual([
      {
        puid: oldSensor,
        count: 1,
        oldest: "2025-06-01T01:10:00+00:00",
        newest: "2025-06-01T01:10:00+00:00",
        reasons: { no_mapping: 1 },
        releasing: 0,
      },
    ]);
    // Released messages say so in headers; the body is the normalised message with l_uid.
    const released = deliveredTo(early[0]!.broker_correlation_id)[0]!;
    expect(released.props.headers?.[RELEASE_HEADER]).toBe(summary.release_id);
    expect(released.props.headers?.["x-broker-hold-reason"]).toBe("no_mapping");
    expect(released.props.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Object.keys(released.body)).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
      "l_uid",
    ]);
    expect(
      deliveredTo(late[0]!.broker_correlation_id)[0]!.props.headers?.[RELEASE_HEADER],
    ).toBeUndefined();
  });

  it("a paused mapping holds; resumed and released twice at once, each message goes out exactly once, in time order", async () => {
    const puid = await physicalDevice();
    const luid = await logicalDevice();
    await startMapping(db.handle.db, puid, luid, t(0));
    await setMappingActive(db.handle.db, { puid }, false);
    const bodies = Array.from({ length: 60 }, (_, i) => msg(puid, t(60 - i), i));
    await publish(...bodies);
    await waitFor(async () => (await stored(puid)).length === 60, 10_000, "held rows");
    expect(new Set((await stored(puid)).map((r) => r.hold_reason))).toEqual(new Set(["paused"]));
    expect(captured.filter((c) => c.body.p_uid === puid)).toEqual([]);

    // Still paused: a release leaves them held.
    const whilePaused = await releaseHeld(db.handle.db, lts, { puid });
    expect(whilePaused).toMatchObject({ released: 0, still_held: 60 });

    await setMappingActive(db.handle.db, { puid }, true);
    const [a, b] = await Promise.all([
      releaseHeld(db.handle.db, lts, { puid }, { chunkSize: 7 }),
      releaseHeld(db.handle.db, lts, { puid }, { chunkSize: 7 }),
    ]);
    expect(a.released + b.released).toBe(60);
    expect(a.still_held + b.still_held).toBe(0);
    await waitFor(
      () => captured.filter((c) => c.body.p_uid === puid).length >= 60,
      10_000,
      "sixty deliveries",
    );
    const out = captured.filter((c) => c.body.p_uid === puid);
    expect(out).toHaveLength(60);
    expect(new Set(out.map((c) => c.body.broker_correlation_id)).size).toBe(60);
    expect(out.every((c) => c.body.l_uid === luid)).toBe(true);
    const times = out.map((c) => Date.parse(c.body.timestamp as string));
    expect(times).toEqual([...times].sort((x, y) => x - y));
    const rows = await stored(puid);
    expect(rows.every((r) => r.logical_uid === luid && r.released_at !== null)).toBe(true);
    expect(await listHeld(db.handle.db, { puid })).toEqual([]);
  });

  it("an interrupted release, run again, publishes what was not confirmed and marks each once", async () => {
    const puid = await physicalDevice();
    const luid = await logicalDevice();
    const bodies = Array.from({ length: 10 }, (_, i) => msg(puid, t(i + 1), i));
    await publish(...bodies);
    await waitFor(async () => (await stored(puid)).length === 10, 10_000, "held rows");
    await startMapping(db.handle.db, puid, luid, t(0));

    // Dies after RabbitMQ confirmed the first round of 4 and before the mark committed.
    const crashAfterConfirm: ReleasePublisher = {
      async publish(messages: readonly OutgoingMessage[]) {
        await lts.publish(messages);
        throw new Error("killed after the confirm");
      },
    };
    await expect(
      releaseHeld(db.handle.db, crashAfterConfirm, { puid }, { chunkSize: 4 }),
    ).rejects.toThrow("killed after the confirm");
    const [claimed] = await listHeld(db.handle.db, { puid });
    expect(claimed).toMatchObject({ count: 6, releasing: 4 });

    const rerun = await releaseHeld(db.handle.db, lts, { puid }, { chunkSize: 4 });
    expect(rerun).toMatchObject({ released: 10, resumed: 4, still_held: 0 });
    await waitFor(
      () => captured.filter((c) => c.body.p_uid === puid).length >= 14,
      10_000,
      "fourteen deliveries",
    );
    const out = captured.filter((c) => c.body.p_uid === puid);
    // The first four went out twice: the repeat has the same message_id and says it is a retry.
    const first4 = bodies.slice(0, 4).map((m) => m.broker_correlation_id);
    for (const cid of first4) {
      const copies = deliveredTo(cid);
      expect(copies).toHaveLength(2);
      expect(copies[0]!.props.messageId).toBe(copies[1]!.props.messageId);
      expect(copies[1]!.props.headers?.[RELEASE_RETRY_HEADER]).toBe(true);
    }
    for (const m of bodies.slice(4)) {
      expect(deliveredTo(m.broker_correlation_id)).toHaveLength(1);
    }
    expect(out).toHaveLength(14);
    const rows = await stored(puid);
    expect(rows.every((r) => r.released_at !== null && r.logical_uid === luid)).toBe(true);
    expect(await listHeld(db.handle.db, { puid })).toEqual([]);
  });

  it("a release that dies before publishing loses nothing and repeats nothing", async () => {
    const puid = await physicalDevice();
    const luid = await logicalDevice();
    const bodies = Array.from({ length: 5 }, (_, i) => msg(puid, t(i + 1), i));
    await publish(...bodies);
    await waitFor(async () => (await stored(puid)).length === 5, 10_000, "held rows");
    await startMapping(db.handle.db, puid, luid, t(0));
    const down: ReleasePublisher = {
      publish: () => Promise.reject(new Error("RabbitMQ is down")),
    };
    await expect(releaseHeld(db.handle.db, down, { puid })).rejects.toThrow("RabbitMQ is down");
    expect((await releaseHeld(db.handle.db, lts, { puid })).released).toBe(5);
    await waitFor(
      () => captured.filter((c) => c.body.p_uid === puid).length >= 5,
      10_000,
      "five deliveries",
    );
    for (const m of bodies) {
      expect(deliveredTo(m.broker_correlation_id)).toHaveLength(1);
    }
  });

  it("holds far-future and reset-clock messages with their reason, and releases them only when asked", async () => {
    const puid = await physicalDevice();
    const luid = await logicalDevice();
    await startMapping(db.handle.db, puid, luid, "1960-01-01T00:00:00Z");
    const future = msg(puid, new Date(Date.now() + 3 * 3600_000).toISOString());
    const reset = msg(puid, "1970-01-01T00:00:00Z");
    await publish(future, reset);
    await waitFor(async () => (await stored(puid)).length === 2, 10_000, "held rows");
    const [summary] = await listHeld(db.handle.db, { puid });
    expect(summary!.reasons).toEqual({ future_timestamp: 1, past_timestamp: 1 });
    expect(await releaseHeld(db.handle.db, lts, { puid })).toMatchObject({
      released: 0,
      still_held: 0,
    });
    const asked = await releaseHeld(db.handle.db, lts, {
      puid,
      reasons: ["past_timestamp"],
    });
    expect(asked).toMatchObject({ released: 1, still_held: 0 });
    await waitFor(
      () => deliveredTo(reset.broker_correlation_id).length === 1,
      10_000,
      "the 1970 message",
    );
    expect(deliveredTo(future.broker_correlation_id)).toEqual([]);
  });
});
