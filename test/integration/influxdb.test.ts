import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import amqplib from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import type { Config } from "../../src/core/config.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startInfluxd, type InfluxServer } from "../helpers/influxdb.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

let db: TestDatabase;
let conn: amqplib.ChannelModel;
let ch: amqplib.ConfirmChannel;

beforeAll(async () => {
  db = await createTestDatabase();
  conn = await amqplib.connect(isolatedAmqpConfig().url);
  ch = await conn.createConfirmChannel();
});

afterAll(async () => {
  await conn?.close();
  await db?.drop();
});

async function publish(amqp: Config["amqp"], bodies: readonly unknown[]): Promise<void> {
  for (const body of bodies) {
    ch.publish(amqp.ltsExchange, "logical_timeseries", Buffer.from(JSON.stringify(body)), {
      persistent: true,
    });
  }
  await ch.waitForConfirms();
}

async function deliveredCount(): Promise<number> {
  const { rows } = await db.handle.pool.query<{ n: string }>(
    "select count(*) as n from delivery_queue where writer = 'influxdb' and delivered_at is not null",
  );
  return Number(rows[0]!.n);
}

const WRITER_ENV = {
  WRITER_RETRY_INITIAL_MS: "50",
  WRITER_RETRY_MAX_MS: "500",
  WRITER_POLL_MS: "100",
};

describe("InfluxDB writer against a real InfluxDB 1.x", () => {
  const amqp = isolatedAmqpConfig();
  let influx: InfluxServer;
  let proxy: TcpProxy;
  let system: RunningSystem;

  beforeAll(async () => {
    influx = await startInfluxd();
    await influx.query('CREATE DATABASE "broker"');
    proxy = new TcpProxy({ host: "127.0.0.1", port: influx.port });
    await proxy.up();
    system = await startTestSystem(
      ["influxdb"],
      testConfig(db, amqp, {
        ...WRITER_ENV,
        INFLUXDB_URL: `http://127.0.0.1:${proxy.port}`,
        INFLUXDB_DB: "broker",
        INFLUXDB_USER: "writer",
        INFLUXDB_PASSWORD: "secret",
        INFLUXDB_TIMEOUT_MS: "2000",
      }),
    );
    await waitFor(async () => system.components[0]!.isReady?.() === true, 15_000, "consuming");
  }, 60_000);

  afterAll(async () => {
    await system?.stop();
    await proxy?.down();
    await influx?.stop();
    await cleanupAmqp(amqp);
  });

  it("writes batches of points, floats with l_uid/p_uid tags and ns timestamps, through an outage, and reads them back", async () => {
    const base = Date.parse("2024-06-01T00:00:00Z");
    const messages = Array.from({ length: 3000 }, (_, i) => ({
      broker_correlation_id: randomUUID(),
      p_uid: 100 + (i % 3),
      l_uid: 1 + (i % 3),
      timestamp: new Date(base + i * 1000).toISOString().replace("Z", "123+00:00"),
      timeseries: [
        { name: "temperature", value: i % 2 === 0 ? i : i + 0.5 },
        { name: "battery (v)", value: "3.7" },
        { name: "state", value: "open" },
      ],
    }));
    await publish(amqp, messages.slice(0, 1000));
    await waitFor(async () => (await deliveredCount()) === 1000, 30_000, "first thousand");
    await proxy.down();
    await publish(amqp, messages.slice(1000));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await deliveredCount()).toBe(1000);
    await proxy.up();
    await waitFor(async () => (await deliveredCount()) === 3000, 60_000, "all written");

    const counted = await influx.query('SELECT count("temperature") FROM /ld_.*/', "broker");
    const total = (counted.results[0]!.series ?? []).reduce(
      (sum, s) => sum + (s.values[0]![1] as number),
      0,
    );
    expect(total).toBe(3000);
    const one = await influx.query(
      'SELECT "temperature", "battery (v)", "l_uid", "p_uid" FROM "ld_2" WHERE time = 1717200001000123000',
      "broker",
    );
    const series = one.results[0]!.series![0]!;
    expect(series.columns).toEqual(["time", "temperature", "battery (v)", "l_uid", "p_uid"]);
    expect(series.values).toEqual([[1717200001000123000, 1.5, 3.7, "2", "101"]]);
    // Every value a float: the field type never conflicts.
    const types = await influx.query('SHOW FIELD KEYS FROM "ld_1"', "broker");
    expect(types.results[0]!.series![0]!.values).toEqual(
      expect.arrayContaining([
        ["battery (v)", "float"],
        ["temperature", "float"],
      ]),
    );
  }, 120_000);

  it("a replayed message overwrites the point it corrects: one value per series and time", async () => {
    const before = await deliveredCount();
    const first = {
      broker_correlation_id: randomUUID(),
      p_uid: 200,
      l_uid: 20,
      timestamp: "2024-07-01T00:00:00Z",
      timeseries: [{ name: "temperature", value: 215 }],
    };
    await publish(amqp, [first]);
    await waitFor(async () => (await deliveredCount()) === before + 1, 30_000, "first decode");
    // The replay's copy: same correlation id, device and time, the corrected value, its header.
    const replayed = { ...first, timeseries: [{ name: "temperature", value: 21.5 }] };
    ch.publish(amqp.ltsExchange, "logical_timeseries", Buffer.from(JSON.stringify(replayed)), {
      persistent: true,
      headers: { "x-broker-replay": randomUUID() },
    });
    await ch.waitForConfirms();
    await waitFor(async () => (await deliveredCount()) === before + 2, 30_000, "replayed copy");
    const points = await influx.query('SELECT "temperature" FROM "ld_20"', "broker");
    expect(points.results[0]!.series![0]!.values).toEqual([[1719792000000000000, 21.5]]);
  }, 60_000);
});

