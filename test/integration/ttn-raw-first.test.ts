import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { netvoxUplink } from "../helpers/ttn.js";

/**
 * Issue 13, "raw first, really": hostile TTN bodies are all kept raw, answered 4xx with a short
 * reason in our words, dead-lettered once and counted once; nothing published lacks a raw row.
 */

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + TTN_DEAD_LETTER_QUEUE;
let db: TestDatabase;
let system: RunningSystem;
let base: string;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

async function post(body: unknown): Promise<Response> {
  return fetch(`${base}/ttn/webhook/up`, {
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

async function drain(queue: string): Promise<amqp.GetMessage[]> {
  const out: amqp.GetMessage[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (m === false) {
      return out;
    }
    out.push(m);
  }
}

interface Published {
  broker_correlation_id: string;
  timeseries: { name: string; value: unknown }[];
}

const published = async (): Promise<Published[]> =>
  (await drain(mapperQueue)).map((m) => JSON.parse(m.content.toString()) as Published);

/** Dead letters by correlation id: reason and error headers. */
async function deadLetters(): Promise<Map<string, { reason: string; error: string }>> {
  const out = new Map<string, { reason: string; error: string }>();
  for (const m of await drain(deadQueue)) {
    out.set(String(m.properties.correlationId), {
      reason: String(m.properties.headers?.["x-broker-reason"]),
      error: String(m.properties.headers?.["x-broker-error"]),
    });
  }
  return out;
}

async function deadLetteredCount(reason: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("broker_messages_dead_lettered_total{") &&
        l.includes('component="ttn"') &&
        l.includes(`reason="${reason}"`),
    );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

beforeAll(async () => {
  db = await createTestDatabase();
  system = await startTestSystem(["ttn-webhook"], testConfig(db, amqpConfig));
  base = `http://127.0.0.1:${system.components[0]!.port!()}`;
  ({ conn, ch } = await openTestChannel());
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "ready");
  await waitFor(
    async () => {
      try {
        await ch.checkQueue(deadQueue);
        return true;
      } catch {
        ch = await conn.createChannel();
        return false;
      }
    },
    15_000,
    "dead-letter queue",
  );
});

afterAll(async () => {
  await system?.stop();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), deadQueue]);
  await db?.drop();
});

