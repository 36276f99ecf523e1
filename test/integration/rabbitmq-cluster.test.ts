import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { QUEUE_NAMES } from "../../src/bus/topology.js";
import { ttnCorrelationId } from "../../src/sources/ttn/normalise.js";
import { isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startPrivateCluster, type PrivateCluster } from "../helpers/private-servers.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { deliverUplink, netvoxUplink } from "../helpers/ttn.js";

/**
 * A three-node RabbitMQ cluster of the test's own on this machine, the system's AMQP_URL naming
 * every node: the quorum queues have a replica on each node, and the node every connection uses
 * first is killed (SIGKILL) in the middle of a stream. Nothing accepted is lost or duplicated, and
 * the components carry on through the other nodes.
 */
let cluster: PrivateCluster;
let db: TestDatabase;
let dir: string;
let system: RunningSystem;
let url: string;

beforeAll(async () => {
  cluster = await startPrivateCluster(3);
  db = await createTestDatabase();
  dir = await mkdtemp(join(tmpdir(), "cluster-frred-"));
  const amqp = isolatedAmqpConfig({ AMQP_URL: cluster.urls });
  system = await startTestSystem(
    ["ttn-webhook", "mapper", "frred"],
    testConfig(db, amqp, { FRRED_DIR: dir }),
  );
  url = `http://127.0.0.1:${system.components[0]!.port!()}/ttn/webhook/up`;
  await waitFor(async () => system.components.every((c) => c.isReady?.() ?? true), 30_000, "ready");
}, 300_000);

afterAll(async () => {
  await system?.stop();
  await cluster?.stop();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

describe("RabbitMQ cluster", () => {
  it("replicates the quorum queues on every node and loses nothing when a node is killed mid-stream", async () => {
    const prefix = isolatedPrefix();
    const listing = await cluster.nodes[1]!.ctl("-q", "list_queues", "name", "type", "members");
    const mapperLine = listing.split("\n").find((l) => l.includes(QUEUE_NAMES.mapper + "\t"));
    expect(mapperLine).toContain("quorum");
    for (const n of cluster.nodes) {
      expect(mapperLine).toContain(`${n.node.name}@localhost`);
    }

    // Devices first, mapped, so that every uplink goes all the way to a FRRED directory.
    const devices = Array.from({ length: 8 }, (_, i) => `${prefix}${String(i).padStart(2, "0")}`);
    const uplink = (d: string, n: number): Record<string, unknown> =>
      netvoxUplink(d, n, new Date(Date.UTC(2024, 5, 1) + n * 1000).toISOString());
    await Promise.all(devices.map((d) => deliverUplink(url, uplink(d, 0))));
    await db.handle.pool.query(
      `with pd as (select uid from physical_devices),
            ld as (insert into logical_devices (name) select 'ld ' || uid from pd returning uid, name)
       insert into physical_logical_map (physical_uid, logical_uid, start_time)
       select pd.uid, ld.uid, '2020-01-01T00:00:00Z' from pd join ld on ld.name = 'ld ' || pd.uid`,
    );

    const total = 1200;
    const bodies = Array.from({ length: total }, (_, i) => uplink(devices[i % 8]!, i + 1));
    let sent = 0;
    let killed = false;
    const sender = async (): Promise<void> => {
      while (sent < total) {
        expect(await deliverUplink(url, bodies[sent++]!)).toBe(204);
      }
    };
    const killer = (async () => {
      await waitFor(() => sent > total / 3, 120_000, "a third sent");
      // Every AMQP_URL list starts with node 0: that is where the connections are.
      await cluster.nodes[0]!.kill();
      killed = true;
    })();
    await Promise.all([...Array.from({ length: 12 }, sender), killer]);
    expect(killed).toBe(true);

    const expected = bodies.map((b) => ttnCorrelationId(b, Buffer.from(JSON.stringify(b))));
    const counts = async (): Promise<Map<string, number>> => {
      const m = new Map<string, number>();
      for (const name of await readdir(dir)) {
        if (!name.startsWith(".")) {
          m.set(name.slice(0, 36), (m.get(name.slice(0, 36)) ?? 0) + 1);
        }
      }
      return m;
    };
    await waitFor(
      async () => {
        const files = await counts();
        return expected.every((cid) => files.has(cid));
      },
      180_000,
      "a FRRED directory for every uplink",
    );
    const files = await counts();
    expect(expected.filter((cid) => files.get(cid) !== 1)).toEqual([]);
    // The system carries on through the surviving nodes.
    expect(system.deps.amqp.isConnected).toBe(true);
  }, 400_000);
});

function isolatedPrefix(): string {
  return `00c1${String(process.pid % 10000).padStart(4, "0")}000000`;
}
