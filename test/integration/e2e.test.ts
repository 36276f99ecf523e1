import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { ttnCorrelationId } from "../../src/sources/ttn/normalise.js";
import { cleanupAmqp, closeConnectionsNamed, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { runBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { deliverUplink, fixtureText, netvoxUplink } from "../helpers/ttn.js";

const netvoxText = fixtureText("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json");

const amqpConfig = isolatedAmqpConfig();
const queues = [QUEUE_NAMES.mapper, QUEUE_NAMES.frred].flatMap((q) => {
  const name = amqpConfig.queuePrefix + q;
  return [name, deadLetterQueueName(name)];
});
const connectionName = `e2e-${randomUUID()}`;
let db: TestDatabase;
let dir: string;
let system: RunningSystem;
let base: string;

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function cli(...args: string[]): Promise<unknown> {
  const run = await runBroker(args, { database: db.name });
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return run.stdout.trim() === "" ? undefined : JSON.parse(run.stdout);
}

function uplink(devEui: string, fCnt: number): Record<string, unknown> {
  const at = new Date(Date.UTC(2024, 0, 1) + fCnt * 60_000).toISOString().replace("Z", "123456Z");
  return netvoxUplink(devEui, fCnt, at);
}

function deliver(body: unknown): Promise<number> {
  return deliverUplink(`${base}/ttn/webhook/up`, body);
}

/** Directory names in the DataBolt dir, by correlation id. */
async function filesByCorrelationId(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const name of await readdir(dir)) {
    if (name.startsWith(".tmp-")) {
      continue;
    }
    const cid = name.slice(0, 36);
    counts.set(cid, (counts.get(cid) ?? 0) + 1);
  }
  return counts;
}

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(join(tmpdir(), "e2e-frred-"));
  system = await startTestSystem(["all"], testConfig(db, amqpConfig, { FRRED_DIR: dir }), {
    connectionName,
  });
  const webhook = system.components.find((c) => c.name === "ttn-webhook")!;
  base = `http://127.0.0.1:${webhook.port!()}`;
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "system ready");
});

