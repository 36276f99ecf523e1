import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { domainDeps } from "../../src/app/queue-consumer.js";
import type { RunningSystem } from "../../src/app/root.js";
import type { Config } from "../../src/core/config.js";
import { backfill } from "../../src/delivery/backfill.js";
import type { WriterComponent } from "../../src/delivery/ports.js";
import {
  createWriter,
  type DeliveryResult,
  type WriterMessage,
} from "../../src/delivery/writer.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { runBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

/**
 * `broker backfill`: stored logical messages reach the one writer named, once, and resume after
 * an interruption without sending anything twice; other writers receive nothing.
 */

const CLI_TIMEOUT = 120_000;
const FROM = "2024-01-01T00:00:00Z";
const TO = "2024-02-01T00:00:00Z";

let db: TestDatabase;
let amqpConfig: Config["amqp"];
let system: RunningSystem;
let puid: number;
let ld1: number;
let ld2: number;
/** Correlation ids of the stored messages in range, per logical device. */
const inRange = new Map<number, string[]>();

async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []) {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function insertUid(text: string): Promise<number> {
  const rows = await sql<{ uid: number }>(text);
  return rows[0]!.uid;
}

async function store(luid: number | null, timestamp: string): Promise<string> {
  const cid = randomUUID();
  const message = {
    broker_correlation_id: cid,
    p_uid: puid,
    timestamp,
    timeseries: [{ name: "t", value: Math.random() }],
  };
  await sql(
    "insert into physical_timeseries (physical_uid, logical_uid, ts, json_msg) values ($1, $2, $3, $4)",
    [puid, luid, timestamp, JSON.stringify(message)],
  );
  return cid;
}

async function queuedFor(writer: string): Promise<string[]> {
  const rows = await sql<{ c: string }>(
    "select correlation_id as c from delivery_queue where writer = $1 order by id",
    [writer],
  );
  return rows.map((r) => r.c);
}

beforeAll(async () => {
  db = await createTestDatabase();
  amqpConfig = isolatedAmqpConfig();
  system = await startTestSystem(
    ["mapper"],
    testConfig(db, amqpConfig, { WRITER_POLL_MS: "50", WRITER_RETRY_INITIAL_MS: "20" }),
  );
  puid = await insertUid(
    "insert into physical_devices (source_name, name) values ('ttn', 'backfilled') returning uid",
  );
  ld1 = await insertUid("insert into logical_devices (name) values ('site 1') returning uid");
  ld2 = await insertUid("insert into logical_devices (name) values ('site 2') returning uid");
  const days = ["05", "09", "12", "17", "21", "30"];
  inRange.set(ld1, []);
  inRange.set(ld2, []);
  for (const day of days) {
    inRange.get(ld1)!.push(await store(ld1, `2024-01-${day}T10:00:00Z`));
  }
  for (const day of ["03", "28"]) {
    inRange.get(ld2)!.push(await store(ld2, `2024-01-${day}T08:00:00.123456Z`));
  }
  // Outside the range, and a held message inside it: never sent.
  await store(ld1, "2023-12-31T23:59:59Z");
  await store(ld1, TO);
  await store(null, "2024-01-15T00:00:00Z");
});

afterAll(async () => {
  await system?.stop();
  await cleanupAmqp(amqpConfig);
  await db?.drop();
});

describe("broker backfill", () => {
  it(
    "queues one logical device's history for the named writer only, and does not repeat a finished backfill",
    async () => {
      const args = ["backfill", "influxdb", "--from", FROM, "--to", TO, "--luid", String(ld1)];
      const first = await runBroker(args, { database: db.name });
      expect(first.stderr).toBe("");
      expect(first.code).toBe(0);
      expect(JSON.parse(first.stdout)).toMatchObject({
        writer: "influxdb",
        luids: [ld1],
        selected: 6,
        queued: 6,
        invalid: 0,
        resumed: false,
        finished: true,
      });
      expect(await queuedFor("influxdb")).toEqual(inRange.get(ld1));
      const others = await sql<{ n: string }>(
        "select count(*)::text as n from delivery_queue where writer <> 'influxdb'",
      );
      expect(others[0]!.n).toBe("0");

      const again = await runBroker(args, { database: db.name });
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ selected: 0, queued: 0, resumed: true });
      expect(again.stderr).toMatch(/finished earlier/);
      expect(await queuedFor("influxdb")).toHaveLength(6);

      const unknown = await runBroker(["backfill", "nowhere", "--from", FROM, "--to", TO], {
        database: db.name,
      });
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/must be one of frred, ubidots, influxdb/);
    },
    CLI_TIMEOUT,
  );

  describe("to a writer that is running", () => {
    const accepted: WriterMessage[] = [];
    let writer: WriterComponent;

    beforeAll(async () => {
      writer = createWriter(domainDeps(system.deps), {
        name: "probe",
        queue: "probe_logical_msg_queue",
        deliver: async (messages: readonly WriterMessage[]): Promise<DeliveryResult[]> =>
          messages.map((m) => {
            accepted.push(m);
            return { status: "delivered" };
          }),
      });
      await writer.start();
    });
    afterAll(() => writer?.stop());

    it("resumes an interrupted backfill where it stopped; the writer receives every message once, as the mapper published it", async () => {
      const stop = new AbortController();
      const selection = { writer: "probe", from: FROM, to: "2024-01-31T23:59:59+10:00" };
      const interrupted = await backfill(db.handle.db, {
        ...selection,
        batchSize: 3,
        onProgress: (done) => {
          if (done > 0) {
            stop.abort();
          }
        },
        signal: stop.signal,
      });
      expect(interrupted).toMatchObject({ selected: 3, queued: 3, finished: false });

      // Same instants written another way: the same backfill, resumed.
      const resumed = await backfill(db.handle.db, {
        ...selection,
        to: "2024-01-31T13:59:59Z",
        batchSize: 3,
      });
      expect(resumed).toMatchObject({ selected: 5, queued: 5, resumed: true, finished: true });

      const expected = [...inRange.get(ld1)!, ...inRange.get(ld2)!];
      await waitFor(() => accepted.length >= expected.length, 15_000, "backfill delivered");
      expect(accepted.map((m) => m.message.broker_correlation_id).sort()).toEqual(
        [...expected].sort(),
      );
      const first = accepted.find((m) => m.message.broker_correlation_id === expected[0]);
      expect(Object.keys(first!.message)).toEqual([
        "broker_correlation_id",
        "p_uid",
        "timestamp",
        "timeseries",
        "l_uid",
      ]);
      expect(first!.message.l_uid).toBe(ld1);

      // Sent again from the start: the writer remembers what it delivered.
      const restarted = await backfill(db.handle.db, { ...selection, restart: true });
      expect(restarted).toMatchObject({ selected: 8, queued: 0, finished: true });
      expect(accepted).toHaveLength(expected.length);
    });
  });
});
