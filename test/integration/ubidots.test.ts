import { randomUUID } from "node:crypto";

import amqplib from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName } from "../../src/bus/topology.js";
import type { Config } from "../../src/core/config.js";
import { updateLogicalDevice } from "../../src/db/repositories/logical-devices.js";
import { claimUbidotsLabel } from "../../src/db/repositories/ubidots.js";
import { UBIDOTS_QUEUE } from "../../src/delivery/ubidots/ubidots-writer.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { UbidotsStandIn } from "../helpers/ubidots-standin.js";

const TOKEN = "BBFF-test-token";

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

async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  return (await db.handle.pool.query(text, params)).rows as T[];
}

interface Device {
  puid: number;
  luid: number;
}

/** A physical and a logical device (the writer reads both; no mapping needed). */
async function device(
  options: { source?: string; sourceIds?: object; properties?: object; ldProperties?: object } = {},
): Promise<Device> {
  const [pd] = await sql<{ uid: number }>(
    `insert into physical_devices (source_name, name, source_ids, properties, location)
     values ($1, 'pd', $2, $3, ST_SetSRID(ST_MakePoint(148.5, -33.2), 4283)) returning uid`,
    [
      options.source ?? "ttn",
      JSON.stringify(options.sourceIds ?? {}),
      JSON.stringify(options.properties ?? {}),
    ],
  );
  const [ld] = await sql<{ uid: number }>(
    "insert into logical_devices (name, properties) values ($1, $2) returning uid",
    [`ld ${randomUUID().slice(0, 8)}`, JSON.stringify(options.ldProperties ?? {})],
  );
  return { puid: pd!.uid, luid: ld!.uid };
}

async function ubidotsOf(luid: number): Promise<Record<string, unknown> | null> {
  const [row] = await sql<{ u: Record<string, unknown> | null }>(
    "select properties -> 'ubidots' as u from logical_devices where uid = $1",
    [luid],
  );
  return row?.u ?? null;
}

class Rig {
  readonly amqp: Config["amqp"] = isolatedAmqpConfig();
  readonly queue = this.amqp.queuePrefix + UBIDOTS_QUEUE;
  readonly systems: RunningSystem[] = [];
  standIn!: UbidotsStandIn;

  async start(copies: number, rate: number, env: Record<string, string> = {}): Promise<void> {
    this.standIn = new UbidotsStandIn({ token: TOKEN, rate });
    const url = await this.standIn.start();
    for (let i = 0; i < copies; i++) {
      this.systems.push(
        await startTestSystem(
          ["ubidots"],
          testConfig(db, this.amqp, {
            UBIDOTS_URL: url,
            UBIDOTS_API_TOKEN: TOKEN,
            UBIDOTS_RATE_LIMIT: String(rate),
            UBIDOTS_TIMEOUT_MS: "400",
            WRITER_RETRY_INITIAL_MS: "50",
            WRITER_RETRY_MAX_MS: "500",
            WRITER_SUSPEND_MS: "300",
            WRITER_POLL_MS: "100",
            ...env,
          }),
        ),
      );
    }
    await waitFor(
      async () => this.systems.every((s) => s.components.every((c) => c.isReady?.() !== false)),
      15_000,
      "writers consuming",
    );
  }

  async stop(): Promise<void> {
    for (const s of this.systems) {
      await s.stop();
    }
    await this.standIn?.stop();
    await cleanupAmqp(this.amqp, [this.queue, deadLetterQueueName(this.queue)]);
  }

  async publish(bodies: readonly unknown[]): Promise<void> {
    for (let i = 0; i < bodies.length; i += 1000) {
      for (const body of bodies.slice(i, i + 1000)) {
        ch.publish(this.amqp.ltsExchange, "logical_timeseries", Buffer.from(JSON.stringify(body)), {
          persistent: true,
        });
      }
      await ch.waitForConfirms();
    }
  }

  async deadLetters(): Promise<amqplib.GetMessage[]> {
    const out: amqplib.GetMessage[] = [];
    for (;;) {
      const m = await ch.get(deadLetterQueueName(this.queue), { noAck: true });
      if (m === false) {
        return out;
      }
      out.push(m);
    }
  }

  async pending(): Promise<number> {
    const [row] = await sql<{ n: string }>(
      "select count(*) as n from delivery_queue where writer = 'ubidots' and delivered_at is null",
    );
    return Number(row!.n);
  }

  async delivered(): Promise<number> {
    const [row] = await sql<{ n: string }>(
      "select count(*) as n from delivery_queue where writer = 'ubidots' and delivered_at is not null",
    );
    return Number(row!.n);
  }

  async metric(name: string, copy = 0): Promise<number> {
    const m = this.systems[copy]!.deps.metrics.registry.getSingleMetric(name);
    return m ? (await m.get()).values.reduce((sum, v) => sum + v.value, 0) : 0;
  }
}

let t0 = Date.parse("2024-06-01T00:00:00Z");
function msg(d: Device, timeseries: { name: string; value: unknown }[]) {
  t0 += 1000;
  return {
    broker_correlation_id: randomUUID(),
    p_uid: d.puid,
    l_uid: d.luid,
    timestamp: new Date(t0).toISOString(),
    timeseries,
  };
}

