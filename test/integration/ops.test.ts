import { spawn } from "node:child_process";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { ROOT } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

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

  it("stops `broker run` cleanly on SIGTERM, within its time limit", async () => {
    const child = spawn(
      join(ROOT, "node_modules", ".bin", "tsx"),
      ["src/cli/main.ts", "run", "mapper"],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          PGHOST: db.pg.host,
          PGPORT: String(db.pg.port),
          PGUSER: db.pg.user,
          PGDATABASE: db.name,
          AMQP_URL: amqpConfig.url,
          PTS_EXCHANGE: amqpConfig.ptsExchange,
          LTS_EXCHANGE: amqpConfig.ltsExchange,
          EVENTS_EXCHANGE: amqpConfig.eventsExchange,
          DEAD_LETTER_EXCHANGE: amqpConfig.deadLetterExchange,
          QUEUE_PREFIX: amqpConfig.queuePrefix,
          METRICS_PORT: "0",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
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
