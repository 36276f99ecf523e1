import { randomBytes } from "node:crypto";

import type amqp from "amqplib";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { parseMessage } from "../../src/core/message.js";
import { mqttCorrelationId } from "../../src/mqtt/payload.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { mutateCsv, mutateJson } from "../helpers/mutate.js";
import { Random } from "../helpers/random.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { fixtureText } from "../helpers/ttn.js";

/**
 * Fuzz campaign (issue 13), fixed seed: structure-aware mutants of the recorded payloads of every
 * source go through one `ttn-webhook ydoc wombat dragino ict-mqtt mapper` system. Every input
 * must be answered (no 5xx but 503, which is retried), stored raw, and either published or
 * dead-lettered with a reason; nothing malformed may reach physical_timeseries.
 */

const SEED = 20261203;
const TTN_INPUTS = 1200;
const MQTT_INPUTS = 250; // per source

const MQTT_URL = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
const suffix = randomBytes(4).toString("hex");
const root = `fuzz-${suffix}`;
const SOURCES = {
  ydoc: { prefix: "YDOC", source: "ydoc", topic: `${root}/YDOC/+`, dead: "ydoc_ingest.dead" },
  wombat: {
    prefix: "WOMBAT",
    source: "wombat",
    topic: `${root}/wombat`,
    dead: "wombat_ingest.dead",
  },
  dragino: {
    prefix: "DRAGINO",
    source: "dragino_json",
    topic: `${root}/dragino_up`,
    dead: "dragino_ingest.dead",
  },
  "ict-mqtt": {
    prefix: "ICT",
    source: "ict_mqtt",
    topic: `${root}/ict/data/+`,
    dead: "ict_mqtt_ingest.dead",
  },
} as const;
type SourceName = keyof typeof SOURCES;
const clientId = (name: string) => `fuzz-${suffix}-${name}`;

const amqpConfig = isolatedAmqpConfig();
const q = (name: string) => amqpConfig.queuePrefix + name;
const mapperQueue = q(QUEUE_NAMES.mapper);
let db: TestDatabase;
let system: RunningSystem;
let webhook: string;
let publisher: mqtt.MqttClient;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

/** JSON with keys sorted, written by hand: a `__proto__` key stays a key. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonical).join(",")}]`;
  }
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Dead letters of a queue, by correlation id → reason (accumulated across polls). */
const deadLetters = new Map<string, string>();
async function drainDead(queues: readonly string[]): Promise<void> {
  for (const queue of queues) {
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) {
        break;
      }
      deadLetters.set(
        String(m.properties.correlationId),
        String(m.properties.headers?.["x-broker-reason"] ?? ""),
      );
    }
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  const env: Record<string, string> = { MQTT_URL, MQTT_MAX_PAYLOAD_BYTES: "65536" };
  for (const [name, s] of Object.entries(SOURCES)) {
    env[`${s.prefix}_MQTT_TOPICS`] = s.topic;
    env[`${s.prefix}_MQTT_CLIENT_ID`] = clientId(name);
  }
  system = await startTestSystem(
    ["ttn-webhook", ...Object.keys(SOURCES), "mapper"],
    testConfig(db, amqpConfig, env),
  );
  webhook = `http://127.0.0.1:${system.components[0]!.port!()}/ttn/webhook/up`;
  ({ conn, ch } = await openTestChannel());
  publisher = await mqtt.connectAsync(MQTT_URL, { clientId: clientId("publisher") });
  const ready = `http://127.0.0.1:${system.opsPort}/readyz`;
  await waitFor(async () => (await fetch(ready)).status === 200, 15_000, "ready");
  const dead = [TTN_DEAD_LETTER_QUEUE, ...Object.values(SOURCES).map((s) => s.dead)].map(q);
  await waitFor(
    async () => {
      for (const queue of dead) {
        try {
          await ch.checkQueue(queue);
        } catch {
          ch = await conn.createChannel(); // a failed check closes the channel
          return false;
        }
      }
      return true;
    },
    15_000,
    "dead-letter queues",
  );
}, 60_000);

