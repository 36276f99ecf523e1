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
import { DEFAULT_STATION_ID, LOOKBACK_MS } from "../../src/sources/axistech/normalise.js";
import { VendorServer, type SeenRequest } from "../fixtures/pollers/vendor-server.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

type Rec = Record<string, unknown> & { code: string; time: string };
const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/pollers/axistech_weather.json", import.meta.url), "utf8"),
) as { data: Record<string, { weather: Rec[] }> };
const template = fixture.data[DEFAULT_STATION_ID]!.weather;

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + "axistech_ingest.dead";
const env = (vendor: VendorServer): Record<string, string> => ({
  AXISTECH_TOKEN: "tok-9",
  AXISTECH_API_URL: vendor.url,
  AXISTECH_POLL_SECONDS: "0.2",
  POLLER_RETRY_SECONDS: "0.05",
  POLLER_RETRY_MAX_SECONDS: "0.2",
});

type Msg = {
  broker_correlation_id: string;
  p_uid: number;
  timestamp: string;
  source_ids: { serial_no: string };
};

/** Record times: quarter hours, recent enough to be inside the five-day window. */
const base = Math.floor(Date.now() / 900_000) * 900_000 - 2 * 3600_000;
const at = (quarter: number): string => new Date(base + quarter * 900_000).toISOString();
const zulu = (quarter: number): string => `${at(quarter).slice(0, 19)}Z`;

let db: TestDatabase;
let vendor: VendorServer;
let system: RunningSystem | undefined;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;
const published: Msg[] = [];
/** Every record the stand-in knows; it answers those inside the requested window. */
const weather: Rec[] = template.map((r, i) => ({ ...r, time: at(Math.floor(i / 2)) }));
let station = DEFAULT_STATION_ID;

function answer(req: SeenRequest): { status?: number; body: unknown } {
  if (req.query.get("token") !== "tok-9") {
    return { status: 403, body: { error: "bad token" } };
  }
  const from = Date.parse(req.query.get("startDate") ?? "");
  const to = Date.parse(req.query.get("endDate") ?? "");
  const inWindow = weather.filter((r) => Date.parse(r.time) >= from && Date.parse(r.time) <= to);
  return { body: { status: "ok", data: { [station]: { name: "AWS", weather: inWindow } } } };
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

async function sql<T = Record<string, unknown>>(text: string): Promise<T[]> {
  return (await db.handle.pool.query(text)).rows as T[];
}

async function pollsDone(result?: string): Promise<number> {
  const metric = system?.deps.metrics.registry.getSingleMetric("broker_poller_polls_total");
  const values = metric ? (await metric.get()).values : [];
  return values
    .filter((v) => !result || v.labels.result === result)
    .reduce((n, v) => n + v.value, 0);
}

async function morePolls(n = 2): Promise<void> {
  const start = await pollsDone();
  await waitFor(async () => (await pollsDone()) >= start + n, 20_000, `${n} more polls`);
}

const progress = async (): Promise<string[][]> =>
  (
    await sql<{ device_key: string; last_ts: string }>(
      "select device_key, last_ts from poller_state where source_name = 'axistech' order by device_key",
    )
  ).map((r) => [r.device_key, r.last_ts.replace("+00:00", "Z")]);

beforeAll(async () => {
  db = await createTestDatabase();
  vendor = await VendorServer.start(answer);
  ({ conn, ch } = await openTestChannel());
  await declareConsumerQueue(
    ch,
    { name: mapperQueue, exchange: amqpConfig.ptsExchange },
    topologyOptions(amqpConfig),
  );
});

afterAll(async () => {
  await system?.stop();
  await vendor?.close();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), deadQueue]);
  await db?.drop();
});

