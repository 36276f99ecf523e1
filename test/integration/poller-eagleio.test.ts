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
import { VendorServer, type Answer } from "../fixtures/pollers/vendor-server.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const own = new URL("../fixtures/pollers/", import.meta.url);
const recorded = new URL("../fixtures/recorded/", import.meta.url);
const nodes = JSON.parse(readFileSync(new URL("eagleio_nodes.json", own), "utf8")) as Record<
  string,
  unknown
>[];
const pdMap = JSON.parse(readFileSync(new URL("ict_eagleio_pd_map.json", recorded), "utf8")) as {
  physical_name: string;
  logical_last_msg: Record<string, unknown> | null;
}[];

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + "ict_eagleio_ingest.dead";

type Msg = {
  broker_correlation_id: string;
  p_uid: number;
  timestamp: string;
  timeseries: unknown[];
};

let db: TestDatabase;
let vendor: VendorServer;
let system: RunningSystem | undefined;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;
const published: Msg[] = [];
let answer: Answer = { body: nodes };
/** The node list the stand-in currently serves. */
let current = nodes;

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

async function uidOf(key: string): Promise<number> {
  const rows = await sql<{ uid: number }>(
    `select uid from physical_devices where source_ids->>'sensor_group_id' = '${key}'`,
  );
  return rows[0]?.uid ?? -1;
}

async function morePolls(n = 2): Promise<void> {
  const done = async (): Promise<number> => {
    const metric = system!.deps.metrics.registry.getSingleMetric("broker_poller_polls_total");
    return metric ? (await metric.get()).values.reduce((sum, v) => sum + v.value, 0) : 0;
  };
  const start = await done();
  await waitFor(async () => (await done()) >= start + n, 20_000, `${n} more polls`);
}

beforeAll(async () => {
  db = await createTestDatabase();
  vendor = await VendorServer.start(() => answer);
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

describe("EagleIO poller against a stand-in API, PostgreSQL and RabbitMQ", () => {
  it("refuses to start without EAGLEIO_API_TOKEN, naming it", async () => {
    await expect(
      startTestSystem(["eagleio"], testConfig(db, amqpConfig, { EAGLEIO_API_URL: vendor.url })),
    ).rejects.toThrow(/EAGLEIO_API_TOKEN/);
  });

  it("publishes one message per logger, grouped by exact key, then only groups that changed", async () => {
    system = await startTestSystem(
      ["eagleio"],
      testConfig(db, amqpConfig, {
        EAGLEIO_API_TOKEN: "key-123",
        EAGLEIO_API_URL: vendor.url,
        EAGLEIO_POLL_SECONDS: "0.2",
        POLLER_MAX_RESPONSE_BYTES: "100000",
      }),
    );
    await waitFor(async () => (await collect(), published.length >= 2), 20_000, "2 messages");
    await morePolls();
    await collect();
    expect(published).toHaveLength(2);
    const request = vendor.to("/nodes")[0]!;
    expect(request.headers["x-api-key"]).toBe("key-123");
    expect(request.headers.accept).toBe("application/json");

    const k3Uid = await uidOf("mncm1k703");
    const k3 = published.find((m) => m.p_uid === k3Uid)!;
    const {
      l_uid: _l,
      p_uid: _p,
      broker_correlation_id: _c,
      ...expected
    } = pdMap.find((e) => e.physical_name === "mncm1k703")!.logical_last_msg!;
    expect(k3).toMatchObject(expected);
    const k70 = published.find((m) => m.timeseries.length === 2)!;
    expect(k70.p_uid).toBe(await uidOf("mncm1k70"));
    const devices = await sql<{ name: string }>(
      "select name from physical_devices where source_name = 'ict_eagleio' order by name",
    );
    expect(devices.map((d) => d.name)).toEqual(["mncm1k70", "mncm1k703"]);

    const changed = structuredClone(current);
    const battery = changed.find((n) => n.name === "mncm1k703 battV")!;
    battery.currentValue = 4.2;
    battery.currentTime = "2026-08-17T02:19:07.000Z";
    answer = { body: changed };
    current = changed;
    await waitFor(async () => (await collect(), published.length >= 3), 20_000, "changed group");
    await morePolls();
    await collect();
    expect(published).toHaveLength(3);
    expect(published[2]).toMatchObject({
      p_uid: await uidOf("mncm1k703"),
      timestamp: "2026-08-17T02:19:07+00:00",
    });
    expect(published[2]!.timeseries[1]).toEqual({
      name: "adc ch1",
      value: 197383,
      timestamp: "2026-08-17T02:04:07+00:00",
    });
  });

  it("stores answers that are not JSON, oversized or hostile raw, dead-letters each, and carries on", async () => {
    const html = "<html><body>502 Bad Gateway</body></html>";
    const deep = "[".repeat(20_000) + "]".repeat(20_000);
    const big = JSON.stringify([{ name: "x".repeat(120_000) }]);
    const cases: [string, string, string][] = [
      [html, "invalid_json", html],
      [deep, "too_deeply_nested", deep],
      [big, "oversized_response", big.slice(0, 100_000)],
    ];
    for (const [body, reason, kept] of cases) {
      answer = { body };
      await waitFor(
        async () => (await ch.checkQueue(deadQueue)).messageCount >= 1,
        20_000,
        `dead letter ${reason}`,
      );
      const dead = await ch.get(deadQueue, { noAck: true });
      expect(dead && dead.content.toString()).toBe(kept);
      expect(dead && dead.properties.headers?.["x-broker-reason"]).toBe(reason);
    }
    const raws = await sql<{ text_msg: string }>(
      "select text_msg from raw_messages where text_msg is not null order by uid",
    );
    expect(raws.map((r) => r.text_msg)).toEqual(cases.map((c) => c[2]));

    const changed = structuredClone(current);
    changed.find((n) => n.name === "mncm1k70 battV")!.currentValue = 3.9;
    answer = { body: changed };
    await waitFor(async () => (await collect(), published.length >= 4), 20_000, "good answer");
    await morePolls();
    await collect();
    expect(published).toHaveLength(4);
    expect(published[3]!.p_uid).toBe(await uidOf("mncm1k70"));
  });
});