afterAll(async () => {
  await publisher?.endAsync();
  await system?.stop();
  for (const name of Object.keys(SOURCES)) {
    const c = await mqtt.connectAsync(MQTT_URL, { clientId: clientId(name), clean: true });
    await c.endAsync();
  }
  await conn?.close();
  const dead = [TTN_DEAD_LETTER_QUEUE, ...Object.values(SOURCES).map((s) => s.dead)].map(q);
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), ...dead]);
  await db?.drop();
});

/** Posts like The Things Stack: a 503 is retried; returns the final status. */
async function postUplink(text: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(webhook, { method: "POST", body: text });
    await res.arrayBuffer();
    if (res.status !== 503 || attempt > 50) {
      return res.status;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Runs `fn` over `items`, `width` at a time. */
async function pool<T, R>(items: readonly T[], width: number, fn: (t: T) => Promise<R>) {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

describe("fuzz: mutated recorded payloads of every source", () => {
  it(`${TTN_INPUTS} TTN bodies and ${MQTT_INPUTS} payloads per MQTT source are answered, kept raw, and published or dead-lettered with a reason`, async () => {
    const r = new Random(SEED);
    // ---- inputs
    const ttnBases = [
      "ttn_uplink_temphumid-netvox-r718a_2022-12-16.json",
      "ttn_v3_uplink_example.json",
      "ttn_webhook_simulated_uplink_2022-01-23.json",
    ].map((f) => JSON.parse(fixtureText(f)) as unknown);
    const ttn = Array.from({ length: TTN_INPUTS }, () => mutateJson(r.pick(ttnBases), r));
    const wombatBase = {
      timestamp: "2023-01-30T06:21:56Z",
      source_ids: { serial_no: "WOMBAT0042", "sdi-12": ["013DPIWQ  AQ100 00000000001"] },
      timeseries: [
        { name: "1_Temperature", value: 21.6 },
        { name: "battery (v)", value: 4.16 },
      ],
    };
    const ictRow = fixtureText("ict_mqtt_mncm2l307_payload.csv");
    const mqttInputs: { source: SourceName; topic: string; payload: string }[] = [];
    const bases = {
      ydoc: JSON.parse(fixtureText("ydoc_eg.json")) as unknown,
      dragino: JSON.parse(fixtureText("dragino_json_S31x-CB.json")) as unknown,
      wombat: wombatBase,
    };
    for (let i = 0; i < MQTT_INPUTS; i++) {
      mqttInputs.push(
        { source: "ydoc", topic: `${root}/YDOC/1`, payload: mutateJson(bases.ydoc, r) },
        { source: "dragino", topic: `${root}/dragino_up`, payload: mutateJson(bases.dragino, r) },
        { source: "wombat", topic: `${root}/wombat`, payload: mutateJson(bases.wombat, r) },
        {
          source: "ict-mqtt",
          topic: `${root}/ict/data/${r.chance(0.9) ? "mncm2l307" : r.pick(["mncm9z999", "", "é"])}`,
          payload: mutateCsv(ictRow, r),
        },
      );
    }

    // ---- send, both kinds at once
    const [statuses] = await Promise.all([
      pool(ttn, 16, postUplink),
      pool(mqttInputs, 16, (m) => publisher.publishAsync(m.topic, m.payload, { qos: 1 })),
    ]);

    // Every input answered, and never with a 5xx (503s were retried until they stopped).
    const unexpected = statuses.filter((s) => ![204, 400, 413].includes(s));
    expect(unexpected).toEqual([]);

    // ---- wait until every MQTT input is kept raw and has an outcome
    const allDead = [TTN_DEAD_LETTER_QUEUE, ...Object.values(SOURCES).map((s) => s.dead)].map(q);
    const mqttIds = mqttInputs.map((m) =>
      mqttCorrelationId(SOURCES[m.source].source, m.topic, Buffer.from(m.payload)),
    );
    const outcome = async () => {
      await drainDead(allDead);
      const { rows } = await db.handle.pool.query<{ cid: string; linked: boolean }>(
        `select r.correlation_id::text as cid,
                  exists (select 1 from physical_timeseries p where p.json_msg->>'broker_correlation_id' = r.correlation_id::text)
                    or (r.source_name = 'dragino_json' and r.physical_uid is not null) as linked
           from raw_messages r where r.correlation_id = any($1::uuid[])`,
        [mqttIds],
      );
      return new Map(rows.map((row) => [row.cid, row.linked]));
    };
    const pending = (seen: Map<string, boolean>) =>
      mqttInputs.filter((m, i) => {
        const cid = mqttIds[i]!;
        if (!seen.has(cid)) {
          return true;
        }
        return !seen.get(cid) && !deadLetters.has(cid) && !rawOnlyByDesign(m);
      });
    await waitFor(
      async () => pending(await outcome()).length === 0,
      120_000,
      "MQTT outcomes",
    ).catch(() => undefined);
    const seen = await outcome();
    expect(pending(seen).map((m) => `${m.source}: ${m.payload.slice(0, 200)}`)).toEqual([]);
    expect([...deadLetters.values()].filter((reason) => reason === "")).toEqual([]);

    // ---- TTN: every body kept raw (exact text, or JSON equal to what was sent)
    const raws = await sql<{ cid: string; json: string | null; text: string | null }>(
      "select correlation_id::text as cid, json_msg::text as json, text_msg as text from raw_messages where source_name = 'ttn'",
    );
    const byText = new Map<string, string>();
    const byJson = new Map<string, string>();
    for (const row of raws) {
      if (row.text !== null) {
        byText.set(row.text, row.cid);
      }
      if (row.json !== null) {
        byJson.set(canonical(JSON.parse(row.json)), row.cid);
      }
    }
    const ttnIds = ttn.map((text) => {
      const stored = text.replaceAll("\u0000", "\uFFFD");
      const value = parsed(stored);
      return byText.get(stored) ?? (value === undefined ? undefined : byJson.get(canonical(value)));
    });
    expect(ttn.filter((_, i) => ttnIds[i] === undefined)).toEqual([]);

    // 4xx: dead-lettered with a reason; 204: published, unless there was nothing to publish.
    await waitFor(
      async () => {
        await drainDead(allDead);
        return statuses.every((s, i) => s === 204 || deadLetters.has(ttnIds[i]!));
      },
      30_000,
      "TTN dead letters",
    ).catch(() => undefined);
    expect(ttn.filter((_, i) => statuses[i] !== 204 && !deadLetters.has(ttnIds[i]!))).toEqual([]);
    await waitFor(
      async () => (await ch.checkQueue(mapperQueue)).messageCount === 0,
      30_000,
      "mapper idle",
    );
    const stored = new Set(
      (
        await sql<{ cid: string }>(
          "select distinct json_msg->>'broker_correlation_id' as cid from physical_timeseries",
        )
      ).map((row) => row.cid),
    );
    const silent = ttn.filter(
      (text, i) => statuses[i] === 204 && !stored.has(ttnIds[i]!) && !nothingToPublish(text),
    );
    expect(silent).toEqual([]);

    // ---- nothing malformed in physical_timeseries
    const rows = await sql<{ json: string; ts_matches: boolean }>(
      "select json_msg::text as json, ts = (json_msg->>'timestamp')::timestamptz as ts_matches from physical_timeseries",
    );
    expect(rows.length).toBeGreaterThan(100);
    const malformed = rows.filter((row) => {
      try {
        parseMessage(JSON.parse(row.json));
        return !row.ts_matches;
      } catch {
        return true;
      }
    });
    expect(malformed).toEqual([]);
    // The mapper dead-lettered nothing: whatever the sources published was valid.
    expect((await ch.checkQueue(deadLetterQueueName(mapperQueue))).messageCount).toBe(0);
  }, 300_000); // about 40 s alone; the margin is for a machine shared with other suites
});

/** A YDOC message without `data` is kept raw only, with a note (IoTa's rule). */
function rawOnlyByDesign(m: { source: SourceName; payload: string }): boolean {
  const value = parsed(m.payload);
  return (
    m.source === "ydoc" &&
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !("data" in value)
  );
}

/** An uplink with no decoded_payload, or an empty one, publishes nothing (IoTa's rule). */
function nothingToPublish(text: string): boolean {
  const body = parsed(text) as { uplink_message?: { decoded_payload?: unknown } } | undefined;
  const payload = body?.uplink_message?.decoded_payload;
  return (
    payload === undefined ||
    (typeof payload === "object" && payload !== null && Object.keys(payload).length === 0)
  );
}
