import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { QUEUE_NAMES } from "../../src/bus/topology.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { AMQP_URL } from "../helpers/env.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { ttnWebhookQueues } from "../helpers/ttn.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { RAW_CORRELATION_HEADER } from "../../src/core/message.js";

/**
 * Accepting through a RabbitMQ outage (issue 12): while PostgreSQL is up the webhook answers 204
 * once the raw row and the outbox row are committed, and publishes the outbox in order once
 * RabbitMQ is back. RabbitMQ is made unreachable by a TCP proxy, never by stopping it.
 */

const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const rabbit = new URL(AMQP_URL);
let db: TestDatabase;
let proxy: TcpProxy;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

interface Physical {
  broker_correlation_id: string;
  p_uid: number;
  timestamp: string;
  /** The `x-broker-raw-correlation-id` header it came with (the mapper stores it). */
  rawHeader?: unknown;
}

function uplink(devEui: string, fCnt: number): Record<string, unknown> {
  const at = new Date(Date.UTC(2024, 0, 1) + fCnt * 60_000).toISOString();
  return {
    end_device_ids: {
      device_id: `dev-${devEui}`,
      application_ids: { application_id: "outbox-test" },
      dev_eui: devEui,
    },
    received_at: at,
    uplink_message: { f_port: 1, f_cnt: fCnt, received_at: at, decoded_payload: { n: fCnt } },
  };
}

function startWebhook(): Promise<RunningSystem> {
  const url = new URL(AMQP_URL);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  return startTestSystem(["ttn-webhook"], testConfig(db, { ...amqpConfig, url: url.toString() }));
}

function webhookUrl(system: RunningSystem): string {
  return `http://127.0.0.1:${system.components[0]!.port!()}`;
}

async function post(system: RunningSystem, body: unknown): Promise<number> {
  const res = await fetch(`${webhookUrl(system)}/ttn/webhook/up`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}

async function outboxRows(): Promise<number> {
  const { rows } = await db.handle.pool.query<{ n: string }>(
    "select count(*) as n from ingest_outbox",
  );
  return Number(rows[0]!.n);
}

/** Reads the mapper's queue until `count` messages arrived (acked as read). */
async function receive(count: number): Promise<Physical[]> {
  const out: Physical[] = [];
  await waitFor(
    async () => {
      for (;;) {
        const m = await ch.get(mapperQueue, { noAck: true });
        if (m === false) {
          return out.length >= count;
        }
        out.push({
          ...(JSON.parse(m.content.toString()) as Physical),
          rawHeader: (m.properties.headers as Record<string, unknown> | undefined)?.[
            RAW_CORRELATION_HEADER
          ],
        });
      }
    },
    60_000,
    `${count} physical messages`,
  );
  return out;
}

/** Posts `perDevice` uplinks for each device, one device's uplinks one after another. */
async function postAll(
  system: RunningSystem,
  devices: readonly string[],
  perDevice: number,
  first: number,
): Promise<number[]> {
  const statuses = await Promise.all(
    devices.map(async (eui) => {
      const out: number[] = [];
      for (let i = first; i < first + perDevice; i++) {
        out.push(await post(system, uplink(eui, i)));
      }
      return out;
    }),
  );
  return statuses.flat();
}

function expectOncePerUplinkInOrder(messages: readonly Physical[], expected: number): void {
  const ids = messages.map((m) => m.broker_correlation_id);
  expect(new Set(ids).size).toBe(expected);
  expect(ids).toHaveLength(expected);
  // Published directly or from the outbox, each names its raw message (a TTN uplink's own id).
  expect(messages.filter((m) => m.rawHeader !== m.broker_correlation_id)).toEqual([]);
  const byDevice = new Map<number, string[]>();
  for (const m of messages) {
    byDevice.set(m.p_uid, [...(byDevice.get(m.p_uid) ?? []), m.timestamp]);
  }
  for (const times of byDevice.values()) {
    expect(times).toEqual([...times].sort());
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  proxy = new TcpProxy({ host: rabbit.hostname, port: Number(rabbit.port || 5672) });
  await proxy.up();
  ({ conn, ch } = await openTestChannel());
});

afterAll(async () => {
  await proxy?.down();
  await conn?.close();
  await cleanupAmqp(amqpConfig, ttnWebhookQueues(amqpConfig));
  await db?.drop();
});

describe("TTN webhook through a RabbitMQ outage", () => {
  it("answers 204 while RabbitMQ is unreachable and publishes every accepted uplink once, in order per device, when it is back", async () => {
    const system = await startWebhook();
    try {
      await waitFor(() => system.deps.amqp.isConnected, 15_000, "connected");
      expect(await post(system, uplink("00000000000000e0", 0))).toBe(204);
      expect(await receive(1)).toHaveLength(1);
      expect(await outboxRows()).toBe(0);

      await proxy.down();
      await waitFor(() => !system.deps.amqp.isConnected, 15_000, "disconnected");
      // The webhook can still accept: its own /readyz stays ready.
      expect((await fetch(`${webhookUrl(system)}/readyz`)).status).toBe(200);
      // Known and new devices alike (device creation needs only PostgreSQL).
      const devices = ["00000000000000e0", "00000000000000e1", "00000000000000e2"];
      const statuses = await postAll(system, devices, 8, 1);
      expect(statuses).toEqual(Array.from({ length: 24 }, () => 204));
      expect(await outboxRows()).toBe(24);

      await proxy.up();
      const published = await receive(24);
      expectOncePerUplinkInOrder(published, 24);
      await waitFor(async () => (await outboxRows()) === 0, 30_000, "outbox empty");

      // Back to direct publishing once the outbox is empty.
      expect(await post(system, uplink("00000000000000e1", 100))).toBe(204);
      const after = await receive(1);
      expect(after).toHaveLength(1);
      expect(published.map((m) => m.broker_correlation_id)).not.toContain(
        after[0]!.broker_correlation_id,
      );
      expect(await outboxRows()).toBe(0);
    } finally {
      await proxy.up().catch(() => undefined);
      await system.stop();
    }
  }, 120_000);

  it("leaves what it could not publish in the outbox when stopped, and the next process publishes it", async () => {
    await proxy.down();
    const first = await startWebhook();
    try {
      const statuses = await postAll(first, ["00000000000000f0", "00000000000000f1"], 5, 1);
      expect(statuses).toEqual(Array.from({ length: 10 }, () => 204));
    } finally {
      await first.stop();
    }
    expect(await outboxRows()).toBe(10);
    await proxy.up();
    const second = await startWebhook();
    try {
      const published = await receive(10);
      expectOncePerUplinkInOrder(published, 10);
      await waitFor(async () => (await outboxRows()) === 0, 30_000, "outbox empty");
    } finally {
      await second.stop();
    }
  }, 120_000);
});
