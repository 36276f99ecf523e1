import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import {
  declareStandaloneDeadLetterQueue,
  QUEUE_NAMES,
  topologyOptions,
} from "../../src/bus/topology.js";
import { resolveDeadLetterQueue } from "../../src/dlq/catalogue.js";
import { createDeadLetterService } from "../../src/dlq/service.js";
import { DEFAULT_STATION_ID, weatherRecords } from "../../src/sources/axistech/normalise.js";
import {
  cleanupAmqp,
  isolatedAmqpConfig,
  openTestChannel,
  queueCount,
  waitFor,
} from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

/**
 * `broker dlq replay` of MQTT-source and poller dead letters, on real Mosquitto, RabbitMQ and
 * PostgreSQL: the dead letter records its topic (MQTT) or its poll context (pollers), and a replay
 * runs it through the source's rules and the shared ingest pipeline in process. A good one is
 * stored and published; a still-refused one is dead-lettered afresh with today's reason; an old
 * letter without the topic stays, reported as before.
 */

const MQTT_URL = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
const amqp = isolatedAmqpConfig();
const topic = `test-${randomBytes(4).toString("hex")}/wombat`;
const wombatDead = `${amqp.queuePrefix}wombat_ingest.dead`;
const axisDead = `${amqp.queuePrefix}axistech_ingest.dead`;
const greenDead = `${amqp.queuePrefix}greenbrain_ingest.dead`;
const physical = amqp.queuePrefix + QUEUE_NAMES.mapper;
let db: TestDatabase;
let system: RunningSystem;

const wombat = {
  timestamp: "2023-01-30T06:21:56Z",
  source_ids: { serial_no: `W-${randomUUID()}`, "sdi-12": ["013DPIWQ"] },
  timeseries: [{ name: "1_Temperature", value: 21.6 }],
};

