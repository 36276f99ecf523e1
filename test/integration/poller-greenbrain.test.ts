import { readFileSync } from "node:fs";

import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import {
  deadLetterQueueName,
  declareConsumerQueue,
  QUEUE_NAMES,
  topologyOptions,
} from "../../src/bus/topology.js";
import { contentHash } from "../../src/sources/pollers/ids.js";
import { VendorServer, type Answer } from "../fixtures/pollers/vendor-server.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const own = new URL("../fixtures/pollers/", import.meta.url);
const recorded = new URL("../fixtures/recorded/", import.meta.url);
const bootstrap = JSON.parse(
  readFileSync(new URL("greenbrain_bootstrap.json", own), "utf8"),
) as unknown;
const latest19640 = readFileSync(new URL("greenbrain_sensor_group_19640_latest.json", own), "utf8");
const excerpt = readFileSync(
  new URL("greenbrain_sensor_group_latest_excerpt.txt", recorded),
  "utf8",
);
const truncated = excerpt.slice(excerpt.indexOf("{"));

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + "greenbrain_ingest.dead";
const env = (vendor: VendorServer, extra: Record<string, string> = {}): Record<string, string> => ({
  GREENBRAIN_USERS: "iota@example.org",
  GREENBRAIN_PASSWORDS: "s3cret",
  GREENBRAIN_API_URL: vendor.url,
  GREENBRAIN_POLL_SECONDS: "0.2",
  POLLER_RETRY_SECONDS: "0.02",
  POLLER_RETRY_MAX_SECONDS: "0.2",
  POLLER_HTTP_TIMEOUT_SECONDS: "0.5",
  ...extra,
});

type Msg = {
  broker_correlation_id: string;
  p_uid: number;
  timestamp: string;
  timeseries: { name: string; value: unknown }[];
};

let db: TestDatabase;
let vendor: VendorServer;
let system: RunningSystem | undefined;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;
const published: Msg[] = [];

/** What the stand-in answers for each sensor group, and faults to inject before that. */
const content = new Map<number, string>();
const faults = new Map<number, Answer[]>();
const held = new Set<number>();
let token = "t1";
let logins = 0;

/** A `latest` response for sensor group `id` whose readings are at `time`. */
function latestFor(id: number, time: string, value = 40.06): string {
  const l = JSON.parse(latest19640) as {
    sensorGroup: { id: number; name: string };
    sensorTypes: Record<string, { sensors: { time: string; value: unknown }[] }>;
  };
  l.sensorGroup = { id, name: `group ${id}` };
  for (const type of Object.values(l.sensorTypes)) {
    for (const s of type.sensors) {
      s.time = time;
    }
  }
  l.sensorTypes.soilMoistureContent!.sensors[0]!.value = value;
  return JSON.stringify(l, null, 2);
}

function handle(req: {
  method: string;
  path: string;
  headers: Record<string, unknown>;
  body: string;
}): Answer {
  if (req.method === "POST" && req.path === "/auth/login") {
    const { username, password } = JSON.parse(req.body) as Record<string, string>;
    if (username !== "iota@example.org" || password !== "s3cret") {
      return { status: 401, body: { message: "bad credentials" } };
    }
    logins++;
    return { body: { token, accountId: 7 } };
  }
  if (req.headers.authorization !== `bearer ${token}`) {
    return { status: 401, body: { message: "token expired" } };
  }
  if (req.path === "/bootstrap") {
    return { body: bootstrap };
  }
  const id = Number(/^\/sensor-groups\/(\d+)\/latest$/.exec(req.path)?.[1]);
  if (held.has(id)) {
    return { hang: true };
  }
  return faults.get(id)?.shift() ?? (content.has(id) ? { body: content.get(id) } : { status: 404 });
}

