import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { spawnBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { brokerEnv, startTestSystem, testConfig } from "../helpers/system.js";

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
