import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import type amqp from "amqplib";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const MQTT_URL = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, fixtures), "utf8");
const ydocText = fixture("ydoc_eg.json");
const draginoText = fixture("dragino_json_S31x-CB.json");
const ictCsv = fixture("ict_mqtt_mncm2l307_payload.csv");

// Topics and client ids of this file's own: other test runs share the Mosquitto broker.
const suffix = randomBytes(4).toString("hex");
const root = `test-${suffix}`;
const SOURCES = {
  ydoc: { prefix: "YDOC", topic: `${root}/YDOC/+`, dead: "ydoc_ingest.dead" },
  wombat: { prefix: "WOMBAT", topic: `${root}/wombat`, dead: "wombat_ingest.dead" },
  dragino: { prefix: "DRAGINO", topic: `${root}/dragino_up`, dead: "dragino_ingest.dead" },
  "ict-mqtt": { prefix: "ICT", topic: `${root}/ict/data/+`, dead: "ict_mqtt_ingest.dead" },
} as const;
const clientId = (name: string) => `test-${suffix}-${name}`;

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = (name: keyof typeof SOURCES) => amqpConfig.queuePrefix + SOURCES[name].dead;
let db: TestDatabase;
let system: RunningSystem;
let publisher: mqtt.MqttClient;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

interface Got {
  body: Record<string, unknown>;
  messageId: string;
  headers: Record<string, unknown>;
  text: string;
}

async function drain(queue: string): Promise<Got[]> {
  const out: Got[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (m === false) {
      return out;
    }
    const text = m.content.toString();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // dead letters of non-JSON payloads
    }
    out.push({
      body,
      messageId: String(m.properties.messageId),
      headers: m.properties.headers ?? {},
      text,
    });
  }
}

/** Reads `queue` until `count` messages came (they arrive as each MQTT message becomes durable). */
async function collect(queue: string, count: number): Promise<Got[]> {
  const got: Got[] = [];
  await waitFor(
    async () => {
      got.push(...(await drain(queue)));
      return got.length >= count;
    },
    15_000,
    `${count} messages on ${queue}`,
  );
  return got;
}

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

beforeAll(async () => {
  db = await createTestDatabase();
  const env: Record<string, string> = { MQTT_URL, MQTT_MAX_PAYLOAD_BYTES: "4096" };
  for (const [name, s] of Object.entries(SOURCES)) {
    env[`${s.prefix}_MQTT_TOPICS`] = s.topic;
    env[`${s.prefix}_MQTT_CLIENT_ID`] = clientId(name);
  }
  system = await startTestSystem(Object.keys(SOURCES), testConfig(db, amqpConfig, env));
  ({ conn, ch } = await openTestChannel());
  publisher = await mqtt.connectAsync(MQTT_URL, { clientId: clientId("publisher") });
  const ready = `http://127.0.0.1:${system.opsPort}/readyz`;
  await waitFor(async () => (await fetch(ready)).status === 200, 15_000, "ready");
  // Dead-letter queues are declared once RabbitMQ is connected.
  await waitFor(
    async () => {
      const checks = await Promise.all(
        Object.keys(SOURCES).map((n) =>
          ch.checkQueue(deadQueue(n as keyof typeof SOURCES)).then(
            () => true,
            () => false,
          ),
        ),
      );
      if (checks.includes(false)) {
        // a failed checkQueue closes the channel
        ch = await conn.createChannel();
        return false;
      }
      return true;
    },
    15_000,
    "dead-letter queues",
  );
});

afterAll(async () => {
  await publisher?.endAsync();
  await system?.stop();
  // Persistent sessions outlive their clients: end them so the shared broker forgets them.
  for (const name of Object.keys(SOURCES)) {
    const c = await mqtt.connectAsync(MQTT_URL, { clientId: clientId(name), clean: true });
    await c.endAsync();
  }
  await conn?.close();
  const dead = Object.keys(SOURCES).map((n) => deadQueue(n as keyof typeof SOURCES));
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), ...dead]);
  await db?.drop();
});

const publish = (topic: string, payload: string | Buffer) =>
  publisher.publishAsync(topic, payload, { qos: 1 });