async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []) {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function deadLetter(
  queue: string,
  body: string,
  headers: Record<string, string>,
  messageId = randomUUID(),
): Promise<void> {
  const { conn } = await openTestChannel();
  try {
    const confirm = await conn.createConfirmChannel();
    confirm.publish(amqp.deadLetterExchange, queue, Buffer.from(body), {
      persistent: true,
      messageId,
      correlationId: messageId,
      timestamp: Math.floor(Date.now() / 1000),
      headers: { "x-broker-reason": "decoder_failed", "x-broker-error": "earlier", ...headers },
    });
    await confirm.waitForConfirms();
  } finally {
    await conn.close();
  }
}

/** The dead-letter service of the running system, replaying every letter of `source`. */
async function replayAll(source: string) {
  const service = createDeadLetterService(system.deps.amqp, system.deps.config, system.deps);
  const queue = resolveDeadLetterQueue(source, amqp.queuePrefix, service.queues)!;
  return { service, queue, result: await service.replay(queue, { kind: "all" }) };
}

beforeAll(async () => {
  db = await createTestDatabase();
  system = await startTestSystem(
    ["wombat"],
    testConfig(db, amqp, {
      MQTT_URL,
      WOMBAT_MQTT_TOPICS: topic,
      WOMBAT_MQTT_CLIENT_ID: `dlq-replay-${randomBytes(4).toString("hex")}`,
    }),
  );
  await waitFor(
    async () => (await queueCount(wombatDead).catch(() => -1)) === 0,
    15_000,
    "topology",
  );
  await waitFor(() => system.components[0]!.isReady?.() ?? true, 15_000, "subscribed");
  const { conn, ch } = await openTestChannel();
  await declareStandaloneDeadLetterQueue(ch, axisDead, topologyOptions(amqp));
  await declareStandaloneDeadLetterQueue(ch, greenDead, topologyOptions(amqp));
  await conn.close();
});

afterAll(async () => {
  await system?.stop();
  await cleanupAmqp(amqp, [wombatDead, axisDead, greenDead]);
  await db?.drop();
});

describe("replaying MQTT and poller dead letters through their ingest paths", () => {
  it("Wombat: records the topic; a replay stores and publishes a good letter, dead-letters a refused one afresh, keeps one without a topic", async () => {
    const client = await mqtt.connectAsync(MQTT_URL, { clientId: `pub-${randomUUID()}` });
    // Refused today (a timestamp without an offset): dead-lettered by the running source.
    await client.publishAsync(
      topic,
      JSON.stringify({ ...wombat, timestamp: "2023-01-30T06:21:56" }),
      {
        qos: 1,
      },
    );
    await client.endAsync();
    await waitFor(async () => (await queueCount(wombatDead)) === 1, 15_000, "source dead letter");

    // Dead-lettered earlier (say, by a normaliser since fixed), with its topic; and an old one
    // from before the topic was recorded.
    await deadLetter(wombatDead, JSON.stringify(wombat), {
      "x-broker-source": "wombat",
      "x-broker-mqtt-topic": topic,
    });
    await deadLetter(wombatDead, JSON.stringify(wombat), { "x-broker-source": "wombat" });
    const before = await queueCount(physical);

    const { service, queue, result } = await replayAll("wombat");
    expect(result).toMatchObject({
      matched: 3,
      replayed: 2,
      notReplayed: { no_ingest_path_for_wombat: 1 },
      complete: true,
    });
    expect(await queueCount(physical)).toBe(before + 1);
    const devices = await sql(
      "select uid from physical_devices where source_ids->>'serial_no' = $1",
      [wombat.source_ids.serial_no],
    );
    expect(devices).toHaveLength(1);

    // Left: the refused one (afresh, today's reason, topic kept) and the one without a topic.
    const shown = await service.show(queue, { limit: 10 });
    expect(shown.messages).toBe(2);
    expect(shown.letters.map((l) => l.reason).sort()).toEqual(
      ["decoder_failed", "naive_timestamp"].sort(),
    );
    const again = await service.replay(queue, { kind: "reason", reason: "naive_timestamp" });
    expect(again).toMatchObject({ matched: 1, replayed: 1 });
    expect(await queueCount(wombatDead)).toBe(2);
  });

  it("AxisTech: a record with its poll context is normalised again and published; a whole-answer rejection stays", async () => {
    const fixture = JSON.parse(
      readFileSync(new URL("../fixtures/pollers/axistech_weather.json", import.meta.url), "utf8"),
    ) as unknown;
    const record = weatherRecords(fixture, DEFAULT_STATION_ID)[0]!;
    await deadLetter(axisDead, JSON.stringify(record), {
      "x-broker-source": "axistech",
      "x-broker-poll-context": "{}",
    });
    await deadLetter(axisDead, JSON.stringify([record]), { "x-broker-source": "axistech" });
    const before = await queueCount(physical);

    const { result } = await replayAll("axistech");
    expect(result).toMatchObject({
      matched: 2,
      replayed: 1,
      notReplayed: { no_ingest_path_for_axistech: 1 },
    });
    expect(await queueCount(physical)).toBe(before + 1);
    expect(await sql("select 1 from raw_messages where source_name = 'axistech'")).toHaveLength(1);
    expect(await queueCount(axisDead)).toBe(1);
  });

  it("GreenBrain: an answer is normalised again with its recorded sensor group; the device gets the station's details", async () => {
    const text = readFileSync(
      new URL("../fixtures/pollers/greenbrain_sensor_group_19640_latest.json", import.meta.url),
      "utf8",
    );
    const group = { id: 19640, systemId: 1896, stationId: 9889, stationName: "A Chard heavy" };
    await deadLetter(greenDead, text, {
      "x-broker-source": "greenbrain",
      "x-broker-poll-context": JSON.stringify({ group }),
    });
    const before = await queueCount(physical);
    const { result } = await replayAll("greenbrain");
    expect(result).toMatchObject({ matched: 1, replayed: 1 });
    expect(await queueCount(physical)).toBeGreaterThan(before);
    const devices = await sql<{ source_ids: Record<string, unknown> }>(
      "select source_ids from physical_devices where source_name = 'greenbrain'",
    );
    expect(devices).toHaveLength(1);
    expect(devices[0]!.source_ids).toMatchObject({ sensor_group_id: 19640, station_id: 9889 });
    expect(await queueCount(greenDead)).toBe(0);
  });
});
