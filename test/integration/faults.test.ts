import type { ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { ttnCorrelationId } from "../../src/sources/ttn/normalise.js";
import { hostname } from "node:os";

import {
  cleanupAmqp,
  isolatedAmqpConfig,
  openTestChannel,
  unackedOnConnectionsNamed,
  waitFor,
} from "../helpers/bus.js";
import { spawnBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { brokerEnv, startTestSystem, testConfig } from "../helpers/system.js";
import { deliverUplink, netvoxUplink } from "../helpers/ttn.js";

/**
 * Kills parts of the running system in the middle of a stream of uplinks, then proves by
 * correlation id that every uplink produced exactly one DataBolt file.
 */
const amqpConfig = isolatedAmqpConfig();
const queues = [QUEUE_NAMES.mapper, QUEUE_NAMES.frred].flatMap((q) => {
  const name = amqpConfig.queuePrefix + q;
  return [name, deadLetterQueueName(name)];
});
/** The in-process system's name: its pool's application_name in pg_stat_activity. */
const SYSTEM_NAME = `faults-system ${process.pid}`;
let db: TestDatabase;
let dir: string;
let system: RunningSystem;
let url: string;

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

function uplink(devEui: string, fCnt: number): Record<string, unknown> {
  return netvoxUplink(devEui, fCnt, new Date(Date.UTC(2024, 5, 1) + fCnt * 1000).toISOString());
}

async function mapDevices(prefix: string, count: number): Promise<string[]> {
  const devices = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(2, "0")}`);
  await Promise.all(devices.map((d) => deliverUplink(url, uplink(d, 0))));
  await sql(
    `with pd as (select uid from physical_devices where source_ids->>'dev_eui' like $1),
          ld as (insert into logical_devices (name) select 'ld ' || uid from pd returning uid, name)
     insert into physical_logical_map (physical_uid, logical_uid, start_time)
     select pd.uid, ld.uid, '2020-01-01T00:00:00Z' from pd join ld on ld.name = 'ld ' || pd.uid`,
    [`${prefix}%`],
  );
  return devices;
}

/** Streams `total` uplinks with 16 concurrent senders; `fault` runs once a third is through. */
async function stream(
  devices: string[],
  first: number,
  total: number,
  fault: () => Promise<void>,
): Promise<string[]> {
  const bodies = Array.from({ length: total }, (_, i) =>
    uplink(devices[i % devices.length]!, first + i),
  );
  let sent = 0;
  const sender = async (): Promise<void> => {
    while (sent < total) {
      expect(await deliverUplink(url, bodies[sent++]!)).toBe(204);
    }
  };
  const faulty = (async () => {
    await waitFor(() => sent > total / 3, 60_000, "a third sent");
    await fault();
  })();
  await Promise.all([...Array.from({ length: 16 }, sender), faulty]);
  return bodies.map((b) => ttnCorrelationId(b, Buffer.from(JSON.stringify(b))));
}

async function expectExactlyOneFileEach(expected: string[]): Promise<void> {
  const count = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (const name of await readdir(dir)) {
      if (!name.startsWith(".")) {
        counts.set(name.slice(0, 36), (counts.get(name.slice(0, 36)) ?? 0) + 1);
      }
    }
    return counts;
  };
  await waitFor(
    async () => {
      const files = await count();
      return expected.every((cid) => files.has(cid));
    },
    120_000,
    "a file for every uplink",
  );
  const files = await count();
  expect(expected.filter((cid) => (files.get(cid) ?? 0) !== 1)).toEqual([]);
  const rows = await sql<{ n: string }>(
    "select count(*) as n from physical_timeseries where json_msg->>'broker_correlation_id' = any($1)",
    [expected],
  );
  expect(Number(rows[0]!.n)).toBe(expected.length);
}

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(join(tmpdir(), "faults-frred-"));
  system = await startTestSystem(
    ["ttn-webhook", "mapper", "frred"],
    testConfig(db, amqpConfig, { FRRED_DIR: dir }),
    { connectionName: SYSTEM_NAME },
  );
  url = `http://127.0.0.1:${system.components[0]!.port!()}/ttn/webhook/up`;
  await waitFor(async () => system.components.every((c) => c.isReady?.() ?? true), 15_000, "ready");
});

afterAll(async () => {
  await system?.stop();
  await cleanupAmqp(amqpConfig, queues);
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

describe("faults in the middle of a stream", () => {
  it("loses and duplicates nothing when PostgreSQL drops every connection", async () => {
    const devices = await mapDevices("00000000000020", 8);
    let killed: { pid: number; ok: boolean }[] = [];
    const expected = await stream(devices, 1, 1500, async () => {
      // The system's own connections, not the test's (its pool has no application_name).
      killed = await sql<{ pid: number; ok: boolean }>(
        "select pid, pg_terminate_backend(pid) as ok from pg_stat_activity where datname = $1 and application_name = $2",
        [db.name, SYSTEM_NAME],
      );
    });
    expect(killed.length).toBeGreaterThan(0);
    expect(killed.every((k) => k.ok)).toBe(true);
    const pids = killed.map((k) => k.pid);
    await expectExactlyOneFileEach(expected);
    // The killed backends are gone, and the system carried on through new ones.
    const after = await sql<{ pid: number }>(
      "select pid from pg_stat_activity where datname = $1 and application_name = $2",
      [db.name, SYSTEM_NAME],
    );
    expect(after.filter((a) => pids.includes(a.pid))).toEqual([]);
  }, 180_000);

  it("loses and duplicates nothing when a second mapper process is killed with SIGKILL", async () => {
    const devices = await mapDevices("00000000000030", 8);
    // A second mapper in its own process shares the queue with the in-process one; killing it
    // mid-batch leaves deliveries unacked, which RabbitMQ must hand to the survivor.
    const env = { ...brokerEnv(db, amqpConfig), LOG_LEVEL: "silent" };
    const child: ChildProcess = spawnBroker(["run", "mapper"], { env, stdio: "ignore" });
    try {
      const { conn, ch } = await openTestChannel();
      const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
      await waitFor(
        async () => (await ch.checkQueue(mapperQueue)).consumerCount >= 2,
        30_000,
        "second mapper consuming",
      );
      await conn.close();
      // Frozen with SIGSTOP, the mapper can ack nothing more: what RabbitMQ then counts as
      // unacked on its connection is what it holds when SIGKILL arrives.
      const childName = `broker mapper ${hostname()}:${child.pid}`;
      let unackedAtKill = 0;
      const expected = await stream(devices, 1, 1500, async () => {
        for (let attempt = 0; attempt < 20 && unackedAtKill === 0; attempt++) {
          child.kill("SIGSTOP");
          unackedAtKill = await unackedOnConnectionsNamed(childName);
          if (unackedAtKill === 0) {
            child.kill("SIGCONT");
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        child.kill("SIGKILL");
      });
      expect(unackedAtKill).toBeGreaterThan(0);
      await expectExactlyOneFileEach(expected);
    } finally {
      child.kill("SIGKILL");
    }
  }, 180_000);
});