afterAll(async () => {
  await system?.stop();
  await cleanupAmqp(amqpConfig, queues);
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

describe("end to end: TTN webhook → mapper → FRRED directory", () => {
  it("delivers a recorded uplink as a DataBolt file once its device is mapped with the CLI", async () => {
    // First uplink: the device appears, unmapped, so its message is held and nothing reaches
    // the writer.
    expect(await deliver(netvoxText)).toBe(204);
    const [pd] = await sql<{ uid: number }>("select uid from physical_devices");
    await waitFor(
      async () => (await sql("select 1 from physical_timeseries")).length === 1,
      10_000,
      "stored unmapped",
    );
    expect(await readdir(dir)).toEqual([]);
    const [held] = await sql<{ cid: string }>(
      "select json_msg->>'broker_correlation_id' as cid from physical_timeseries",
    );

    const ld = (await cli("ld", "create", "--json", '{"name": "Orange orchard block 4"}')) as {
      uid: number;
    };
    // Mapped from when the device was installed, releasing what it sent before: messages go to
    // the mapping that holds their timestamp, and a mapping from now would hold them all.
    const started = await runBroker(
      [
        "map",
        "start",
        "--puid",
        String(pd!.uid),
        "--luid",
        String(ld.uid),
        "--from",
        "2020-01-01T00:00:00Z",
        "--release",
      ],
      {
        database: db.name,
        env: {
          AMQP_URL: amqpConfig.url,
          PTS_EXCHANGE: amqpConfig.ptsExchange,
          LTS_EXCHANGE: amqpConfig.ltsExchange,
          EVENTS_EXCHANGE: amqpConfig.eventsExchange,
          DEAD_LETTER_EXCHANGE: amqpConfig.deadLetterExchange,
        },
      },
    );
    expect(started.code).toBe(0);
    expect(started.stderr).toContain(
      `held messages of physical device ${pd!.uid} within this mapping: 1 (no_mapping 1)`,
    );
    expect(started.stderr).toMatch(/released 1 held messages .*; 0 still held/);
    const mapping = JSON.parse(started.stdout) as { pd: { uid: number }; start_time: string };
    expect(mapping.pd.uid).toBe(pd!.uid);
    expect(mapping.start_time).toBe("2020-01-01T00:00:00+00:00");
    await waitFor(
      async () => (await filesByCorrelationId()).has(held!.cid),
      10_000,
      "the released uplink's DataBolt file",
    );

    const next = uplink("00137A100000BBD2", 5);
    expect(await deliver(next)).toBe(204);
    const cid = ttnCorrelationId(next, Buffer.from(JSON.stringify(next)));
    await waitFor(async () => (await filesByCorrelationId()).has(cid), 10_000, "DataBolt file");
    const [entry] = (await readdir(dir)).filter((n) => n.startsWith(cid));
    const content = JSON.parse(await readFile(join(dir, entry!, `${cid}.json`), "utf8")) as Record<
      string,
      unknown
    >;
    expect(content).toEqual({
      broker_correlation_id: cid,
      p_uid: pd!.uid,
      timestamp: (next.uplink_message as { received_at: string }).received_at,
      timeseries: [{ name: "n", value: 5 }],
      l_uid: ld.uid,
    });
    const ls = (await cli("map", "ls", "--luid", String(ld.uid))) as unknown[];
    expect(ls).toHaveLength(1);
  });

  it("loses and duplicates nothing when RabbitMQ drops every connection mid-stream", async () => {
    const devices = Array.from(
      { length: 10 },
      (_, i) => `00000000000010${String(i).padStart(2, "0")}`,
    );
    // Create and map every device up front.
    await Promise.all(devices.map((d) => deliver(uplink(d, 0))));
    const pds = await sql<{ uid: number; eui: string }>(
      "select uid, source_ids->>'dev_eui' as eui from physical_devices where source_ids->>'dev_eui' like '00000000000010%'",
    );
    for (const pd of pds) {
      const [ld] = await sql<{ uid: number }>(
        "insert into logical_devices (name) values ($1) returning uid",
        [pd.eui],
      );
      // From before the uplinks' timestamps: messages are routed by the mapping of their time.
      await sql(
        "insert into physical_logical_map (physical_uid, logical_uid, start_time) values ($1, $2, '2020-01-01T00:00:00Z')",
        [pd.uid, ld!.uid],
      );
    }

    const total = 2000;
    const bodies = Array.from({ length: total }, (_, i) =>
      uplink(devices[i % devices.length]!, i + 1),
    );
    const expected = bodies.map((b) => ttnCorrelationId(b, Buffer.from(JSON.stringify(b))));
    let sent = 0;
    let closed = 0;
    const sender = async (): Promise<void> => {
      while (sent < total) {
        const body = bodies[sent++]!;
        expect(await deliver(body)).toBe(204);
      }
    };
    const killer = (async () => {
      await waitFor(() => sent > total / 4, 60_000, "a quarter sent");
      closed += await closeConnectionsNamed(connectionName);
      await waitFor(() => sent > total / 2, 60_000, "half sent");
      closed += await closeConnectionsNamed(connectionName);
    })();
    await Promise.all([...Array.from({ length: 16 }, sender), killer]);
    expect(closed).toBeGreaterThanOrEqual(2);

    await waitFor(
      async () => {
        const files = await filesByCorrelationId();
        return expected.every((cid) => files.has(cid));
      },
      90_000,
      "a file for every uplink",
    );
    const files = await filesByCorrelationId();
    const missing = expected.filter((cid) => !files.has(cid));
    const duplicated = expected.filter((cid) => (files.get(cid) ?? 0) > 1);
    expect(missing).toEqual([]);
    expect(duplicated).toEqual([]);
    const [{ n }] = (await sql<{ n: string }>(
      "select count(*) as n from physical_timeseries where json_msg->>'broker_correlation_id' = any($1)",
      [expected],
    )) as [{ n: string }];
    expect(Number(n)).toBe(total);
  }, 180_000);
});
