import { readFileSync } from "node:fs";

import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { QUEUE_NAMES } from "../../src/bus/topology.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { ttnWebhookQueues } from "../helpers/ttn.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, fixtures), "utf8");
const netvoxText = fixture("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json");
const netvox = JSON.parse(netvoxText) as Record<string, unknown> & {
  uplink_message: Record<string, unknown>;
};

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
let db: TestDatabase;
let system: RunningSystem;
let base: string;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

function uplink(
  devEui: string,
  fCnt: number,
  receivedAt: string,
  payload: Record<string, unknown> = { t: 1 },
) {
  return {
    ...netvox,
    end_device_ids: {
      ...(netvox.end_device_ids as object),
      dev_eui: devEui,
      device_id: `dev-${devEui}`,
    },
    uplink_message: {
      ...netvox.uplink_message,
      f_cnt: fCnt,
      received_at: receivedAt,
      decoded_payload: payload,
    },
  };
}

async function post(body: unknown, path = "/ttn/webhook/up"): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function count(where: string, params: unknown[] = []): Promise<number> {
  const [row] = await sql<{ n: string }>(
    `select count(*) as n from raw_messages where ${where}`,
    params,
  );
  return Number(row!.n);
}

async function drainPhysical(): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (;;) {
    const m = await ch.get(mapperQueue, { noAck: true });
    if (m === false) {
      return out;
    }
    out.push(JSON.parse(m.content.toString()) as Record<string, unknown>);
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  // The webhook alone: its messages wait in the mapper's queue, where the test reads them.
  system = await startTestSystem(["ttn-webhook"], testConfig(db, amqpConfig));
  base = `http://127.0.0.1:${system.components[0]!.port!()}`;
  ({ conn, ch } = await openTestChannel());
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "ready");
});

afterAll(async () => {
  await system?.stop();
  await conn?.close();
  await cleanupAmqp(amqpConfig, ttnWebhookQueues(amqpConfig));
  await db?.drop();
});

