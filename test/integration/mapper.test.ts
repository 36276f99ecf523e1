import { randomUUID } from "node:crypto";

import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const ltsQueue = `${amqpConfig.queuePrefix}lts_capture`;
let db: TestDatabase;
let system: RunningSystem;
let conn: amqp.ChannelModel;
let ch: amqp.ConfirmChannel;
const lts: Record<string, unknown>[] = [];

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function physicalDevice(): Promise<number> {
  const [row] = await sql<{ uid: number }>(
    "insert into physical_devices (source_name, name, source_ids) values ('ttn', 'pd', '{}') returning uid",
  );
  return row!.uid;
}

/**
 * A device mapped since 2020: messages are routed by the mapping that holds their timestamp, so
 * a mapping started now would hold these tests' 2023 readings (see "routes by time" below).
 */
async function mappedPair(
  active = true,
  startTime = "2020-01-01T00:00:00Z",
): Promise<{ puid: number; luid: number }> {
  const puid = await physicalDevice();
  const [ld] = await sql<{ uid: number }>(
    "insert into logical_devices (name) values ('ld') returning uid",
  );
  await sql(
    "insert into physical_logical_map (physical_uid, logical_uid, is_active, start_time) values ($1, $2, $3, $4)",
    [puid, ld!.uid, active, startTime],
  );
  return { puid, luid: ld!.uid };
}

function msg(
  p_uid: number,
  timestamp = "2023-01-30T06:21:56Z",
  extra: Record<string, unknown> = {},
) {
  return {
    broker_correlation_id: randomUUID(),
    p_uid,
    timestamp,
    timeseries: [{ name: "battery (v)", value: 4.16 }],
    ...extra,
  };
}

async function publish(...bodies: unknown[]): Promise<void> {
  for (const body of bodies) {
    ch.publish(
      amqpConfig.ptsExchange,
      "physical_timeseries",
      Buffer.from(typeof body === "string" ? body : JSON.stringify(body)),
      { persistent: true },
    );
  }
  await ch.waitForConfirms();
}

async function rowsFor(puid: number) {
  return sql<{
    logical_uid: number | null;
    json_msg: Record<string, unknown>;
    ts_delta: unknown;
    msg_key: string;
    hold_reason: string | null;
  }>(
    "select logical_uid, json_msg, ts_delta, msg_key, hold_reason from physical_timeseries where physical_uid = $1 order by uid",
    [puid],
  );
}

async function deadLetters(): Promise<amqp.GetMessage[]> {
  const out: amqp.GetMessage[] = [];
  for (;;) {
    const m = await ch.get(deadLetterQueueName(mapperQueue), { noAck: true });
    if (m === false) {
      return out;
    }
    out.push(m);
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  system = await startTestSystem(["mapper"], testConfig(db, amqpConfig));
  conn = await (await import("amqplib")).default.connect(amqpConfig.url);
  ch = await conn.createConfirmChannel();
  await ch.assertExchange(amqpConfig.ltsExchange, "fanout", { durable: true });
  await ch.assertQueue(ltsQueue, { durable: true });
  await ch.bindQueue(ltsQueue, amqpConfig.ltsExchange, "");
  await ch.consume(ltsQueue, (m) => {
    if (m) {
      lts.push({ ...JSON.parse(m.content.toString()), _props: m.properties });
      ch.ack(m);
    }
  });
  await waitFor(
    () => system.components.every((c) => c.isReady?.() ?? true),
    15_000,
    "mapper consuming",
  );
});

afterAll(async () => {
  await system?.stop();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), ltsQueue]);
  await db?.drop();
});