describe("AxisTech poller against a stand-in API, PostgreSQL and RabbitMQ", () => {
  it("does not advance progress when RabbitMQ cannot confirm, and adds its source", async () => {
    const dead = { ...amqpConfig, url: "amqp://guest:guest@127.0.0.1:1/%2F" };
    system = await startTestSystem(["axistech"], testConfig(db, dead, env(vendor)));
    await waitFor(async () => (await pollsDone("failed")) >= 1, 20_000, "a failed poll");
    await system.stop();
    system = undefined;
    expect(await sql("select 1 from sources where source_name = 'axistech'")).toHaveLength(1);
    // Raw first: the records are kept even though nothing could be published.
    expect(await sql("select 1 from raw_messages where source_name = 'axistech'")).toHaveLength(4);
    expect(await progress()).toEqual([]);
    const first = vendor.requests[0]!;
    const start = Date.parse(first.query.get("startDate")!);
    expect(Math.abs(Date.parse(first.query.get("endDate")!) - LOOKBACK_MS - start)).toBeLessThan(
      1000,
    );
  });

  it("then publishes every record once, oldest first, and resumes after a restart where it stopped", async () => {
    system = await startTestSystem(["axistech"], testConfig(db, amqpConfig, env(vendor)));
    await waitFor(async () => (await collect(), published.length >= 4), 20_000, "4 records");
    await morePolls();
    await collect();
    expect(published.map((m) => [m.source_ids.serial_no, m.timestamp])).toEqual([
      ["1101", zulu(0)],
      ["1102", zulu(0)],
      ["1101", zulu(1)],
      ["1102", zulu(1)],
    ]);
    expect(await progress()).toEqual([
      ["1101", zulu(1)],
      ["1102", zulu(1)],
    ]);
    // The same correlation ids as the failed attempt: the raw store kept one copy of each.
    expect(await sql("select 1 from raw_messages where source_name = 'axistech'")).toHaveLength(4);
    const [device] = await sql<{ properties: { last_msg: unknown } }>(
      "select properties from physical_devices where name = '1102'",
    );
    expect(device!.properties.last_msg).toMatchObject({ timestamp: zulu(1) });
    // Later polls ask from the oldest station's progress.
    expect(vendor.requests.at(-1)!.query.get("startDate")).toBe(zulu(1));

    await system.stop();
    weather.push({ ...template[0]!, time: at(2) });
    system = await startTestSystem(["axistech"], testConfig(db, amqpConfig, env(vendor)));
    await waitFor(async () => (await collect(), published.length >= 5), 20_000, "new record");
    await morePolls();
    await collect();
    expect(published.slice(4).map((m) => [m.source_ids.serial_no, m.timestamp])).toEqual([
      ["1101", zulu(2)],
    ]);
  });

  it("dead-letters a record it cannot read and an answer without the station, and carries on", async () => {
    weather.push(
      { ...template[1]!, time: at(2), temperature_avg: "warm" },
      { ...template[1]!, time: at(3) },
    );
    await waitFor(async () => (await collect(), published.length >= 6), 20_000, "good record");
    await waitFor(
      async () => (await ch.checkQueue(deadQueue)).messageCount >= 1,
      20_000,
      "dead letter",
    );
    const bad = await ch.get(deadQueue, { noAck: true });
    expect(bad && bad.properties.headers?.["x-broker-reason"]).toBe("invalid_value");
    expect(JSON.parse(bad ? bad.content.toString() : "{}")).toMatchObject({
      temperature_avg: "warm",
    });

    station = "00000000-0000-4000-8000-000000000000";
    await waitFor(
      async () => (await ch.checkQueue(deadQueue)).messageCount >= 1,
      20_000,
      "unknown station",
    );
    const other = await ch.get(deadQueue, { noAck: true });
    expect(other && other.properties.headers?.["x-broker-reason"]).toBe("unknown_station");
    await morePolls();
    // Reported once, although every poll gets the same answer.
    expect((await ch.checkQueue(deadQueue)).messageCount).toBe(0);
    await collect();
    expect(published.slice(5).map((m) => [m.source_ids.serial_no, m.timestamp])).toEqual([
      ["1102", zulu(3)],
    ]);
  });
});