describe("TTN webhook against PostgreSQL and RabbitMQ", () => {
  it("stores the raw uplink, creates the device and publishes the normalised message before answering 204", async () => {
    const res = await post(netvoxText);
    expect(res.status).toBe(204);
    const [raw] = await sql<{
      source_name: string;
      correlation_id: string;
      ts: string;
      json_msg: unknown;
      physical_uid: number;
    }>("select source_name, correlation_id, ts, json_msg, physical_uid from raw_messages");
    expect(raw!.source_name).toBe("ttn");
    expect(raw!.json_msg).toEqual(netvox);
    expect(raw!.ts).toBe("2022-12-16T01:09:57.515921+00:00");
    const [pd] = await sql<{
      uid: number;
      name: string;
      source_ids: unknown;
      last_seen: string;
      properties: Record<string, unknown>;
    }>("select uid, name, source_ids, last_seen, properties from physical_devices");
    expect(pd!.name).toBe("eui-00137a100000bbd2");
    expect(pd!.source_ids).toEqual({
      app_id: "temphumid-netvox-r718a",
      dev_id: "eui-00137a100000bbd2",
      dev_eui: "00137a100000bbd2",
    });
    expect(pd!.properties.creation_correlation_id).toBe(raw!.correlation_id);
    expect(raw!.physical_uid).toBe(pd!.uid);
    const published = await drainPhysical();
    expect(published).toEqual([
      {
        broker_correlation_id: raw!.correlation_id,
        p_uid: pd!.uid,
        timestamp: "2022-12-16T01:09:57.515920941Z",
        timeseries: [
          { name: "battery", value: 3.6 },
          { name: "humidity", value: 55.18 },
          { name: "temperature", value: 16.46 },
        ],
      },
    ]);
  });

  it("stores and forwards the same uplink once however often it is posted", async () => {
    const body = uplink("00000000000000a1", 7, "2023-05-01T00:00:00.123456789Z");
    const answers = await Promise.all([post(body), post(body), post(body)]);
    expect(answers.map((r) => r.status)).toEqual([204, 204, 204]);
    const raws = await sql(
      "select 1 from raw_messages where json_msg->'end_device_ids'->>'dev_eui' = '00000000000000a1'",
    );
    expect(raws).toHaveLength(1);
    const devices = await sql(
      "select 1 from physical_devices where source_ids->>'dev_eui' = '00000000000000a1'",
    );
    expect(devices).toHaveLength(1);
    // Republished (the sender may have missed our answer), but with one correlation id, so the
    // mapper's msg_key stores it once.
    const published = await drainPhysical();
    expect(new Set(published.map((m) => m.broker_correlation_id)).size).toBe(1);
  });

  it("stores a known device's raw row already linked (no update), and links a repeated uplink whose first copy was not", async () => {
    await sql(`
      create table raw_updates (correlation_id uuid);
      create function note_raw_update() returns trigger language plpgsql as $$
        begin insert into raw_updates values (new.correlation_id); return new; end $$;
      create trigger note_raw_update before update on raw_messages
        for each row execute function note_raw_update()`);
    try {
      const eui = "00000000000000b7";
      const linkOf = async (fCnt: number) =>
        sql<{ physical_uid: number | null; correlation_id: string }>(
          `select physical_uid, correlation_id from raw_messages
           where json_msg->'end_device_ids'->>'dev_eui' = $1
             and (json_msg->'uplink_message'->>'f_cnt')::int = $2`,
          [eui, fCnt],
        );
      // A new device: its first raw row is linked once the device exists (one update).
      expect((await post(uplink(eui, 1, "2023-06-01T00:00:01Z"))).status).toBe(204);
      const [first] = await linkOf(1);
      const [device] = await sql<{ uid: number }>(
        "select uid from physical_devices where source_ids->>'dev_eui' = $1",
        [eui],
      );
      expect(first!.physical_uid).toBe(device!.uid);
      expect(await sql("select 1 from raw_updates")).toHaveLength(1);

      // Known now: the next uplink's raw row is inserted linked and never updated.
      expect((await post(uplink(eui, 2, "2023-06-01T00:00:02Z"))).status).toBe(204);
      const [second] = await linkOf(2);
      expect(second!.physical_uid).toBe(device!.uid);
      expect(await sql("select 1 from raw_updates")).toHaveLength(1);

      // A first copy stored but never linked (the process died between the two): posting the
      // uplink again keeps that first row, and links it.
      await sql("update raw_messages set physical_uid = null where correlation_id = $1", [
        second!.correlation_id,
      ]);
      expect((await post(uplink(eui, 2, "2023-06-01T00:00:02Z"))).status).toBe(204);
      const again = await linkOf(2);
      expect(again).toEqual([
        { physical_uid: device!.uid, correlation_id: second!.correlation_id },
      ]);
    } finally {
      await sql(`
        drop trigger note_raw_update on raw_messages;
        drop function note_raw_update();
        drop table raw_updates`);
      await drainPhysical();
    }
  });

  it("follows registry changes to a device it has seen", async () => {
    const eui = "00000000000000c7";
    expect((await post(uplink(eui, 1, "2023-07-01T00:00:00Z"))).status).toBe(204);
    const [before] = await sql<{ uid: number }>(
      "select uid from physical_devices where source_ids->>'dev_eui' = $1",
      [eui],
    );
    // An operator gives the device other source ids: the next uplink is not its any more.
    await sql(
      'update physical_devices set source_ids = source_ids || \'{"dev_eui": "retired"}\' where uid = $1',
      [before!.uid],
    );
    expect((await post(uplink(eui, 2, "2023-07-01T00:01:00Z"))).status).toBe(204);
    const [after] = await sql<{ uid: number }>(
      "select uid from physical_devices where source_ids->>'dev_eui' = $1",
      [eui],
    );
    expect(after!.uid).not.toBe(before!.uid);
    const published = await drainPhysical();
    expect(published.map((m) => m.p_uid)).toEqual([before!.uid, after!.uid]);
    // And the new device is the one from then on.
    expect((await post(uplink(eui, 3, "2023-07-01T00:02:00Z"))).status).toBe(204);
    expect((await drainPhysical()).map((m) => m.p_uid)).toEqual([after!.uid]);
  });

  it("keeps operator-added source_ids keys and never moves last_seen backwards", async () => {
    await post(uplink("00000000000000b2", 1, "2023-06-01T00:00:00Z"));
    await sql(
      "update physical_devices set source_ids = source_ids || '{\"decoder_name\": \"custom\"}' where source_ids->>'dev_eui' = '00000000000000b2'",
    );
    expect((await post(uplink("00000000000000b2", 2, "2023-05-01T00:00:00Z"))).status).toBe(204);
    const [pd] = await sql<{
      source_ids: Record<string, unknown>;
      last_seen: string;
      properties: { last_msg: { uplink_message: { f_cnt: number } } };
    }>(
      "select source_ids, last_seen, properties from physical_devices where source_ids->>'dev_eui' = '00000000000000b2'",
    );
    expect(pd!.source_ids.decoder_name).toBe("custom");
    expect(pd!.last_seen).toBe("2023-06-01T00:00:00+00:00");
    expect(pd!.properties.last_msg.uplink_message.f_cnt).toBe(1);
    await drainPhysical();
  });

  it("answers 400 with a reason for bodies that are not uplinks, and keeps them raw", async () => {
    const before = (await sql("select 1 from raw_messages")).length;
    const notJson = await post("this is { not json");
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: "invalid_json" });
    const join = await post(fixture("ttn_v3_join_accept_example.json"));
    expect(join.status).toBe(400);
    expect(((await join.json()) as { message: string }).message).toContain("join_accept");
    const noIds = await post({ uplink_message: { decoded_payload: { a: 1 } } });
    expect(noIds.status).toBe(400);
    expect(((await noIds.json()) as { message: string }).message).toContain("end_device_ids");
    const rows = await sql<{ text_msg: string | null }>(
      "select text_msg from raw_messages order by uid",
    );
    expect(rows.length).toBe(before + 3);
    expect(rows.some((r) => r.text_msg === "this is { not json")).toBe(true);
    expect(await drainPhysical()).toEqual([]);
  });

  it("accepts every TTN message type on its own path and stores it raw", async () => {
    // A join accept of its own: the recorded one was already stored by the /up test above.
    const recorded = JSON.parse(fixture("ttn_v3_join_accept_example.json")) as {
      end_device_ids: Record<string, unknown>;
    };
    const join = {
      ...recorded,
      end_device_ids: { ...recorded.end_device_ids, device_id: "join-only-device" },
    };
    const before = (await sql("select 1 from raw_messages")).length;
    const res = await post(join, "/ttn/webhook/join");
    expect(res.status).toBe(204);
    const rows = await sql<{ source_name: string; json_msg: unknown }>(
      "select source_name, json_msg from raw_messages where json_msg->'end_device_ids'->>'device_id' = 'join-only-device'",
    );
    expect(rows).toEqual([{ source_name: "ttn", json_msg: join }]);
    expect((await sql("select 1 from raw_messages")).length).toBe(before + 1);
    expect(await drainPhysical()).toEqual([]);
  });

  it("isolates a body PostgreSQL cannot store from the rest of its batch", async () => {
    const good = uplink("00000000000000c3", 1, "2023-07-01T00:00:00Z");
    const hostile = {
      ...good,
      note: "nul \u0000 inside",
      end_device_ids: {
        ...good.end_device_ids,
        dev_eui: "00000000000000c4",
        device_id: "dev-00000000000000c4",
      },
    };
    const [a, b] = await Promise.all([post(good), post(hostile)]);
    expect(a.status).toBe(204);
    expect(b.status).toBe(400);
    expect(((await b.json()) as { error: string }).error).toBe("nul_character");
    // Kept raw as text (jsonb cannot hold \u0000), with its reason in the dead-letter queue.
    expect(await count("text_msg like '%00000000000000c4%'")).toBe(1);
    await drainPhysical();
  });

  it("bad input: truncated, non-JSON, wrong-typed, oversized and hostile bodies are kept raw and dead-lettered with a reason, and never hold up a good uplink", async () => {
    const deadQueue = amqpConfig.queuePrefix + TTN_DEAD_LETTER_QUEUE;
    await ch.purgeQueue(deadQueue);
    await drainPhysical();
    const good = uplink("00000000000000e1", 1, "2023-09-01T00:00:00Z");
    const wrongTyped = {
      ...good,
      uplink_message: { ...good.uplink_message, f_cnt: "seven", decoded_payload: [1, 2] },
    };
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const cases: [string, number, string][] = [
      [JSON.stringify(good).slice(0, 300), 400, "invalid_json"],
      ["<html><body>502 Bad Gateway</body></html>", 400, "invalid_json"],
      [JSON.stringify(wrongTyped), 400, "not_ttn_uplink"],
      [JSON.stringify({ big: "x".repeat(1_100_000) }), 413, "too_large"],
      [deep, 400, "too_deeply_nested"],
    ];
    const answers = await Promise.all([...cases.map(([body]) => post(body)), post(good)]);
    expect(answers.map((r) => r.status)).toEqual([...cases.map((c) => c[1]), 204]);
    const errors = await Promise.all(answers.slice(0, -1).map(async (r) => r.json()));
    expect(errors.map((e) => (e as { error: string }).error)).toEqual(cases.map((c) => c[2]));
    const published = await drainPhysical();
    expect(published.map((m) => m.timestamp)).toEqual(["2023-09-01T00:00:00Z"]);
    // Kept raw: the oversized body's first TTN_WEBHOOK_MAX_BODY bytes, the others whole.
    expect(await count("text_msg = $1", [cases[0]![0]])).toBe(1);
    expect(await count("text_msg = $1", [cases[1]![0]])).toBe(1);
    expect(await count("json_msg->'uplink_message'->>'f_cnt' = 'seven'")).toBe(1);
    expect(await count('length(text_msg) = 1048576 and text_msg like \'{"big":"xxx%\'')).toBe(1);
    expect(await count("text_msg = $1", [deep])).toBe(1);
    await waitFor(
      async () => (await ch.checkQueue(deadQueue)).messageCount === cases.length,
      10_000,
      "dead letters",
    );
    const reasons: string[] = [];
    for (;;) {
      const m = await ch.get(deadQueue, { noAck: true });
      if (m === false) {
        break;
      }
      reasons.push(String(m.properties.headers?.["x-broker-reason"]));
      expect(m.properties.headers?.["x-broker-error"]).toEqual(expect.any(String));
    }
    expect(reasons.sort()).toEqual(cases.map((c) => c[2]).sort());
  });
});

