import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { ConfirmedPublisher, type OutgoingMessage } from "../../src/bus/publisher.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import type { Config } from "../../src/core/config.js";
import { createLogger } from "../../src/core/logger.js";
import { RAW_CORRELATION_HEADER, REPLAY_HEADER } from "../../src/core/message.js";
import { startMapping } from "../../src/db/repositories/mappings.js";
import { REPLAY_RETRY_HEADER, replay } from "../../src/replay/replay.js";
import { parseSelection } from "../../src/replay/selection.js";
import { openRawNormaliser } from "../../src/sources/replay.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { captureExchange, type Capture } from "../helpers/capture.js";
import { runBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { brokerEnv, startTestSystem, testConfig } from "../helpers/system.js";
import { deliverUplink, fixtureText, netvoxUplink } from "../helpers/ttn.js";

const MQTT_URL = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
const suffix = randomBytes(4).toString("hex");
const ydocTopicRoot = `test-${suffix}`;
const APP = `replay-app-${suffix}`;
const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const decoders = mkdtempSync(join(tmpdir(), "replay-decoders-"));
const env = {
  TTN_DECODERS_DIR: decoders,
  TTN_DECODE_LOCALLY: APP,
  MQTT_URL,
  YDOC_MQTT_TOPICS: `${ydocTopicRoot}/YDOC/+`,
  YDOC_MQTT_CLIENT_ID: `test-${suffix}-ydoc`,
  DRAGINO_MQTT_TOPICS: `${ydocTopicRoot}/dragino_up`,
  DRAGINO_MQTT_CLIENT_ID: `test-${suffix}-dragino`,
};

let db: TestDatabase;
let config: Config;
let system: RunningSystem;
let capture: Capture;
let webhook: string;
let mqttClient: mqtt.MqttClient;

/** The decoder as deployed: version 1 forgets the scale and the battery byte. */
function deployDecoder(body: string): void {
  mkdirSync(join(decoders, "uplink"), { recursive: true });
  writeFileSync(
    join(decoders, "uplink", `${APP}.js`),
    `function decodeUplink(input) { ${body} }\n`,
  );
}
const BUGGY = "return { data: { temperature: input.bytes[0] } };";
const FIXED =
  "return { data: { temperature: input.bytes[0] / 10, battery: input.bytes[1] / 10 } };";

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

/** An uplink of this file's application: bytes [temperature*10, battery*10]. */
function uplink(devEui: string, fCnt: number, at: string, bytes: number[]) {
  const base = netvoxUplink(devEui, fCnt, at);
  const up = base.uplink_message as Record<string, unknown>;
  const { decoded_payload: _ttnDecoded, ...rest } = up;
  return {
    ...base,
    end_device_ids: {
      ...(base.end_device_ids as Record<string, unknown>),
      application_ids: { application_id: APP },
    },
    uplink_message: { ...rest, frm_payload: Buffer.from(bytes).toString("base64") },
  };
}

type Row = {
  uid: number;
  physical_uid: number;
  logical_uid: number | null;
  json_msg: { timeseries: { name: string; value: unknown }[]; broker_correlation_id: string };
  raw_correlation_id: string | null;
  replay_id: string | null;
  msg_key: string;
};

async function rowsOfApp(): Promise<Row[]> {
  return sql<Row>(
    `select p.uid, p.physical_uid, p.logical_uid, p.json_msg, p.raw_correlation_id::text,
            p.replay_id::text, p.msg_key::text
     from physical_timeseries p join raw_messages r on r.correlation_id = p.raw_correlation_id
     where r.json_msg->'end_device_ids'->'application_ids'->>'application_id' = $1
     order by p.ts, p.physical_uid`,
    [APP],
  );
}

const points = (r: Row) => Object.fromEntries(r.json_msg.timeseries.map((p) => [p.name, p.value]));

const devEuis = ["a0a0a0a0a0a0a001", "a0a0a0a0a0a0a002"];
const at = (minute: number) => new Date(Date.UTC(2025, 4, 1, 0, minute)).toISOString();

beforeAll(async () => {
  deployDecoder(BUGGY);
  db = await createTestDatabase();
  config = testConfig(db, amqpConfig, env);
  system = await startTestSystem(["ttn-webhook", "ydoc", "dragino", "mapper"], config);
  capture = await captureExchange(amqpConfig.url, amqpConfig.ltsExchange);
  webhook = `http://127.0.0.1:${system.components.find((c) => c.name === "ttn-webhook")!.port!()}/ttn/webhook/up`;
  mqttClient = await mqtt.connectAsync(MQTT_URL, { clientId: `test-${suffix}-publisher` });
  await waitFor(
    () => system.components.every((c) => c.isReady?.() ?? true),
    15_000,
    "components ready",
  );
});

afterAll(async () => {
  await mqttClient?.endAsync();
  await system?.stop();
  for (const clientId of [env.YDOC_MQTT_CLIENT_ID, env.DRAGINO_MQTT_CLIENT_ID]) {
    const c = await mqtt.connectAsync(MQTT_URL, { clientId, clean: true });
    await c.endAsync();
  }
  await capture?.close();
  await cleanupAmqp(amqpConfig, [
    mapperQueue,
    deadLetterQueueName(mapperQueue),
    amqpConfig.queuePrefix + "ttn_webhook.dead",
    amqpConfig.queuePrefix + "ydoc_ingest.dead",
    amqpConfig.queuePrefix + "dragino_ingest.dead",
  ]);
  await db?.drop();
  rmSync(decoders, { recursive: true, force: true });
});

describe("broker replay", () => {
  it("a decoder fixed after the fact, replayed, changes the stored values without leaving the old rows", async () => {
    // Three uplinks decoded by the buggy decoder, stored and forwarded to a mapped site.
    const sent = [
      uplink(devEuis[0]!, 1, at(0), [215, 36]),
      uplink(devEuis[1]!, 1, at(1), [198, 35]),
      uplink(devEuis[0]!, 2, at(2), [220, 34]),
    ];
    for (const body of sent) {
      expect(await deliverUplink(webhook, body)).toBe(204);
    }
    await waitFor(async () => (await rowsOfApp()).length === 3, 15_000, "three rows stored");
    const devices = await sql<{ uid: number }>(
      "select uid from physical_devices where source_ids->>'dev_eui' = any($1) order by uid",
      [devEuis],
    );
    const [site] = await sql<{ uid: number }>(
      "insert into logical_devices (name) values ('site') returning uid",
    );
    await startMapping(db.handle.db, devices[0]!.uid, site!.uid, at(0));
    const before = await rowsOfApp();
    expect(before.map(points)).toEqual([
      { temperature: 215 },
      { temperature: 198 },
      { temperature: 220 },
    ]);
    // Every row knows its raw message (here, the body's correlation id is the raw one).
    expect(before.every((r) => r.raw_correlation_id === r.json_msg.broker_correlation_id)).toBe(
      true,
    );

    deployDecoder(FIXED);
    const cli = (args: string[]) =>
      runBroker(["replay", "--app", APP, ...args], {
        database: db.name,
        env: {
          ...(brokerEnv(db, amqpConfig) as Record<string, string>),
          ...env,
          LOG_LEVEL: "error",
        },
      });

    // Dry run: says what would change, changes nothing, publishes nothing.
    const publishedBefore = capture.messages.length;
    const dry = await cli(["--dry-run"]);
    expect(dry.stderr).toBe("");
    expect(dry.code).toBe(0);
    const preview = JSON.parse(dry.stdout) as { totals: Record<string, unknown>; dry_run: boolean };
    expect(preview.dry_run).toBe(true);
    expect(preview.totals).toMatchObject({
      raw: 3,
      changed: 3,
      unchanged: 0,
      valuesChanged: 3,
      pointsAdded: 3,
      pointsRemoved: 0,
      devices: devices.map((d) => d.uid),
    });
    expect(await rowsOfApp()).toEqual(before);
    expect(await sql("select * from replay_runs")).toEqual([]);

    // The replay itself.
    const real = await cli([]);
    expect(real.code).toBe(0);
    const summary = JSON.parse(real.stdout) as {
      replay_id: string;
      published: number;
      held: number;
    };
    expect(summary).toMatchObject({ published: 2, held: 1, complete: true });
    const after = await rowsOfApp();
    expect(after.map(points)).toEqual([
      { temperature: 21.5, battery: 3.6 },
      { temperature: 19.8, battery: 3.5 },
      { temperature: 22, battery: 3.4 },
    ]);
    // Old rows gone, not kept beside; the new ones say which replay stored them.
    expect(after.filter((r) => before.some((b) => b.uid === r.uid))).toEqual([]);
    expect(after.every((r) => r.replay_id === summary.replay_id)).toBe(true);
    // Routed by time: device 0 is mapped from minute 0, device 1 is not mapped (held).
    expect(after.map((r) => r.logical_uid)).toEqual([site!.uid, null, site!.uid]);

    // Republished with the replay marker, the body in IoTa's format with l_uid.
    await waitFor(
      () => capture.messages.length >= publishedBefore + 2,
      10_000,
      "replayed messages on the logical exchange",
    );
    const replayed = capture.messages.filter((m) => m.props.headers?.[REPLAY_HEADER] !== undefined);
    expect(replayed.map((m) => m.props.headers?.[REPLAY_HEADER])).toEqual([
      summary.replay_id,
      summary.replay_id,
    ]);
    expect(replayed.map((m) => Object.keys(m.body))).toEqual([
      ["broker_correlation_id", "p_uid", "timestamp", "timeseries", "decoder", "l_uid"],
      ["broker_correlation_id", "p_uid", "timestamp", "timeseries", "decoder", "l_uid"],
    ]);
    expect(replayed.map((m) => m.props.messageId)).toEqual([after[0]!.msg_key, after[2]!.msg_key]);

    // Run again: nothing differs any more, so nothing is stored or published.
    const again = JSON.parse((await cli([])).stdout) as {
      totals: Record<string, unknown>;
      published: number;
    };
    expect(again).toMatchObject({ published: 0, totals: { raw: 3, unchanged: 3, changed: 0 } });
    expect(await rowsOfApp()).toEqual(after);

    // A late copy of the first decode of a replayed raw message is superseded, not stored beside.
    const lateRaw = before[0]!;
    const pts = new ConfirmedPublisher({
      connection: system.deps.amqp,
      exchange: amqpConfig.ptsExchange,
      logger: createLogger({ level: "silent" }),
    });
    const late: OutgoingMessage = {
      body: before[0]!.json_msg,
      messageId: lateRaw.msg_key,
      headers: { [RAW_CORRELATION_HEADER]: lateRaw.raw_correlation_id },
    };
    // A fresh uplink behind it tells when the mapper has handled the late copy.
    await pts.publish([late]);
    await pts.close();
    expect(await deliverUplink(webhook, uplink(devEuis[1]!, 9, at(9), [100, 30]))).toBe(204);
    await waitFor(async () => (await rowsOfApp()).length === 4, 15_000, "the fresh uplink stored");
    const rows = await rowsOfApp();
    expect(rows.filter((r) => r.msg_key === lateRaw.msg_key)).toEqual([]);
  });

  it("an interrupted replay resumes without duplicating what it did", async () => {
    deployDecoder(
      "return { data: { temperature: input.bytes[0] / 10, battery: input.bytes[1] / 10, v: 3 } };",
    );
    const selection = parseSelection({ apps: [APP] });
    const logger = createLogger({ level: "silent" });
    const route = { futureToleranceMs: 3_600_000, pastToleranceMs: undefined };
    const real = new ConfirmedPublisher({
      connection: system.deps.amqp,
      exchange: amqpConfig.ltsExchange,
      logger,
    });
    let calls = 0;
    // Dies on its third round (the second uplink of the mapped device) after the batch is
    // stored: RabbitMQ took nothing of it.
    const mark = capture.messages.length;
    const failing = {
      publish: async (messages: readonly OutgoingMessage[]) => {
        if (++calls === 3) {
          throw new Error("connection lost");
        }
        await real.publish(messages);
      },
    };
    const normaliser = await openRawNormaliser({ config, db: db.handle.db, logger });
    try {
      await expect(
        replay({ db: db.handle.db, normaliser, publisher: failing, route }, selection, {
          batchSize: 1,
        }),
      ).rejects.toThrow("connection lost");
      const [interrupted] = await sql<{
        id: string;
        stored_through: number;
        published_through: number;
        finished_at: null;
      }>(
        "select id::text, stored_through, published_through, finished_at from replay_runs where finished_at is null",
      );
      expect(interrupted!.stored_through).toBeGreaterThan(interrupted!.published_through);

      const resumed = await replay(
        { db: db.handle.db, normaliser, publisher: real, route },
        selection,
        {
          batchSize: 1,
        },
      );
      expect(resumed).toMatchObject({ replay_id: interrupted!.id, resumed: true, complete: true });
      const rows = await rowsOfApp();
      expect(rows).toHaveLength(4);
      expect(rows.every((r) => points(r).v === 3)).toBe(true);
      expect(new Set(rows.map((r) => r.msg_key)).size).toBe(4);
      const [run] = await sql<{ done: number; total: number; finished: boolean }>(
        "select done, total, finished_at is not null as finished from replay_runs where id = $1",
        [interrupted!.id],
      );
      expect(run).toEqual({ done: 4, total: 4, finished: true });
      // Each forwarded row published once over both runs; the interrupted batch's marked a retry.
      const forwarded = rows
        .filter((r) => r.logical_uid !== null)
        .map((r) => r.msg_key)
        .sort();
      await waitFor(
        () => capture.messages.length - mark >= forwarded.length,
        10_000,
        "resumed replay's messages",
      );
      const got = capture.messages.slice(mark);
      expect(got.map((m) => String(m.props.messageId)).sort()).toEqual(forwarded);
      expect(got.some((m) => m.props.headers?.[REPLAY_RETRY_HEADER] === true)).toBe(true);
    } finally {
      await normaliser.close();
      await real.close();
    }
  });

  it("a YDOC message about several devices is replaced whole", async () => {
    // A logger and its sensor: one raw message, two devices' messages.
    const msg = {
      device: { sn: 77, name: "Bore 2" },
      channels: [
        { code: "SB", name: "Signal" },
        { code: "S1M1", name: "S1Moisture1" },
        { code: "S1M2", name: "S1Moisture2" },
      ],
      data: [{ SB: 3, S1M1: 21.5, S1M2: 30.5, $ts: 240101120000 }],
    };
    await mqttClient.publishAsync(`${ydocTopicRoot}/YDOC/77`, JSON.stringify(msg), { qos: 1 });
    let found: { correlation_id: string }[] = [];
    await waitFor(
      async () => {
        found = await sql(
          "select correlation_id::text from raw_messages where source_name = 'ydoc'",
        );
        return found.length === 1;
      },
      15_000,
      "YDOC raw message",
    );
    const raw = found[0];
    const cid = raw!.correlation_id;
    const ofRaw = () =>
      sql<{
        uid: number;
        physical_uid: number;
        json_msg: Row["json_msg"];
        replay_id: string | null;
      }>(
        "select uid, physical_uid, json_msg, replay_id::text from physical_timeseries where raw_correlation_id = $1 order by physical_uid",
        [cid],
      );
    let original: Awaited<ReturnType<typeof ofRaw>> = [];
    await waitFor(
      async () => {
        original = await ofRaw();
        return original.length === 2;
      },
      15_000,
      "YDOC rows",
    );
    // The earlier run, as a buggy normaliser had left it: one device's message missing, another's
    // values wrong, and a stray row that should not exist.
    await sql("delete from physical_timeseries where uid = $1", [original[0]!.uid]);
    await sql(
      `update physical_timeseries
       set json_msg = jsonb_set(json_msg, '{timeseries,0,value}', '-1'), msg_key = gen_random_uuid()
       where uid = $1`,
      [original[1]!.uid],
    );
    const stray = {
      ...original[1]!.json_msg,
      timestamp: "2020-01-01T00:00:00Z",
      timeseries: [{ name: "bogus", value: 1 }],
    };
    await sql(
      `insert into physical_timeseries (physical_uid, ts, json_msg, msg_key, raw_correlation_id)
       values ($1, '2020-01-01T00:00:00Z', $2, gen_random_uuid(), $3)`,
      [original[1]!.physical_uid, JSON.stringify(stray), cid],
    );

    const res = await runBroker(["replay", "--source", "ydoc", "--cid", cid], {
      database: db.name,
      env: { ...(brokerEnv(db, amqpConfig) as Record<string, string>), ...env, LOG_LEVEL: "error" },
    });
    expect(res.code).toBe(0);
    const summary = JSON.parse(res.stdout) as {
      totals: Record<string, unknown>;
      replay_id: string;
    };
    expect(summary.totals).toMatchObject({
      raw: 1,
      changed: 1,
      messagesAdded: 1,
      messagesRemoved: 1,
      valuesChanged: 1,
    });
    const replaced = await ofRaw();
    expect(replaced.map((r) => [r.physical_uid, r.json_msg.timeseries])).toEqual(
      original.map((r) => [r.physical_uid, r.json_msg.timeseries]),
    );
    expect(replaced.every((r) => r.replay_id === summary.replay_id)).toBe(true);
  });

  it("finds rows stored before migration 013 by their body's id (Dragino records' derived ids)", async () => {
    await mqttClient.publishAsync(
      `${ydocTopicRoot}/dragino_up`,
      fixtureText("dragino_json_S31x-CB.json"),
      { qos: 1 },
    );
    let cid = "";
    await waitFor(
      async () => {
        const found = await sql<{ cid: string }>(
          "select correlation_id::text as cid from raw_messages where source_name = 'dragino_json'",
        );
        cid = found[0]?.cid ?? "";
        return found.length === 1;
      },
      15_000,
      "Dragino raw message",
    );
    type Stored = { uid: number; body_cid: string; json_msg: Row["json_msg"]; raw: string | null };
    const ofDevice = () =>
      sql<Stored>(
        `select uid, json_msg->>'broker_correlation_id' as body_cid, json_msg,
                raw_correlation_id::text as raw
         from physical_timeseries p
         where physical_uid = (select physical_uid from raw_messages where correlation_id = $1)
         order by ts`,
        [cid],
      );
    let original: Stored[] = [];
    await waitFor(
      async () => {
        original = await ofDevice();
        return original.length > 1;
      },
      15_000,
      "Dragino rows",
    );
    // Records carry ids derived from the device and their time, not the raw message's.
    expect(original.some((r) => r.body_cid !== cid)).toBe(true);
    expect(original.every((r) => r.raw === cid)).toBe(true);
    // As before migration 013 (no link), with a wrong value.
    await sql(
      "update physical_timeseries set raw_correlation_id = null where raw_correlation_id = $1",
      [cid],
    );
    await sql(
      `update physical_timeseries set json_msg = jsonb_set(json_msg, '{timeseries,0,value}', '-1')
       where uid = $1`,
      [original[0]!.uid],
    );

    const logger = createLogger({ level: "silent" });
    const normaliser = await openRawNormaliser({ config, db: db.handle.db, logger });
    const publisher = new ConfirmedPublisher({
      connection: system.deps.amqp,
      exchange: amqpConfig.ltsExchange,
      logger,
    });
    try {
      const summary = await replay(
        {
          db: db.handle.db,
          normaliser,
          publisher,
          route: { futureToleranceMs: 3_600_000, pastToleranceMs: undefined },
        },
        parseSelection({ correlationIds: [cid] }),
      );
      expect(summary.totals).toMatchObject({
        raw: 1,
        changed: 1,
        valuesChanged: 1,
        messagesAdded: 0,
      });
    } finally {
      await normaliser.close();
      await publisher.close();
    }
    const replaced = await ofDevice();
    expect(replaced.map((r) => [r.body_cid, r.json_msg.timeseries, r.raw])).toEqual(
      original.map((r) => [r.body_cid, r.json_msg.timeseries, cid]),
    );
  });

  it("leaves alone an uplink TTN decoded whose payload comes back from jsonb in another order", async () => {
    const body = netvoxUplink("a0a0a0a0a0a0a0f1", 1, at(30), {
      temperature: 16.46,
      humidity: 55.18,
      battery: 3.6,
    });
    expect(await deliverUplink(webhook, body)).toBe(204);
    let cid = "";
    await waitFor(
      async () => {
        const [row] = await sql<{ cid: string }>(
          `select raw_correlation_id::text as cid from physical_timeseries p
           join raw_messages r on r.correlation_id = p.raw_correlation_id
           where r.json_msg->'end_device_ids'->>'dev_eui' = 'a0a0a0a0a0a0a0f1'`,
        );
        cid = row?.cid ?? "";
        return row !== undefined;
      },
      15_000,
      "the uplink stored",
    );
    const logger = createLogger({ level: "silent" });
    const normaliser = await openRawNormaliser({ config, db: db.handle.db, logger });
    try {
      const summary = await replay(
        {
          db: db.handle.db,
          normaliser,
          publisher: {
            publish: (messages) =>
              messages.length === 0
                ? Promise.resolve()
                : Promise.reject(new Error("nothing should be published")),
          },
          route: { futureToleranceMs: 3_600_000, pastToleranceMs: undefined },
        },
        parseSelection({ correlationIds: [cid] }),
      );
      expect(summary).toMatchObject({ published: 0, totals: { raw: 1, unchanged: 1 } });
    } finally {
      await normaliser.close();
    }
  });

  it("refuses what it cannot replay with one line", async () => {
    const res = await runBroker(["replay", "--source", "ict_mqtt"], { database: db.name });
    expect(res.code).not.toBe(0);
    expect(res.stderr.trim().split("\n")).toHaveLength(1);
    expect(res.stderr).toMatch(/cannot replay source ict_mqtt/);
    const none = await runBroker(["replay"], { database: db.name });
    expect(none.stderr).toMatch(/select what to replay/);
  });
});
