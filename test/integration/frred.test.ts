import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import amqplib from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import type { Config } from "../../src/core/config.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

let db: TestDatabase;
let conn: amqplib.ChannelModel;
let ch: amqplib.ConfirmChannel;
const tempDirs: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  conn = await amqplib.connect(isolatedAmqpConfig().url);
  ch = await conn.createConfirmChannel();
});

afterAll(async () => {
  await conn?.close();
  await db?.drop();
  for (const dir of tempDirs) {
    await rm(dir, { recursive: true, force: true });
  }
});

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

async function mappedDevice(source = "ttn"): Promise<{ puid: number; luid: number }> {
  const [pd] = await sql<{ uid: number }>(
    "insert into physical_devices (source_name, name, source_ids) values ($1, 'pd', '{}') returning uid",
    [source],
  );
  const [ld] = await sql<{ uid: number }>(
    "insert into logical_devices (name) values ('ld') returning uid",
  );
  // From before the messages' timestamps: messages are routed by the mapping of their time.
  await sql(
    "insert into physical_logical_map (physical_uid, logical_uid, start_time) values ($1, $2, '2020-01-01T00:00:00Z')",
    [pd!.uid, ld!.uid],
  );
  return { puid: pd!.uid, luid: ld!.uid };
}

function msg(p_uid: number, extra: Record<string, unknown> = {}) {
  return {
    broker_correlation_id: randomUUID(),
    p_uid,
    timestamp: "2023-01-30T06:21:56Z",
    timeseries: [{ name: "battery (v)", value: 4.16 }],
    ...extra,
  };
}

async function newTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "frred-it-"));
  tempDirs.push(dir);
  return dir;
}

/** One running mapper + frred pair with exchanges and queues of its own. */
class Rig {
  readonly amqp: Config["amqp"] = isolatedAmqpConfig();
  readonly mapperQueue = this.amqp.queuePrefix + QUEUE_NAMES.mapper;
  readonly frredQueue = this.amqp.queuePrefix + QUEUE_NAMES.frred;
  readonly dir: string;
  system: RunningSystem | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  async start(env: Record<string, string> = {}): Promise<void> {
    this.system = await startTestSystem(
      ["mapper", "frred"],
      testConfig(db, this.amqp, { FRRED_DIR: this.dir, ...env }),
    );
    await waitFor(
      async () =>
        (await this.consumers(this.mapperQueue)) > 0 && (await this.consumers(this.frredQueue)) > 0,
      15_000,
      "consumers",
    );
  }

  async consumers(queue: string): Promise<number> {
    const probe = await conn.createChannel();
    probe.on("error", () => undefined);
    try {
      return (await probe.checkQueue(queue)).consumerCount;
    } catch {
      return 0;
    } finally {
      await probe.close().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    await this.system?.stop();
    await cleanupAmqp(this.amqp, [
      this.mapperQueue,
      deadLetterQueueName(this.mapperQueue),
      this.frredQueue,
      deadLetterQueueName(this.frredQueue),
    ]);
  }

  async publishPhysical(...bodies: unknown[]): Promise<void> {
    for (const body of bodies) {
      ch.publish(this.amqp.ptsExchange, "", Buffer.from(JSON.stringify(body)), {
        persistent: true,
      });
    }
    await ch.waitForConfirms();
  }

  async publishLogical(...bodies: unknown[]): Promise<void> {
    for (const body of bodies) {
      ch.publish(
        this.amqp.ltsExchange,
        "logical_timeseries",
        Buffer.from(typeof body === "string" ? body : JSON.stringify(body)),
        { persistent: true },
      );
    }
    await ch.waitForConfirms();
  }

  async deadLetters(): Promise<amqplib.GetMessage[]> {
    const out: amqplib.GetMessage[] = [];
    for (;;) {
      const m = await ch.get(deadLetterQueueName(this.frredQueue), { noAck: true });
      if (m === false) {
        return out;
      }
      out.push(m);
    }
  }

  async metric(name: string, labels = 'component="frred"'): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.system!.opsPort}/metrics`)).text();
    const escaped = labels.replace(/[{}]/g, "\\$&");
    const match = new RegExp(`^${name}\\{${escaped}\\} (\\d+)$`, "m").exec(text);
    return match ? Number(match[1]) : 0;
  }

  async readiness(): Promise<{ status: number; body: { components: Record<string, boolean> } }> {
    const res = await fetch(`http://127.0.0.1:${this.system!.opsPort}/readyz`);
    return {
      status: res.status,
      body: (await res.json()) as { components: Record<string, boolean> },
    };
  }

  /** Directories (not temporaries) for a correlation id. */
  async dirsFor(cid: string): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((d) => d.startsWith(`${cid}_`));
    } catch {
      return [];
    }
  }

  async fileOf(cid: string, dirName: string): Promise<Record<string, unknown>> {
    const text = await readFile(join(this.dir, dirName, `${cid}.json`), "utf8");
    expect(text.endsWith("\n")).toBe(false);
    return JSON.parse(text) as Record<string, unknown>;
  }
}

