import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { createLogger } from "../../src/core/logger.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, fixtures), "utf8");
type Body = Record<string, unknown> & {
  end_device_ids: Record<string, unknown>;
  uplink_message: Record<string, unknown>;
};
const netvox = JSON.parse(fixture("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json")) as Body;
const simulated = JSON.parse(fixture("ttn_webhook_simulated_uplink_2022-01-23.json")) as Body;
const decodersDir = fileURLToPath(new URL("../fixtures/ttn-decoders/", import.meta.url));

const SECRET = "correct horse battery staple";
const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + TTN_DEAD_LETTER_QUEUE;
let db: TestDatabase;
let system: RunningSystem;
let base: string;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

/** An uplink of `app` from a device of its own (`eui`), TTN's decoded_payload removed. */
function uplink(app: string, eui: string, changes: Record<string, unknown> = {}): Body {
  const { decoded_payload: _d, ...message } = netvox.uplink_message;
  return {
    ...netvox,
    end_device_ids: {
      ...netvox.end_device_ids,
      device_id: `dev-${eui}`,
      dev_eui: eui,
      application_ids: { application_id: app },
    },
    uplink_message: { ...message, ...changes },
  };
}

async function post(
  body: unknown,
  path = "/ttn/webhook/up",
  headers: Record<string, string> = { "x-webhook-secret": SECRET },
): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function count(where: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.handle.pool.query<{ n: number }>(
    `select count(*)::int as n from raw_messages where ${where}`,
    params,
  );
  return rows[0]!.n;
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

const bodies = (messages: amqp.GetMessage[]) =>
  messages.map((m) => JSON.parse(m.content.toString()) as Record<string, unknown>);

beforeAll(async () => {
  db = await createTestDatabase();
  // A device an operator pointed at another decoder, before the webhook started.
  await db.handle.pool.query(
    `insert into physical_devices (source_name, name, source_ids, properties)
     values ('ttn', 'echo device', $1, '{}')`,
    [
      {
        app_id: "some-app",
        dev_id: "dev-00000000000000f0",
        dev_eui: "00000000000000f0",
        decoder_name: "echo",
      },
    ],
  );
  system = await startTestSystem(
    ["ttn-webhook"],
    testConfig(db, amqpConfig, {
      TTN_WEBHOOK_SECRET: SECRET,
      TTN_DECODERS_DIR: decodersDir,
      TTN_DECODE_LOCALLY: "temphumid-netvox-r718a",
    }),
  );
  base = `http://127.0.0.1:${system.components[0]!.port!()}`;
  ({ conn, ch } = await openTestChannel());
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "ready");
});

afterAll(async () => {
  await system?.stop();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), deadQueue]);
  await db?.drop();
});

describe("TTN webhook authentication", () => {
  it("refuses requests without the secret with 401 and stores nothing", async () => {
    const before = await count("true");
    for (const headers of [{}, { "x-webhook-secret": "wrong" }] as Record<string, string>[]) {
      const res = await post(netvox, "/ttn/webhook/up", headers);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: "unauthorized" });
    }
    expect((await post("not even json", "/ttn/webhook/join", {})).status).toBe(401);
    expect(await count("true")).toBe(before);
    // Health and metrics stay open.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});

describe("TTN webhook in production (BROKER_ENV=production)", () => {
  it("refuses to start without credentials", async () => {
    const config = testConfig(db, amqpConfig, { BROKER_ENV: "production" });
    await expect(startTestSystem(["ttn-webhook"], config)).rejects.toThrow(
      /TTN_WEBHOOK_SECRET: the webhook needs credentials \(BROKER_ENV=production\)/,
    );
  });

  it("starts open only when TTN_WEBHOOK_AUTH=none says so, and warns at start", async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: "warn", destination: { write: (l) => lines.push(l) } });
    const config = testConfig(db, amqpConfig, {
      BROKER_ENV: "production",
      TTN_WEBHOOK_AUTH: "none",
    });
    const open = await startTestSystem(["ttn-webhook"], config, { logger });
    try {
      const warnings = lines
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        .filter((l) => l.level === 40 && l.msg.includes("UNAUTHENTICATED by choice"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.msg).toContain("TTN_WEBHOOK_AUTH=none, BROKER_ENV=production");
      const url = `http://127.0.0.1:${open.components[0]!.port!()}/ttn/webhook/up`;
      const body = JSON.stringify(uplink("prod-open-app", "00000000000000d1"));
      expect((await fetch(url, { method: "POST", body })).status).toBe(204);
      await drain(mapperQueue);
    } finally {
      await open.stop();
    }
  });
});

