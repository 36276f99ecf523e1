import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { spawnBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { brokerEnv, startTestSystem, testConfig } from "../helpers/system.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { netvoxUplink } from "../helpers/ttn.js";

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue)]);
  await db?.drop();
});

describe("health, readiness and stopping", () => {
  it("is alive but not ready while PostgreSQL is unreachable, and says why", async () => {
    const config = testConfig({ ...db, pg: { ...db.pg, port: 1 } }, amqpConfig);
    const system = await startTestSystem(["mapper"], config);
    try {
      const base = `http://127.0.0.1:${system.opsPort}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ postgres: false });
    } finally {
      await system.stop();
    }
  });

  it("answers a burst of /readyz requests with about one database round trip per second", async () => {
    const system = await startTestSystem(["mapper"], testConfig(db, amqpConfig));
    try {
      const base = `http://127.0.0.1:${system.opsPort}`;
      // An idle mapper takes no connection from its pool, so every checkout here is a ping.
      let checkouts = 0;
      system.deps.database.pool.on("acquire", () => checkouts++);
      const started = performance.now();
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "ready");
      const concurrent = await Promise.all(
        Array.from({ length: 50 }, () => fetch(`${base}/readyz`)),
      );
      expect(concurrent.map((r) => r.status)).toEqual(Array(50).fill(200));
      for (let i = 0; i < 50; i++) {
        expect((await fetch(`${base}/readyz`)).status).toBe(200);
      }
      // The answer is reused for a second; a slow machine may span a few of them.
      const seconds = Math.ceil((performance.now() - started) / 1_000);
      expect(checkouts).toBeGreaterThan(0);
      expect(checkouts).toBeLessThanOrEqual(seconds + 1);
    } finally {
      await system.stop();
    }
  });

  it("starts while PostgreSQL is down, answers 503 meanwhile, and serves once it is back", async () => {
    const proxy = new TcpProxy({ host: db.pg.host, port: db.pg.port });
    await proxy.up();
    await proxy.down(); // the port is now chosen, and nothing listens on it
    const system = await startTestSystem(
      ["ttn-webhook"],
      testConfig({ ...db, pg: { ...db.pg, host: "127.0.0.1", port: proxy.port } }, amqpConfig),
    );
    try {
      const url = `http://127.0.0.1:${system.components[0]!.port!()}/ttn/webhook/up`;
      const body = JSON.stringify(netvoxUplink("00000000000099a1", 1, "2024-03-01T00:00:00Z"));
      expect((await fetch(url, { method: "POST", body })).status).toBe(503);
      await proxy.up();
      await waitFor(
        async () => (await fetch(url, { method: "POST", body })).status === 204,
        30_000,
        "204",
      );
      const rows = await db.handle.pool.query(
        "select 1 from raw_messages where json_msg->'end_device_ids'->>'dev_eui' = '00000000000099a1'",
      );
      expect(rows.rowCount).toBe(1);
    } finally {
      await system.stop();
      await proxy.down();
    }
  });

  it("ends start-up with a summary: readable lines for a person, one JSON line for a collector", async () => {
    const run = async (format: string): Promise<string> => {
      const child = spawnBroker(["run", "ttn-webhook", "api"], {
        env: { ...brokerEnv(db, amqpConfig), LOG_FORMAT: format },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
      const exited = new Promise((resolve) => child.on("exit", resolve));
      try {
        await waitFor(() => /start-up summary|Ctrl-C/.test(output), 30_000, "the summary");
      } finally {
        child.kill("SIGTERM");
        await exited;
      }
      return output;
    };
    const pretty = await run("pretty");
    expect(pretty).not.toContain('{"level"');
    expect(pretty).toMatch(
      /INFO {2}ttn-webhook TTN webhook listening on \/ttn\/webhook\/up port=\d+/,
    );
    expect(pretty).toMatch(/broker is running: ttn-webhook, api\n/);
    expect(pretty).toMatch(/TTN webhook +http:\/\/localhost:\d+\/ttn\/webhook\/up\n/);
    expect(pretty).toMatch(/docs: http:\/\/localhost:\d+\/broker\/api\/docs\n/);
    // The test database has no users, so the way to make the first admin is shown.
    expect(pretty).toContain("no admin user yet; create one:");
    expect(pretty).not.toMatch(/WARN .*RabbitMQ connection is not open/);

    const json = (await run("json"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = json.find((l) => l.msg === "start-up summary");
    expect(summary?.summary).toMatchObject({
      "TTN webhook": [
        expect.stringMatching(/^http:\/\/localhost:\d+\/ttn\/webhook\/up$/),
        expect.any(String),
        expect.any(String),
      ],
    });
  }, 90_000);

  it("stops `broker run` cleanly on SIGTERM, within its time limit", async () => {
    const child = spawnBroker(["run", "mapper"], {
      env: brokerEnv(db, amqpConfig),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on("exit", (code) => resolve(code)),
    );
    await waitFor(() => output.includes('"msg":"consuming"'), 30_000, "mapper consuming");
    child.kill("SIGTERM");
    // run.ts exits 1 if a graceful stop overruns its 9 s limit, so 0 means it stopped in time.
    expect(await exited).toBe(0);
    expect(output).toContain('"why":"SIGTERM"');
  }, 60_000);
});