async function collect(): Promise<void> {
  for (;;) {
    const m = await ch.get(mapperQueue, { noAck: true });
    if (m === false) {
      return;
    }
    published.push(JSON.parse(m.content.toString()) as Msg);
  }
}

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function uidOf(group: number): Promise<number> {
  const [row] = await sql<{ uid: number }>(
    "select uid from physical_devices where source_ids @> $1",
    [JSON.stringify({ sensor_group_id: group })],
  );
  return row!.uid;
}

async function publishedFor(group: number): Promise<Msg[]> {
  await collect();
  const uid = await uidOf(group).catch(() => -1);
  return published.filter((m) => m.p_uid === uid);
}

async function pollsDone(s: RunningSystem): Promise<number> {
  const metric = s.deps.metrics.registry.getSingleMetric("broker_poller_polls_total");
  return metric ? (await metric.get()).values.reduce((n, v) => n + v.value, 0) : 0;
}

/** Waits until `n` more polls have ended, so "nothing more was published" means something. */
async function morePolls(s: RunningSystem, n = 2): Promise<void> {
  const start = await pollsDone(s);
  await waitFor(async () => (await pollsDone(s)) >= start + n, 20_000, `${n} more polls`);
}

async function start(extra: Record<string, string> = {}): Promise<RunningSystem> {
  system = await startTestSystem(["greenbrain"], testConfig(db, amqpConfig, env(vendor, extra)));
  return system;
}

beforeAll(async () => {
  db = await createTestDatabase();
  vendor = await VendorServer.start((req) => handle(req));
  ({ conn, ch } = await openTestChannel());
  // The queue the system declares when it connects, declared here too so reading it never races.
  await declareConsumerQueue(
    ch,
    { name: mapperQueue, exchange: amqpConfig.ptsExchange },
    topologyOptions(amqpConfig),
  );
  content.set(19640, latest19640);
  content.set(19641, latestFor(19641, "2022-02-09T22:00:00.000"));
  content.set(19642, latestFor(19642, "2022-02-09T22:00:00.000"));
});

afterAll(async () => {
  await system?.stop();
  await vendor?.close();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), deadQueue]);
  await db?.drop();
});