describe("TTN local decoding", () => {
  it("prefers the local decoder for a configured application, and says which one ran", async () => {
    const body = {
      ...netvox,
      uplink_message: { ...netvox.uplink_message, decoded_payload: { battery: 0 } },
    };
    expect((await post(body)).status).toBe(204);
    const [message] = bodies(await drain(mapperQueue));
    expect(message).toMatchObject({
      timestamp: "2022-12-16T01:09:57.515920941Z",
      timeseries: [
        { name: "battery", value: 3.6 },
        { name: "humidity", value: 55.18 },
        { name: "temperature", value: 16.46 },
      ],
      decoder: { name: "temphumid-netvox-r718a" },
    });
  });

  it("uses a device's decoder_name, and gives it fPort 0 when TTN omitted f_port", async () => {
    const {
      f_port: _p,
      f_cnt: _c,
      ...message
    } = uplink("some-app", "00000000000000f0").uplink_message;
    const body = { ...uplink("some-app", "00000000000000f0"), uplink_message: message };
    expect((await post(body)).status).toBe(204);
    const [published] = bodies(await drain(mapperQueue));
    expect(published!.timeseries).toContainEqual({ name: "fPort", value: 0 });
    expect(published!.decoder).toEqual({ name: "echo", warnings: ["echo decoder"] });
  });

  it("answers 204 for an uplink whose decoder fails, keeps it raw and dead-letters it with the reason, without harming the others", async () => {
    const good = [1, 2, 3].map((i) => uplink("temphumid-netvox-r718a", `00000000000000a${i}`));
    const looping = uplink("infinite-loop", "00000000000000b1");
    const throwing = uplink("throws", "00000000000000b2");
    const answers = await Promise.all([looping, ...good, throwing].map((b) => post(b)));
    expect(answers.map((r) => r.status)).toEqual([204, 204, 204, 204, 204]);
    const published = bodies(await drain(mapperQueue));
    expect(published).toHaveLength(3);
    await waitFor(
      async () => (await ch.checkQueue(deadQueue)).messageCount === 2,
      10_000,
      "dead letters",
    );
    const dead = await drain(deadQueue);
    const reasons = dead.map((m) => m.properties.headers?.["x-broker-reason"] as string).sort();
    expect(reasons).toEqual(["decoder_failed", "decoder_timeout"]);
    const thrown = dead.find(
      (m) => m.properties.headers?.["x-broker-reason"] === "decoder_failed",
    )!;
    expect(String(thrown.properties.headers?.["x-broker-error"])).toContain(
      "cannot decode 11 bytes",
    );
    expect(JSON.parse(thrown.content.toString())).toEqual(throwing);
    expect(
      await count(
        "json_msg->'end_device_ids'->>'dev_eui' in ('00000000000000b1', '00000000000000b2')",
      ),
    ).toBe(2);
    // The device sent something: it exists and was seen, even though its payload is unusable.
    const { rows } = await db.handle.pool.query<{ last_seen: string }>(
      "select last_seen from physical_devices where source_ids->>'dev_eui' = '00000000000000b1'",
    );
    expect(rows[0]!.last_seen).toBe("2022-12-16T01:09:57.515921+00:00");
  });

  it("publishes nothing for an undecoded uplink with no decoder file, as IoTa", async () => {
    expect((await post(uplink("no-such-decoder", "00000000000000c1"))).status).toBe(204);
    expect(await drain(mapperQueue)).toEqual([]);
    expect(await drain(deadQueue)).toEqual([]);
  });
});

describe("TTN simulated uplinks and other message types", () => {
  it("publishes a simulated uplink flagged as simulated", async () => {
    const body = { ...netvox, simulated: true };
    expect((await post(body)).status).toBe(204);
    const [message] = bodies(await drain(mapperQueue));
    expect(message!.simulated).toBe(true);
  });

  it("stores every message type raw, on any path under /ttn/webhook", async () => {
    const ids = { end_device_ids: simulated.end_device_ids, received_at: "2024-03-01T00:00:00Z" };
    const events: [string, string, unknown][] = [
      ["join", "join_accept", JSON.parse(fixture("ttn_v3_join_accept_example.json"))],
      ["downlink-ack", "downlink_ack", JSON.parse(fixture("ttn_v3_downlink_ack_example.json"))],
      [
        "location",
        "location_solved",
        { ...ids, location_solved: { location: { latitude: -33, longitude: 151 } } },
      ],
      ["service", "service_data", { ...ids, service_data: { data: { battery: 90 } } }],
      [
        "downlink-failed",
        "downlink_failed",
        { ...ids, downlink_failed: { downlink: {}, error: { code: 3 } } },
      ],
    ];
    for (const [path, key, body] of events) {
      const before = await count("true");
      expect(await count("json_msg ? $1", [key])).toBe(0);
      expect((await post(body, `/ttn/webhook/${path}`)).status).toBe(204);
      // Exactly this body, once, as TTN sent it, and nothing else.
      expect(await count("json_msg ? $1", [key])).toBe(1);
      expect(await count("source_name = 'ttn' and json_msg = $1::jsonb", [body])).toBe(1);
      expect(await count("true")).toBe(before + 1);
    }
    expect(await drain(mapperQueue)).toEqual([]);
  });
});

describe("TTN webhook with Basic credentials and simulated uplinks turned off", () => {
  it("checks Basic credentials, and keeps simulated uplinks raw only", async () => {
    const other = await startTestSystem(
      ["ttn-webhook"],
      testConfig(db, amqpConfig, {
        TTN_WEBHOOK_BASIC_USER: "tts",
        TTN_WEBHOOK_BASIC_PASSWORD: "s3cret",
        TTN_ACCEPT_SIMULATED: "false",
      }),
    );
    try {
      const url = `http://127.0.0.1:${other.components[0]!.port!()}/ttn/webhook/up`;
      const auth = (user: string, password: string) => ({
        authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
      });
      const body = JSON.stringify({ ...simulated, received_at: "2024-04-01T00:00:00Z" });
      const refused = await fetch(url, { method: "POST", headers: auth("tts", "nope"), body });
      expect(refused.status).toBe(401);
      expect(refused.headers.get("www-authenticate")).toMatch(/^Basic/);
      expect(await count("ts = '2024-04-01T00:00:00Z'")).toBe(0);
      const res = await fetch(url, { method: "POST", headers: auth("tts", "s3cret"), body });
      expect(res.status).toBe(204);
      expect(await count("ts = '2024-04-01T00:00:00Z'")).toBe(1);
      const devices = await db.handle.pool.query(
        "select 1 from physical_devices where source_ids->>'dev_id' = 'atmega328-v1'",
      );
      expect(devices.rows).toHaveLength(0);
      expect(await drain(mapperQueue)).toEqual([]);
    } finally {
      await other.stop();
    }
  });
});