describe("TTN bodies that PostgreSQL or uuid would refuse are kept raw and answered 4xx", () => {
  it("a lone surrogate in device_id, application_id or received_at: 400, raw text kept exactly, dead-lettered", async () => {
    await deadLetters();
    const good = netvoxUplink("0000000000001301", 1, "2024-05-01T10:00:00Z");
    const texts = [
      JSON.stringify(good).replace('"dev-0000000000001301"', '"\\ud800x"'),
      JSON.stringify(good).replace('"temphumid-netvox-r718a"', '"temphumid\\udfffnetvox"'),
      JSON.stringify(good).replace('"2024-05-01T10:00:00Z"', '"2024-05-01T10:00:00Z\\ud800"'),
      // in a value nobody reads: JSON.parse takes it, jsonb refuses it
      JSON.stringify({ ...good, note: "x" }).replace('"note":"x"', '"note":"a\\udc00b"'),
    ];
    const answers = await Promise.all(texts.map((t) => post(t)));
    expect(answers.map((r) => r.status)).toEqual([400, 400, 400, 400]);
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as {
      error: string;
      message: string;
    }[];
    expect(bodies.map((b) => b.error)).toEqual(Array(4).fill("lone_surrogate"));
    expect(bodies[0]!.message).toContain("end_device_ids.device_id");
    expect(bodies[3]!.message).toContain("note");
    for (const t of texts) {
      const rows = await sql<{ json_msg: unknown; text_msg: string }>(
        "select json_msg, text_msg from raw_messages where text_msg = $1",
        [t],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]!.json_msg).toBeNull();
    }
    await waitFor(async () => (await ch.checkQueue(deadQueue)).messageCount === 4, 10_000);
    const dead = await deadLetters();
    expect([...dead.values()].map((d) => d.reason)).toEqual(Array(4).fill("lone_surrogate"));
    expect(await published()).toEqual([]);
  });

  it("timestamps PostgreSQL refuses (+16:00, +99:99, a comma fraction) are refused at the door, kept raw, and the answer names the field, not the value", async () => {
    const times = [
      "2024-05-01T10:00:00+16:00",
      "2024-05-01T10:00:00+99:99",
      "2024-05-01T10:00:00,5Z",
      `2024-05-01T10:00:00Z${"9".repeat(200_000)}`,
    ];
    const bodies = times.map((t, i) => netvoxUplink(`00000000000014${10 + i}`, 1, t));
    const answers = await Promise.all(bodies.map((b) => post(b)));
    expect(answers.map((r) => r.status)).toEqual([400, 400, 400, 400]);
    for (const r of answers) {
      const text = await r.text();
      expect(text.length).toBeLessThan(300);
      expect(text).not.toContain("2024-05-01");
      const body = JSON.parse(text) as { error: string; message: string };
      expect(body.error).toBe("invalid_timestamp");
      expect(body.message).toContain("uplink_message.received_at");
    }
    const rows = await sql<{ dev: string; ts: string }>(
      "select json_msg->'end_device_ids'->>'dev_eui' as dev, ts::text from raw_messages where json_msg->'end_device_ids'->>'dev_eui' like '00000000000014%'",
    );
    expect(rows.map((r) => r.dev).sort()).toEqual(
      bodies.map((b) => (b.end_device_ids as { dev_eui: string }).dev_eui).sort(),
    );
    expect(await published()).toEqual([]);
    await deadLetters();
  });

  it("keeps the text of a body whose numbers JSON.parse rounds (12345678901234567890)", async () => {
    const text = JSON.stringify(
      netvoxUplink("0000000000001501", 1, "2024-05-01T10:00:00Z", { n: 1 }),
    ).replace('"n":1', '"n":12345678901234567890');
    expect((await post(text)).status).toBe(204);
    const [row] = await sql<{ text_msg: string | null; json_msg: unknown }>(
      "select text_msg, json_msg from raw_messages where json_msg->'end_device_ids'->>'dev_eui' = '0000000000001501'",
    );
    expect(row!.text_msg).toBe(text);
    expect(row!.json_msg).not.toBeNull();
    await published();
  });

  it("a __proto__ key in decoded_payload is published as a point like any other", async () => {
    const text = JSON.stringify(
      netvoxUplink("0000000000001601", 1, "2024-05-01T10:00:00Z", { a: 1, b: 2 }),
    ).replace('"b":2', '"__proto__":2');
    expect((await post(text)).status).toBe(204);
    const [message] = await published();
    expect(message!.timeseries).toEqual([
      { name: "a", value: 1 },
      { name: "__proto__", value: 2 },
    ]);
  });
});

describe("a raw row the database refuses all the same", () => {
  it("is stored again as text, and the uplink goes on from there", async () => {
    // A constraint of this test's own stands for whatever our checks do not foresee.
    await sql(
      "alter table raw_messages add constraint test_no_json_poison check (not coalesce(json_msg ? 'poison', false))",
    );
    try {
      const text = JSON.stringify({
        ...netvoxUplink("0000000000001a01", 1, "2024-05-01T10:00:00Z", { t: 7 }),
        poison: 1,
      });
      expect((await post(text)).status).toBe(204);
      const rows = await sql<{ json_msg: unknown; text_msg: string }>(
        "select json_msg, text_msg from raw_messages where text_msg like '%0000000000001a01%'",
      );
      expect(rows).toEqual([{ json_msg: null, text_msg: text }]);
      const [message] = await published();
      expect(message!.timeseries).toEqual([{ name: "t", value: 7 }]);
    } finally {
      await sql("alter table raw_messages drop constraint test_no_json_poison");
    }
  });
});