describe("MQTT sources against Mosquitto, PostgreSQL and RabbitMQ", () => {
  it("YDOC: stores the raw message with the device time and exact text, creates the device, publishes", async () => {
    await publish(`${root}/YDOC/108172923`, ydocText);
    const [got] = await collect(mapperQueue, 1);
    const [raw] = await sql<{
      correlation_id: string;
      ts: string;
      json_msg: unknown;
      text_msg: string;
      physical_uid: number;
    }>(
      "select correlation_id, ts, json_msg, text_msg, physical_uid from raw_messages where source_name = 'ydoc'",
    );
    // device.sim does not survive JSON.parse, so the received text is kept beside the JSON.
    expect(raw!.text_msg).toBe(ydocText);
    expect(raw!.json_msg).toMatchObject({ device: { sn: 108172923 } });
    expect(raw!.ts).toBe("2022-03-15T23:22:45+00:00");
    const [pd] = await sql<{ uid: number; name: string; last_seen: string }>(
      "select uid, name, last_seen from physical_devices where source_name = 'ydoc'",
    );
    expect(pd).toMatchObject({
      name: "House Paddock Rip 3 (ydoc-108172923)",
      last_seen: "2022-03-15T23:22:45+00:00",
    });
    expect(raw!.physical_uid).toBe(pd!.uid);
    expect(got!.body).toEqual({
      broker_correlation_id: raw!.correlation_id,
      p_uid: pd!.uid,
      timestamp: "2022-03-16T09:22:45+10:00",
      timeseries: [
        { timestamp: "2022-03-16T09:22:45+10:00", name: "Signal", value: 2 },
        { timestamp: "2022-03-16T09:22:45+10:00", name: "Signal_strength", value: -84 },
        { timestamp: "2022-03-16T09:22:45+10:00", name: "Average_voltage", value: 3.31 },
      ],
    });
  });

  it("YDOC: the same bytes again are the same message (one raw row, same correlation id)", async () => {
    await publish(`${root}/YDOC/108172923`, ydocText);
    const [again] = await collect(mapperQueue, 1);
    const raws = await sql("select 1 from raw_messages where source_name = 'ydoc'");
    expect(raws).toHaveLength(1);
    const [{ correlation_id }] = (await sql<{ correlation_id: string }>(
      "select correlation_id from raw_messages where source_name = 'ydoc'",
    )) as [{ correlation_id: string }];
    expect(again!.body.broker_correlation_id).toBe(correlation_id);
  });

  it("YDOC: a message about a logger and its sensors updates each device, stores raw once", async () => {
    const msg = {
      device: { sn: 77, name: "Bore 2" },
      channels: [
        { code: "SB", name: "Signal" },
        { code: "S1M1", name: "S1Moisture1" },
      ],
      data: [{ SB: 3, S1M1: 21.5, $ts: 240101120000 }],
    };
    await publish(`${root}/YDOC/77`, JSON.stringify(msg));
    const got = await collect(mapperQueue, 2);
    const devices = await sql<{ uid: number; name: string }>(
      "select uid, name from physical_devices where source_ids->>'id' in ('ydoc-77', '77-s1') order by name",
    );
    expect(devices.map((d) => d.name)).toEqual(["Bore 2 (s1)", "Bore 2 (ydoc-77)"]);
    expect(new Set(got.map((m) => m.body.p_uid))).toEqual(new Set(devices.map((d) => d.uid)));
    expect(new Set(got.map((m) => m.body.broker_correlation_id)).size).toBe(1);
    const raws = await sql("select 1 from raw_messages where json_msg->'device'->>'sn' = '77'");
    expect(raws).toHaveLength(1);
  });

  it("Wombat: passes the device's keys through, removes a stray l_uid, dead-letters a naive timestamp", async () => {
    const msg = {
      timestamp: "2023-01-30T06:21:56Z",
      source_ids: { serial_no: "W1", "sdi-12": ["013DPIWQ"] },
      timeseries: [{ name: "1_Temperature", value: 21.6 }],
      l_uid: 5,
    };
    await publish(`${root}/wombat`, JSON.stringify({ ...msg, timestamp: "2023-01-30T06:21:56" }));
    await publish(`${root}/wombat`, JSON.stringify(msg));
    const [got] = await collect(mapperQueue, 1);
    const [pd] = await sql<{ uid: number; name: string; source_ids: unknown }>(
      "select uid, name, source_ids from physical_devices where source_name = 'wombat'",
    );
    expect(pd).toMatchObject({ name: "Wombat-W1", source_ids: msg.source_ids });
    const { l_uid: _stray, ...passed } = msg;
    expect(got!.body).toEqual({
      ...passed,
      broker_correlation_id: expect.any(String),
      p_uid: pd!.uid,
    });
    const [dead] = await collect(deadQueue("wombat"), 1);
    expect(dead!.headers["x-broker-reason"]).toBe("naive_timestamp");
    expect(dead!.body.timestamp).toBe("2023-01-30T06:21:56");
    const raws = await sql("select 1 from raw_messages where source_name = 'wombat'");
    expect(raws).toHaveLength(2);
  });

  it("Dragino: one message per record; a record re-sent by the next uplink keeps its msg_key", async () => {
    const first = JSON.parse(draginoText) as Record<string, unknown>;
    await publish(`${root}/dragino_up`, draginoText);
    const one = await collect(mapperQueue, 9);
    const next: Record<string, unknown> = { ...first, time: "2025-09-11T05:28:20Z" };
    for (let n = 8; n >= 1; n--) {
      next[String(n + 1)] = first[String(n)];
    }
    next["1"] = [21.0, 41.0, "2025-09-11T05:27:44Z"];
    await publish(`${root}/dragino_up`, JSON.stringify(next));
    const two = await collect(mapperQueue, 10);
    const firstRecords = one.slice(1).map((m) => m.messageId);
    expect(two.map((m) => m.messageId).filter((id) => firstRecords.includes(id))).toEqual(
      firstRecords,
    );
    const [pd] = await sql<{ name: string; last_seen: string }>(
      "select name, last_seen from physical_devices where source_name = 'dragino_json'",
    );
    expect(pd).toEqual({ name: "dragino_866840078846294", last_seen: "2025-09-11T05:28:20+00:00" });
  });

  it("ICT: keeps the received bytes as raw text, publishes the translated row", async () => {
    await publish(`${root}/ict/data/mncm2l307`, ictCsv);
    const [got] = await collect(mapperQueue, 1);
    const [raw] = await sql<{ text_msg: string; json_msg: unknown; ts: string }>(
      "select text_msg, json_msg, ts from raw_messages where source_name = 'ict_mqtt'",
    );
    expect(raw).toEqual({ text_msg: ictCsv, json_msg: null, ts: "2026-08-15T10:49:39+00:00" });
    expect(got!.body).toMatchObject({
      timestamp: "2026-08-15T10:49:39+00:00",
      timeseries: [
        { name: "battV", value: 4.161 },
        { name: "solV", value: 0 },
        { name: "c4e temperature", value: 15.733 },
        { name: "c4e salinity", value: 34.515999 },
      ],
    });
    const [pd] = await sql<{ source_ids: unknown }>(
      "select source_ids from physical_devices where source_name = 'ict_mqtt'",
    );
    expect(pd!.source_ids).toEqual({ topic: "ict/data/mncm2l307" });
  });

  it("every source: bad payloads are kept raw and dead-lettered with a reason, and never hold up good ones", async () => {
    const cases: [keyof typeof SOURCES, string, string | Buffer, string][] = [
      ["ydoc", `${root}/YDOC/1`, "", "empty_payload"],
      ["ydoc", `${root}/YDOC/1`, '{"device": {"sn": 1}, "chan', "invalid_json"],
      [
        "ydoc",
        `${root}/YDOC/1`,
        '{"device": {"sn": 1}, "channels": 3, "data": []}',
        "invalid_payload",
      ],
      ["wombat", `${root}/wombat`, Buffer.from([0xff, 0xfe, 0x00]), "invalid_utf8"],
      ["wombat", `${root}/wombat`, "x".repeat(5000), "payload_too_large"],
      [
        "dragino",
        `${root}/dragino_up`,
        JSON.stringify({ ...JSON.parse(draginoText), Model: "LHT65" }),
        "unknown_model",
      ],
      ["dragino", `${root}/dragino_up`, '["not", "an", "object"]', "invalid_payload"],
      ["dragino", `${root}/dragino_up`, "[".repeat(1000) + "]".repeat(1000), "too_deeply_nested"],
      ["ict-mqtt", `${root}/ict/data/mncm9z999`, ictCsv, "unknown_device"],
      ["ict-mqtt", `${root}/ict/data/mncm2l307`, 'x,"broken', "malformed_csv"],
    ];
    for (const [, topic, payload] of cases) {
      await publish(topic, payload);
    }
    const good = ictCsv.replace("10:49:39", "11:49:39");
    await publish(`${root}/ict/data/mncm2l307`, good);
    const [published] = await collect(mapperQueue, 1);
    expect(published!.body.timestamp).toBe("2026-08-15T11:49:39+00:00");
    for (const name of Object.keys(SOURCES) as (keyof typeof SOURCES)[]) {
      const expected = cases.filter((c) => c[0] === name).map((c) => c[3]);
      const dead = await collect(deadQueue(name), expected.length);
      expect(dead.map((d) => d.headers["x-broker-reason"]).sort()).toEqual([...expected].sort());
      for (const d of dead) {
        expect(d.headers["x-broker-error"]).toEqual(expect.any(String));
      }
    }
    const texts = await sql<{ text_msg: string }>(
      "select text_msg from raw_messages where text_msg is not null and json_msg is null",
    );
    expect(texts.map((t) => t.text_msg)).toEqual(
      expect.arrayContaining([
        '{"device": {"sn": 1}, "chan',
        "\uFFFD\uFFFD\uFFFD",
        'x,"broken',
        "",
      ]),
    );
    const big = texts.find((t) => t.text_msg.startsWith("xxxx"));
    expect(big!.text_msg).toHaveLength(4096);
    expect(await drain(mapperQueue)).toEqual([]);
  });
});