describe("logical mapper against RabbitMQ and PostgreSQL", () => {
  it("routes a mapped, active message: stored with l_uid, logical device updated, published", async () => {
    const { puid, luid } = await mappedPair();
    const m = msg(puid);
    await publish(m);
    await waitFor(
      () => lts.some((x) => x.broker_correlation_id === m.broker_correlation_id),
      10_000,
      "LTS message",
    );
    const out = lts.find((x) => x.broker_correlation_id === m.broker_correlation_id)!;
    expect(out.l_uid).toBe(luid);
    expect(Object.keys(out).filter((k) => k !== "_props")).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
      "l_uid",
    ]);
    const props = out._props as amqp.MessageProperties;
    expect(props.deliveryMode).toBe(2);
    expect(props.correlationId).toBe(m.broker_correlation_id);
    const rows = await rowsFor(puid);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.logical_uid).toBe(luid);
    expect(rows[0]!.ts_delta).not.toBeNull();
    expect(rows[0]!.msg_key).toBe(props.messageId);
    const [ld] = await sql<{ last_seen: string; properties: { last_msg: unknown } }>(
      "select last_seen, properties from logical_devices where uid = $1",
      [luid],
    );
    expect(ld!.last_seen).toBe("2023-01-30T06:21:56+00:00");
    expect(ld!.properties.last_msg).toMatchObject({
      broker_correlation_id: m.broker_correlation_id,
      l_uid: luid,
    });
  });

  it("holds unmapped and paused devices' messages without l_uid, with the reason, and forwards nothing", async () => {
    const unmapped = await physicalDevice();
    const { puid: paused } = await mappedPair(false);
    const a = msg(unmapped, "2023-01-30T06:21:56Z", { l_uid: 12345 });
    const b = msg(paused);
    await publish(a, b);
    await waitFor(
      async () => (await rowsFor(unmapped)).length === 1 && (await rowsFor(paused)).length === 1,
      10_000,
      "rows",
    );
    const [ra] = await rowsFor(unmapped);
    const [rb] = await rowsFor(paused);
    expect(ra!.logical_uid).toBeNull();
    expect(ra!.json_msg).not.toHaveProperty("l_uid");
    expect(ra!.hold_reason).toBe("no_mapping");
    expect(rb!.logical_uid).toBeNull();
    expect(rb!.hold_reason).toBe("paused");
    expect(
      lts.some(
        (x) =>
          x.broker_correlation_id === a.broker_correlation_id ||
          x.broker_correlation_id === b.broker_correlation_id,
      ),
    ).toBe(false);
  });

  it("dead-letters unknown devices and invalid messages with their reason, and holds far-future ones", async () => {
    const { puid } = await mappedPair();
    const future = new Date(Date.now() + 3 * 3600_000).toISOString();
    const unknown = msg(999_999);
    const futureMsg = msg(puid, future);
    await publish(unknown, "{not json", msg(puid, "2023-01-30T06:21:56"), futureMsg);
    let dead: amqp.GetMessage[] = [];
    await waitFor(
      async () => {
        dead = dead.concat(await deadLetters());
        return dead.length >= 3 && (await rowsFor(puid)).length === 1;
      },
      15_000,
      "three dead letters and the held row",
    );
    const reasons = dead.map((d) => d.properties.headers?.["x-broker-reason"]).sort();
    expect(reasons).toEqual(["invalid_json", "invalid_message", "unknown_device"]);
    const naive = dead.find(
      (d) => d.properties.headers?.["x-broker-reason"] === "invalid_message",
    )!;
    expect(String(naive.properties.headers?.["x-broker-error"])).toContain("offset");
    // The far-future message is held: stored without l_uid, with its reason, not forwarded (IoTa
    // stored it with l_uid and dropped it; we dead-lettered it before holding existed).
    const rows = await rowsFor(puid);
    expect(
      rows.map((r) => [r.json_msg.broker_correlation_id, r.logical_uid, r.hold_reason]),
    ).toEqual([[futureMsg.broker_correlation_id, null, "future_timestamp"]]);
    expect(lts.some((x) => x.broker_correlation_id === futureMsg.broker_correlation_id)).toBe(
      false,
    );
  });

  it("stores a redelivered or replayed message once", async () => {
    const { puid } = await mappedPair();
    const m = msg(puid);
    await publish(m, m);
    await publish(m);
    await waitFor(
      () => lts.filter((x) => x.broker_correlation_id === m.broker_correlation_id).length === 3,
      10_000,
      "three forwards",
    );
    expect(await rowsFor(puid)).toHaveLength(1);
  });

  it("never moves the logical device's last_seen backwards", async () => {
    const { puid, luid } = await mappedPair();
    const newer = msg(puid, "2023-02-01T00:00:00Z");
    const older = msg(puid, "2023-01-01T00:00:00+10:00");
    await publish(newer);
    await waitFor(async () => (await rowsFor(puid)).length === 1, 10_000, "first row");
    await publish(older);
    await waitFor(async () => (await rowsFor(puid)).length === 2, 10_000, "second row");
    const [ld] = await sql<{
      last_seen: string;
      properties: { last_msg: { broker_correlation_id: string } };
    }>("select last_seen, properties from logical_devices where uid = $1", [luid]);
    expect(ld!.last_seen).toBe("2023-02-01T00:00:00+00:00");
    expect(ld!.properties.last_msg.broker_correlation_id).toBe(newer.broker_correlation_id);
  });

  it("routes by the mapping that holds the timestamp, not the current one", async () => {
    const { puid, luid } = await mappedPair(true, "2023-01-01T00:00:00Z");
    await sql(
      "update physical_logical_map set end_time = '2023-02-01T00:00:00Z' where physical_uid = $1",
      [puid],
    );
    const [other] = await sql<{ uid: number }>(
      "insert into logical_devices (name) values ('ld 2') returning uid",
    );
    await sql(
      "insert into physical_logical_map (physical_uid, logical_uid, start_time) values ($1, $2, '2023-03-01T00:00:00Z')",
      [puid, other!.uid],
    );
    // Sent newest first: a late message still reaches the series of its own time.
    const inSecond = msg(puid, "2023-03-05T00:00:00Z");
    const between = msg(puid, "2023-02-15T00:00:00Z");
    const inFirst = msg(puid, "2023-01-30T06:30:00Z");
    const beforeAll = msg(puid, "2022-12-31T23:59:59.999999Z");
    await publish(inSecond, between, inFirst, beforeAll);
    await waitFor(async () => (await rowsFor(puid)).length === 4, 10_000, "four rows");
    const rows = await rowsFor(puid);
    expect(rows.map((r) => [r.logical_uid, r.hold_reason])).toEqual([
      [other!.uid, null],
      [null, "no_mapping"],
      [luid, null],
      [null, "no_mapping"],
    ]);
    await waitFor(
      () => lts.some((x) => x.broker_correlation_id === inFirst.broker_correlation_id),
      10_000,
      "the late message",
    );
    expect(lts.find((x) => x.broker_correlation_id === inFirst.broker_correlation_id)!.l_uid).toBe(
      luid,
    );
  });

  it("holds a reading stamped before a mapping made now (IoTa sent it to the new device)", async () => {
    const { puid } = await mappedPair(true, new Date().toISOString());
    await publish(msg(puid, "2023-01-30T06:21:56Z"));
    await waitFor(async () => (await rowsFor(puid)).length === 1, 10_000, "held row");
    expect((await rowsFor(puid))[0]).toMatchObject({
      logical_uid: null,
      hold_reason: "no_mapping",
    });
  });

  it("reports readiness and metrics", async () => {
    const ready = await fetch(`http://127.0.0.1:${system.opsPort}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${system.opsPort}/metrics`)).text();
    expect(metrics).toMatch(/broker_messages_in_total\{component="mapper"\} \d+/);
    expect(metrics).toMatch(
      /broker_messages_dead_lettered_total\{component="mapper",reason="unknown_device"\} 1/,
    );
  });
});