describe("FRRED writer, all sources", () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = new Rig(await newTempDir());
    await rig.start();
  });
  afterAll(() => rig?.stop());

  it("writes a mapped message into its own directory, l_uid included", async () => {
    const { puid, luid } = await mappedDevice();
    const m = msg(puid, { extra: "kept" });
    await rig.publishPhysical(m);
    const cid = m.broker_correlation_id;
    await waitFor(async () => (await rig.dirsFor(cid)).length === 1, 15_000, "message directory");
    const [dir] = await rig.dirsFor(cid);
    expect(dir).toMatch(new RegExp(`^${cid}_[0-9a-f]{8}$`));
    expect(await readdir(join(rig.dir, dir!))).toEqual([`${cid}.json`]);
    const written = await rig.fileOf(cid, dir!);
    expect(written).toEqual({ ...m, l_uid: luid });
    expect(Object.keys(written)).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
      "extra",
      "l_uid",
    ]);
    expect((await stat(join(rig.dir, dir!))).mode & 0o777).toBe(0o755);
    expect((await rig.readiness()).status).toBe(200);
  });

  it("writes a message published twice only once, without error", async () => {
    const { puid } = await mappedDevice();
    const m = msg(puid);
    const outBefore = await rig.metric("broker_messages_out_total");
    await rig.publishPhysical(m);
    await waitFor(
      async () => (await rig.dirsFor(m.broker_correlation_id)).length === 1,
      15_000,
      "first write",
    );
    const [dir] = await rig.dirsFor(m.broker_correlation_id);
    const before = await stat(join(rig.dir, dir!, `${m.broker_correlation_id}.json`));
    await rig.publishPhysical(m);
    await waitFor(
      async () => (await rig.metric("broker_messages_out_total")) >= outBefore + 2,
      15_000,
      "second delivery acked",
    );
    expect(await rig.dirsFor(m.broker_correlation_id)).toEqual([dir]);
    const after = await stat(join(rig.dir, dir!, `${m.broker_correlation_id}.json`));
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await rig.deadLetters()).toEqual([]);
  });

  it("keeps every message derived from one correlation id", async () => {
    const a = await mappedDevice("ydoc");
    const b = await mappedDevice("ydoc");
    const cid = randomUUID();
    await rig.publishPhysical(
      msg(a.puid, { broker_correlation_id: cid }),
      msg(b.puid, { broker_correlation_id: cid }),
    );
    await waitFor(async () => (await rig.dirsFor(cid)).length === 2, 15_000, "two directories");
    const luids = await Promise.all(
      (await rig.dirsFor(cid)).map(async (d) => (await rig.fileOf(cid, d)).l_uid),
    );
    expect(luids.sort()).toEqual([a.luid, b.luid].sort());
  });

  it("dead-letters bodies that are not valid logical messages, with the reason", async () => {
    const { puid } = await mappedDevice();
    const noLuid = msg(puid);
    await rig.publishLogical(
      "{not json",
      noLuid,
      msg(puid, { l_uid: 5, timestamp: "2023-01-30T06:21:56" }),
    );
    let dead: amqplib.GetMessage[] = [];
    await waitFor(
      async () => {
        dead = dead.concat(await rig.deadLetters());
        return dead.length >= 3;
      },
      15_000,
      "three dead letters",
    );
    expect(dead.map((d) => d.properties.headers?.["x-broker-reason"]).sort()).toEqual([
      "invalid_json",
      "invalid_message",
      "missing_l_uid",
    ]);
    expect(await rig.dirsFor(noLuid.broker_correlation_id)).toEqual([]);
  });
});