describe("hostile MQTT payloads (issue 13): kept raw, and published or dead-lettered with a reason", () => {
  it("YDOC data: [], Dragino +20:00, Wombat +99:99 and a lone surrogate are dead-lettered at the source, never published", async () => {
    await drain(mapperQueue);
    const dragino = JSON.parse(draginoText) as Record<string, unknown>;
    const wombat = {
      timestamp: "2023-01-30T06:21:56Z",
      source_ids: { serial_no: "W9" },
      timeseries: [{ name: "t", value: 1 }],
    };
    const surrogate = JSON.stringify({ ...wombat, note: "x" }).replace('"x"', '"a\\ud800"');
    const cases: [keyof typeof SOURCES, string, string, string][] = [
      [
        "ydoc",
        `${root}/YDOC/5`,
        '{"device": {"sn": 5}, "channels": [{"code": "SB", "name": "Signal"}], "data": []}',
        "no_readings",
      ],
      [
        "dragino",
        `${root}/dragino_up`,
        JSON.stringify({ ...dragino, time: "2025-09-11T05:13:20+20:00" }),
        "invalid_timestamp",
      ],
      [
        "wombat",
        `${root}/wombat`,
        JSON.stringify({ ...wombat, timestamp: "2023-01-30T06:21:56+99:99" }),
        "invalid_timestamp",
      ],
      ["wombat", `${root}/wombat`, surrogate, "lone_surrogate"],
    ];
    for (const [, topic, payload] of cases) {
      await publish(topic, payload);
    }
    for (const name of ["ydoc", "dragino", "wombat"] as const) {
      const expected = cases.filter((c) => c[0] === name);
      const dead = await collect(deadQueue(name), expected.length);
      expect(dead.map((d) => d.headers["x-broker-reason"]).sort()).toEqual(
        expected.map((c) => c[3]).sort(),
      );
      // The dead letter carries the raw copy: the received text, or its JSON re-serialised.
      const bodies = expected.flatMap((c) => [c[2], JSON.stringify(JSON.parse(c[2]))]);
      for (const d of dead) {
        expect(bodies).toContain(d.text);
      }
    }
    const kept = await sql<{ text_msg: string | null; json_msg: unknown }>(
      "select text_msg, json_msg from raw_messages where text_msg = $1",
      [surrogate],
    );
    expect(kept).toEqual([{ text_msg: surrogate, json_msg: null }]);
    for (const [, , payload] of cases.slice(0, 3)) {
      const rows = await sql(
        "select 1 from raw_messages where json_msg = $1::jsonb or text_msg = $2",
        [payload, payload],
      );
      expect(rows).toHaveLength(1);
    }
    expect(await drain(mapperQueue)).toEqual([]);
  });

  it("Dragino: a time after 2255 keeps its microseconds (a double of microseconds does not)", async () => {
    const dragino = JSON.parse(draginoText) as Record<string, unknown>;
    await publish(
      `${root}/dragino_up`,
      JSON.stringify({ ...dragino, time: "9000-06-01T00:00:00.123457Z" }),
    );
    const got = await collect(mapperQueue, 9);
    expect(got.map((m) => m.body.timestamp)).toContain("9000-06-01T00:00:00.123457+00:00");
  });
});