describe("Ubidots writer, two copies on one token budget", () => {
  const rig = new Rig();
  beforeAll(() => rig.start(2, 4));
  afterAll(() => rig.stop());

  it("never goes over 4 requests/s together, fills bodies up to the limit, and labels new devices once", async () => {
    // Devices already known to Ubidots (label and record stored): only their posts are sent.
    const known = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        device({ ldProperties: { ubidots: { label: `known-${i}`, id: `x${i}` } } }),
      ),
    );
    const messages = known.flatMap((d) =>
      Array.from({ length: 6 }, () => msg(d, [{ name: "temperature", value: Math.random() * 40 }])),
    );
    await rig.publish(messages);
    await waitFor(async () => (await rig.delivered()) === messages.length, 30_000, "all delivered");
    expect(rig.standIn.rateLimited).toBe(0);
    expect(rig.standIn.totalDots()).toBe(messages.length);
    // Coalesced: far fewer requests than messages.
    expect(rig.standIn.posts).toBeLessThan(messages.length);
    expect(rig.standIn.tooLarge).toBe(0);
  });

  it("stores a new device's label before posting, describes it once, and keeps the label through API/CLI updates", async () => {
    const gb = await device({
      source: "greenbrain",
      sourceIds: { system_id: 5, station_id: 6, sensor_group_id: 7 },
    });
    const ttn = await device({
      properties: { ttn: { description: "probe", attributes: { uid: "DPI-1" } } },
    });
    rig.standIn.failGets = 1; // one record read fails: the label must still hold
    const base = await rig.delivered();
    await rig.publish([msg(gb, [{ name: "t", value: 1 }]), msg(ttn, [{ name: "t", value: 2 }])]);
    await waitFor(
      async () => rig.standIn.failGets === 0 && (await rig.delivered()) === base + 2,
      20_000,
      "first posts",
    );
    // The next message of each device tries the description again.
    await rig.publish([msg(gb, [{ name: "t", value: 3 }]), msg(ttn, [{ name: "t", value: 4 }])]);
    await waitFor(async () => (await rig.delivered()) === base + 4, 20_000, "second posts");
    for (const d of [gb, ttn]) {
      await waitFor(
        async () => typeof (await ubidotsOf(d.luid))?.id === "string",
        20_000,
        "device records",
      );
    }
    expect((await ubidotsOf(gb.luid))!.label).toBe("5-6-7");
    const ttnLabel = (await ubidotsOf(ttn.luid))!.label as string;
    expect(ttnLabel).toMatch(/^[0-9a-f-]{36}$/);
    expect(rig.standIn.creations.get("5-6-7")).toBe(1);
    expect(rig.standIn.creations.get(ttnLabel)).toBe(1);
    expect(rig.standIn.dots("5-6-7", "t").size).toBe(2);
    expect(rig.standIn.dots(ttnLabel, "t").size).toBe(2);
    const record = rig.standIn.devices.get(ttnLabel)!.record;
    expect(record).toMatchObject({
      description: "probe",
      properties: {
        "dpi-uid": "DPI-1",
        _location_type: "manual",
        _location_fixed: { lat: -33.2, lng: 148.5 },
      },
    });
    // IoTa stores the v2.0 record as properties.ubidots.
    expect(await ubidotsOf(ttn.luid)).toMatchObject({
      id: record.id,
      label: ttnLabel,
      description: "probe",
    });

    // An update that replaces properties without `ubidots` (API PATCH/PUT, broker ld update)
    // keeps the label; one naming another label explicitly wins.
    await updateLogicalDevice(db.handle.db, gb.luid, { properties: { note: "moved" } });
    expect(await ubidotsOf(gb.luid)).toEqual({ label: "5-6-7" });
    await updateLogicalDevice(db.handle.db, gb.luid, {
      properties: { ubidots: { label: "other" } },
    });
    expect(await ubidotsOf(gb.luid)).toEqual({ label: "other" });
  });

  it("settles two copies racing on a new device on one label", async () => {
    const d = await device();
    const [a, b] = await Promise.all([
      claimUbidotsLabel(db.handle.db, d.luid, "first"),
      claimUbidotsLabel(db.handle.db, d.luid, "second"),
    ]);
    expect(a).toBe(b);
    expect((await ubidotsOf(d.luid))!.label).toBe(a);
  });

  it("counts and reports values that are not numbers, and sends the rest", async () => {
    const d = await device({ ldProperties: { ubidots: { label: "mixed", id: "m" } } });
    const before =
      (await rig.metric("broker_writer_values_skipped_total", 0)) +
      (await rig.metric("broker_writer_values_skipped_total", 1));
    await rig.publish([
      msg(d, [
        { name: "ok", value: 1.5 },
        { name: "text", value: "dry" },
        { name: "n", value: "7" },
      ]),
    ]);
    await waitFor(async () => rig.standIn.dots("mixed", "n").size === 1, 15_000, "sent");
    expect(rig.standIn.dots("mixed", "ok").size).toBe(1);
    expect(rig.standIn.dots("mixed", "text").size).toBe(0);
    await waitFor(
      async () =>
        (await rig.metric("broker_writer_values_skipped_total", 0)) +
          (await rig.metric("broker_writer_values_skipped_total", 1)) ===
        before + 1,
      5_000,
      "skipped counted",
    );
  });

  it("stops sending while the token is refused, is not ready, keeps the messages, and resumes", async () => {
    const d = await device({ ldProperties: { ubidots: { label: "refused", id: "r" } } });
    rig.standIn.refuseToken = true;
    await rig.publish([msg(d, [{ name: "v", value: 1 }]), msg(d, [{ name: "v", value: 2 }])]);
    await waitFor(
      async () =>
        (await rig.metric("broker_writer_suspended", 0)) +
          (await rig.metric("broker_writer_suspended", 1)) >=
        1,
      15_000,
      "suspended",
    );
    const ready = await Promise.all(
      rig.systems.map((s) => fetch(`http://127.0.0.1:${s.opsPort}/readyz`)),
    );
    expect(ready.some((r) => r.status === 503)).toBe(true);
    expect(await rig.pending()).toBe(2);
    expect(await rig.deadLetters()).toEqual([]);
    rig.standIn.refuseToken = false;
    await waitFor(async () => (await rig.pending()) === 0, 15_000, "resumed");
    expect(rig.standIn.dots("refused", "v").size).toBe(2);
  });
});