describe("InfluxDB writer on the 2.x/3.x API (stand-in)", () => {
  const amqp = isolatedAmqpConfig();
  const received: { url: string; auth: string | undefined; body: string }[] = [];
  let failures = 2;
  let server: Server;
  let system: RunningSystem;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (failures > 0) {
          failures--;
          res.writeHead(503).end('{"code":"unavailable"}');
          return;
        }
        received.push({
          url: req.url ?? "",
          auth: req.headers.authorization,
          body: Buffer.concat(chunks).toString(),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    system = await startTestSystem(
      ["influxdb"],
      testConfig(db, amqp, {
        ...WRITER_ENV,
        INFLUXDB_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        INFLUXDB_ORG: "dpi",
        INFLUXDB_BUCKET: "farm data",
        INFLUXDB_TOKEN: "tok",
        INFLUXDB_MEASUREMENT: "telemetry",
      }),
    );
    await waitFor(async () => system.components[0]!.isReady?.() === true, 15_000, "consuming");
  });

  afterAll(async () => {
    await system?.stop();
    await new Promise((r) => server.close(r));
    await cleanupAmqp(amqp);
  });

  it("writes to /api/v2/write with org, bucket and token, retrying a 503", async () => {
    const before = await deliveredCount();
    await publish(amqp, [
      {
        broker_correlation_id: randomUUID(),
        p_uid: 9,
        l_uid: 8,
        timestamp: "2024-06-01T00:00:00Z",
        timeseries: [{ name: "rain", value: 2 }],
      },
    ]);
    await waitFor(async () => (await deliveredCount()) === before + 1, 30_000, "written");
    expect(failures).toBe(0);
    expect(received).toHaveLength(1);
    expect(received[0]!.url).toBe("/api/v2/write?org=dpi&bucket=farm+data&precision=ns");
    expect(received[0]!.auth).toBe("Token tok");
    expect(received[0]!.body).toBe("telemetry,l_uid=8,p_uid=9 rain=2 1717200000000000000");
  });
});