describe("GreenBrain poller against a stand-in API, PostgreSQL and RabbitMQ", () => {
  it("logs in, publishes every sensor group once, and records progress behind the publish", async () => {
    const s = await start();
    await waitFor(async () => (await collect(), published.length >= 3), 20_000, "3 messages");
    await morePolls(s);
    await collect();
    expect(published).toHaveLength(3);
    const uid = await uidOf(19640);
    expect(published.find((m) => m.p_uid === uid)).toMatchObject({
      timestamp: "2022-02-09T22:00:00+00:00",
      timeseries: expect.arrayContaining([
        { name: "Soil Moisture Content 10cm", value: 40.06 },
        { name: "Battery", value: 12.71, timestamp: "2022-02-09T21:00:00+00:00" },
      ]),
    });
    const [device] = await sql<{
      name: string;
      source_ids: unknown;
      lat: number;
      properties: Record<string, unknown>;
    }>(
      "select name, source_ids, st_y(location) as lat, properties from physical_devices where uid = $1",
      [uid],
    );
    expect(device).toMatchObject({
      name: "A Chardonnay heavy Enviropo ",
      source_ids: {
        sensor_group_id: 19640,
        system_id: 1896,
        station_id: 9889,
        station_name: "A Chard heavy",
      },
      lat: -34.2868,
    });
    expect(device!.properties.creation_correlation_id).toBe(
      published.find((m) => m.p_uid === uid)!.broker_correlation_id,
    );
    const raws = await sql("select 1 from raw_messages where source_name = 'greenbrain'");
    expect(raws).toHaveLength(3);
    const [state] = await sql<{ last_hash: string; last_ts: string }>(
      "select last_hash, last_ts from poller_state where source_name = 'greenbrain' and device_key = '19640'",
    );
    expect(state).toEqual({
      last_hash: contentHash(latest19640),
      last_ts: "2022-02-09T22:00:00+00:00",
    });
    expect(logins).toBe(1);
  });

  it("publishes a changed response once, logging in again when the token has expired", async () => {
    token = "t2";
    content.set(19641, latestFor(19641, "2022-02-09T23:00:00.000", 39.5));
    await waitFor(async () => (await publishedFor(19641)).length >= 2, 20_000, "changed group");
    await morePolls(system!);
    const messages = await publishedFor(19641);
    expect(messages).toHaveLength(2);
    expect(messages[1]).toMatchObject({ timestamp: "2022-02-09T23:00:00+00:00" });
    expect(logins).toBe(2);
  });

  it("retries a 500, a 429 with Retry-After and a timeout, then publishes once", async () => {
    content.set(19642, latestFor(19642, "2022-02-09T23:00:00.000"));
    faults.set(19642, [
      { status: 500 },
      { status: 429, headers: { "retry-after": "0" } },
      { hang: true },
    ]);
    await waitFor(
      async () => (await publishedFor(19642)).length >= 2,
      20_000,
      "group after faults",
    );
    await morePolls(system!);
    expect(await publishedFor(19642)).toHaveLength(2);
    expect(faults.get(19642)).toEqual([]);
  });

  it("stores a truncated response raw and dead-letters it once, and keeps polling the others", async () => {
    content.set(19640, truncated);
    content.set(19641, latestFor(19641, "2022-02-10T00:00:00.000"));
    await waitFor(async () => (await publishedFor(19641)).length >= 3, 20_000, "other group");
    await waitFor(
      async () => (await ch.checkQueue(deadQueue)).messageCount >= 1,
      20_000,
      "dead letter",
    );
    await morePolls(system!);
    const dead = await ch.get(deadQueue, { noAck: true });
    expect(dead && dead.content.toString()).toBe(truncated);
    expect(dead && dead.properties.headers?.["x-broker-reason"]).toBe("invalid_json");
    expect((await ch.checkQueue(deadQueue)).messageCount).toBe(0);
    const raw = await sql<{ text_msg: string }>(
      "select text_msg from raw_messages where correlation_id = $1",
      [dead && dead.properties.correlationId],
    );
    expect(raw[0]!.text_msg).toBe(truncated);
    expect(await publishedFor(19640)).toHaveLength(1);
  });

  it("stopped in the middle of a poll, then restarted: nothing skipped, nothing repeated", async () => {
    await system!.stop();
    await collect();
    const before = published.length;
    content.set(19640, latestFor(19640, "2022-02-10T01:00:00.000"));
    content.set(19641, latestFor(19641, "2022-02-10T01:00:00.000"));
    held.add(19641);
    const asked = vendor.to("/sensor-groups/19641/latest").length;
    // One poll an hour, long timeout: the poll waits on 19641 until the stop aborts it.
    const s = await start({ GREENBRAIN_POLL_SECONDS: "3600", POLLER_HTTP_TIMEOUT_SECONDS: "30" });
    await waitFor(
      () => vendor.to("/sensor-groups/19641/latest").length > asked,
      20_000,
      "held request",
    );
    await s.stop();
    await collect();
    // 19640, fetched before the stop, was stored and published during the stop.
    expect(published.slice(before).map((m) => m.timestamp)).toEqual(["2022-02-10T01:00:00+00:00"]);
    const states = await sql<{ device_key: string; last_ts: string }>(
      "select device_key, last_ts from poller_state where source_name = 'greenbrain' order by device_key",
    );
    expect(states.map((r) => [r.device_key, r.last_ts])).toEqual([
      ["19640", "2022-02-10T01:00:00+00:00"],
      ["19641", "2022-02-10T00:00:00+00:00"],
      ["19642", "2022-02-09T23:00:00+00:00"],
    ]);

    held.delete(19641);
    const again = await start();
    await waitFor(
      async () => (await publishedFor(19641)).length >= 4,
      20_000,
      "19641 after restart",
    );
    await morePolls(again);
    await collect();
    const after = published.slice(before);
    expect(after.map((m) => m.p_uid).sort()).toEqual(
      [await uidOf(19640), await uidOf(19641)].sort(),
    );
  });
});