describe("Ubidots writer under load and faults", () => {
  const rig = new Rig();
  afterAll(() => rig.stop());

  it("delivers 10,000 messages of 200 devices exactly once through an outage, a 429 storm, timeouts, 5xx and resets", async () => {
    await rig.start(2, 100, { UBIDOTS_TIMEOUT_MS: "1000" });
    const devices = await Promise.all(Array.from({ length: 200 }, () => device()));
    const messages = [];
    for (let round = 0; round < 50; round++) {
      for (const d of devices) {
        messages.push(
          msg(d, [
            { name: "temperature", value: Math.round(Math.random() * 4000) / 100 },
            { name: "battery (v)", value: 3 + Math.random() },
          ]),
        );
      }
    }
    rig.standIn.faults.push("timeout", "502", "reset", "timeout", "502", "reset", "429");
    rig.standIn.failGets = 20;
    const base = await rig.delivered();
    const publishing = rig.publish(messages);
    await waitFor(async () => rig.standIn.posts > 100, 60_000, "some posts");
    rig.standIn.down = true;
    await new Promise((r) => setTimeout(r, 2_000));
    rig.standIn.down = false;
    await waitFor(async () => rig.standIn.posts > 300, 60_000, "more posts");
    rig.standIn.storm = true;
    await new Promise((r) => setTimeout(r, 2_000));
    rig.standIn.storm = false;
    rig.standIn.faults.push("timeout", "reset", "502");
    await publishing;
    await waitFor(
      async () => {
        return (await rig.delivered()) === base + messages.length;
      },
      120_000,
      "all delivered",
    );

    // Every value exactly once, with its correlation id; nothing written over, nothing dead.
    expect(rig.standIn.totalDots()).toBe(messages.length * 2);
    // A dot is sent again only when the writer gave up waiting for the answer to the request
    // that stored it (a client timeout under load): the same dot, same timestamp, which Ubidots
    // keeps once, as the stand-in does. Never a different value for a timestamp.
    expect(rig.standIn.conflictingOverwrites).toBe(0);
    expect(rig.standIn.overwrites).toBeLessThan(100);
    for (const m of messages) {
      const label = (await ubidotsOf(m.l_uid))!.label as string;
      const dot = rig.standIn.dots(label, "temperature").get(Date.parse(m.timestamp));
      expect(dot?.value).toBe(m.timeseries[0]!.value);
      expect(dot?.context).toEqual({ broker_correlation_id: m.broker_correlation_id });
    }
    // One Ubidots device per logical device, each created once, each record stored.
    expect(rig.standIn.devices.size).toBe(200);
    expect([...rig.standIn.creations.values()].every((n) => n === 1)).toBe(true);
    const labels = await Promise.all(devices.map(async (d) => (await ubidotsOf(d.luid))!));
    expect(new Set(labels.map((l) => l.label)).size).toBe(200);
    // Twenty record reads failed; each device's next message describes it again.
    await rig.publish(devices.map((d) => msg(d, [{ name: "temperature", value: 1 }])));
    await waitFor(
      async () =>
        (await Promise.all(devices.map((d) => ubidotsOf(d.luid)))).every(
          (u) => typeof u?.id === "string",
        ),
      30_000,
      "records stored",
    );
    expect(rig.standIn.tooLarge).toBe(0);
    expect(await rig.deadLetters()).toEqual([]);
    // The last round (sent for the descriptions) is delivered too.
    await waitFor(async () => (await rig.pending()) === 0, 30_000, "last round delivered");
  }, 240_000);
});