describe("two bodies for one uplink", () => {
  it("a retry of the same body keeps its id; a different body gets its own id and raw row, both flagged conflicting; every published id has a raw row", async () => {
    const first = netvoxUplink("0000000000001701", 9, "2024-05-01T10:00:00Z", { t: 1 });
    const other = netvoxUplink("0000000000001701", 9, "2024-05-01T10:00:00Z", { t: 2 });
    expect((await post(first)).status).toBe(204);
    expect((await post(JSON.stringify(first, null, 2))).status).toBe(204); // a retry, spaced
    expect((await post(other)).status).toBe(204);
    const rows = await sql<{ correlation_id: string; conflicting: boolean; t: number }>(
      "select correlation_id, conflicting, (json_msg->'uplink_message'->'decoded_payload'->>'t')::int as t from raw_messages where json_msg->'end_device_ids'->>'dev_eui' = '0000000000001701' order by uid",
    );
    expect(rows.map((r) => [r.t, r.conflicting])).toEqual([
      [1, true],
      [2, true],
    ]);
    const messages = await published();
    expect(messages).toHaveLength(3);
    const ids = new Set(messages.map((m) => m.broker_correlation_id));
    expect(ids).toEqual(new Set(rows.map((r) => r.correlation_id)));
    const valueOf = new Map(messages.map((m) => [m.broker_correlation_id, m.timeseries[0]!.value]));
    for (const r of rows) {
      expect(valueOf.get(r.correlation_id)).toBe(r.t);
    }
  });
});

describe("a sighting from the future", () => {
  it("does not freeze the physical device: last_seen is capped at now and the next uplink still becomes last_msg", async () => {
    const before = Date.now();
    expect((await post(netvoxUplink("0000000000001801", 1, "2999-01-01T00:00:00Z"))).status).toBe(
      204,
    );
    const now = new Date().toISOString();
    expect((await post(netvoxUplink("0000000000001801", 2, now))).status).toBe(204);
    const [pd] = await sql<{ last_seen: Date; f_cnt: number }>(
      "select last_seen, (properties->'last_msg'->'uplink_message'->>'f_cnt')::int as f_cnt from physical_devices where source_ids->>'dev_eui' = '0000000000001801'",
    );
    expect(pd!.f_cnt).toBe(2);
    expect(new Date(pd!.last_seen).getTime()).toBeGreaterThanOrEqual(before);
    expect(new Date(pd!.last_seen).getTime()).toBeLessThanOrEqual(Date.now());
    await published();
  });
});

describe("a rejection in a batch that is retried item by item", () => {
  it("is dead-lettered, logged and counted once; the culprit's 400 says what is wrong in our words, not PostgreSQL's", async () => {
    // The database refuses one device (a check constraint of this test's own): its batch fails
    // after the other items were normalised, and is retried item by item.
    await sql(
      "alter table physical_devices add constraint test_no_poison check (name <> 'dev-00000000000019ff')",
    );
    await deadLetters();
    const countBefore = await deadLetteredCount("not_ttn_uplink");
    const pairs = 6;
    const bad = {
      ...netvoxUplink("0000000000001900", 1, "2024-05-01T10:00:00Z"),
      uplink_message: 7,
    };
    const poison = netvoxUplink("00000000000019ff", 1, "2024-05-01T10:00:00Z");
    const answers = await Promise.all(
      Array.from({ length: pairs }, (_, i) => [
        post({ ...bad, n: i }),
        post({ ...poison, n: i }),
      ]).flat(),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(pairs * 2).fill(400));
    const bodies = (await Promise.all(answers.map((r) => r.text()))).filter((_, i) => i % 2 === 1);
    for (const text of bodies) {
      expect(text).not.toMatch(/constraint|violates|test_no_poison/);
      expect(JSON.parse(text)).toEqual({
        error: "database_rejected_23514",
        message: "the database refused the message's content",
      });
    }
    expect(await deadLetteredCount("not_ttn_uplink")).toBe(countBefore + pairs);
    await waitFor(async () => (await ch.checkQueue(deadQueue)).messageCount === pairs * 2, 10_000);
    const dead = await deadLetters();
    expect(dead.size).toBe(pairs * 2);
    // The dead letter keeps PostgreSQL's words for the operator.
    expect([...dead.values()].some((d) => d.error.includes("test_no_poison"))).toBe(true);
    await sql("alter table physical_devices drop constraint test_no_poison");
  });
});