describe("FRRED writer with FRRED_SOURCES=wombat", () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = new Rig(await newTempDir());
    await rig.start({ FRRED_SOURCES: "wombat" });
  });
  afterAll(() => rig?.stop());

  it("acknowledges other sources' messages without writing them", async () => {
    const ttn = await mappedDevice("ttn");
    const wombat = await mappedDevice("wombat");
    const skipped = msg(ttn.puid);
    const written = msg(wombat.puid);
    await rig.publishPhysical(skipped, written);
    await waitFor(
      async () => (await rig.dirsFor(written.broker_correlation_id)).length === 1,
      15_000,
      "wombat directory",
    );
    // Both deliveries were acknowledged, and only one directory exists.
    await waitFor(
      async () => (await rig.metric("broker_messages_out_total")) >= 2,
      15_000,
      "both acked",
    );
    expect(await rig.dirsFor(skipped.broker_correlation_id)).toEqual([]);
    expect(await readdir(rig.dir)).toHaveLength(1);
    expect(await rig.deadLetters()).toEqual([]);
  });

  it("dead-letters a message whose physical device does not exist", async () => {
    const ghost = msg(987_654, { l_uid: 1 });
    await rig.publishLogical(ghost);
    let dead: amqplib.GetMessage[] = [];
    await waitFor(
      async () => {
        dead = dead.concat(await rig.deadLetters());
        return dead.length >= 1;
      },
      15_000,
      "dead letter",
    );
    expect(dead[0]!.properties.headers?.["x-broker-reason"]).toBe("unknown_device");
    expect(await rig.dirsFor(ghost.broker_correlation_id)).toEqual([]);
  });
});

describe("FRRED writer with a base directory that is missing at first", () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = new Rig(join(await newTempDir(), "raw_data"));
    await rig.start();
  });
  afterAll(() => rig?.stop());

  it("keeps messages waiting, not ready, and writes them once the directory appears", async () => {
    const { puid } = await mappedDevice();
    const messages = [
      msg(puid),
      msg(puid, { timestamp: "2023-01-30T06:30:00Z" }),
      msg(puid, { timestamp: "2023-01-30T06:40:00Z" }),
    ];
    await rig.publishPhysical(...messages);
    await waitFor(
      async () => (await rig.metric("broker_messages_retried_total")) >= 3,
      15_000,
      "a retry",
    );
    const readiness = await rig.readiness();
    expect(readiness.status).toBe(503);
    expect(readiness.body.components).toMatchObject({ frred: false, mapper: true });
    await expect(stat(rig.dir)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await rig.deadLetters()).toEqual([]);

    await mkdir(rig.dir);
    await waitFor(
      async () => {
        const counts = await Promise.all(messages.map((m) => rig.dirsFor(m.broker_correlation_id)));
        return counts.every((c) => c.length === 1);
      },
      30_000,
      "all three written",
    );
    await waitFor(async () => (await rig.readiness()).status === 200, 15_000, "ready again");
    expect(await rig.deadLetters()).toEqual([]);
    expect((await readdir(rig.dir)).filter((d) => d.startsWith(".tmp-"))).toEqual([]);
  });
});