describe("TTN webhook while RabbitMQ is unreachable", () => {
  // Design §5.1 as changed by issue 12: with PostgreSQL up, the raw row and the outbox row are
  // durable, so the webhook accepts (ttn-outbox.test.ts publishes them once RabbitMQ is back).
  it("answers 204 once the raw uplink and its outbox row are committed, and stays ready", async () => {
    const dead = testConfig(db, { ...amqpConfig, url: "amqp://guest:guest@127.0.0.1:1/%2F" });
    const outage = await startTestSystem(["ttn-webhook"], dead);
    try {
      const url = `http://127.0.0.1:${outage.components[0]!.port!()}`;
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const body = uplink("00000000000000d5", 1, "2023-08-01T00:00:00Z");
      const res = await fetch(`${url}/ttn/webhook/up`, {
        method: "POST",
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(204);
      const rows = await sql<{ correlation_id: string }>(
        "select correlation_id from raw_messages where json_msg->'end_device_ids'->>'dev_eui' = '00000000000000d5'",
      );
      expect(rows).toHaveLength(1);
      const waiting = await sql<{ correlation_id: string }>(
        "select correlation_id from ingest_outbox",
      );
      expect(waiting).toEqual([{ correlation_id: rows[0]!.correlation_id }]);
    } finally {
      await outage.stop();
    }
  }, 40_000);
});
