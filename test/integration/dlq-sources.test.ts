import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { QUEUE_NAMES } from "../../src/bus/topology.js";
import { resolveDeadLetterQueue } from "../../src/dlq/catalogue.js";
import { createDeadLetterService } from "../../src/dlq/service.js";
import {
  cleanupAmqp,
  isolatedAmqpConfig,
  openTestChannel,
  queueCount,
  waitFor,
} from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { netvoxUplink } from "../helpers/ttn.js";

const amqp = isolatedAmqpConfig();
const dead = `${amqp.queuePrefix}ttn_webhook.dead`;
const physical = amqp.queuePrefix + QUEUE_NAMES.mapper;
let db: TestDatabase;
let system: RunningSystem;
let webhook: string;

beforeAll(async () => {
  db = await createTestDatabase();
  system = await startTestSystem(["ttn-webhook"], testConfig(db, amqp));
  webhook = `http://127.0.0.1:${system.components[0]!.port!()}/ttn/webhook/up`;
  await waitFor(async () => (await queueCount(dead).catch(() => -1)) === 0, 15_000, "topology");
});

afterAll(async () => {
  await system?.stop();
  await cleanupAmqp(amqp, [dead]);
  await db?.drop();
});

describe("replaying a source's dead letters through its ingest path", () => {
  it("posts TTN dead letters to the webhook again: a good one is ingested, a bad one is dead-lettered afresh", async () => {
    // A body the webhook refuses today: dead-lettered by the webhook itself.
    const refused = await fetch(webhook, { method: "POST", body: '{"uplink_message": 5}' });
    expect(refused.status).toBe(400);
    await waitFor(async () => (await queueCount(dead)) === 1, 10_000, "webhook dead letter");
    // A good uplink that was dead-lettered earlier (say, before its decoder was installed).
    const uplink = netvoxUplink("a84041000181c0de", 7, "2024-05-01T00:00:00.000Z");
    const { conn } = await openTestChannel();
    const confirm = await conn.createConfirmChannel();
    confirm.publish(amqp.deadLetterExchange, dead, Buffer.from(JSON.stringify(uplink)), {
      persistent: true,
      correlationId: randomUUID(),
      timestamp: Math.floor(Date.now() / 1000),
      headers: {
        "x-broker-reason": "decoder_failed",
        "x-broker-error": "no decoder yet",
        "x-broker-source": "ttn",
      },
    });
    await confirm.waitForConfirms();
    await conn.close();
    expect(await queueCount(dead)).toBe(2);
    const before = await queueCount(physical);

    // The webhook is down: nothing leaves the dead-letter queue.
    const down = createDeadLetterService(
      system.deps.amqp,
      testConfig(db, amqp, { DLQ_TTN_WEBHOOK_URL: "http://127.0.0.1:1/ttn/webhook/up" }),
    );
    const queue = resolveDeadLetterQueue("ttn", amqp.queuePrefix, down.queues)!;
    expect(queue.name).toBe(dead);
    const kept = await down.replay(queue, { kind: "all" });
    expect(kept).toMatchObject({ matched: 2, replayed: 0, notReplayed: { ingest_failed: 2 } });
    expect(await queueCount(dead)).toBe(2);

    const service = createDeadLetterService(
      system.deps.amqp,
      testConfig(db, amqp, { DLQ_TTN_WEBHOOK_URL: webhook }),
    );
    const result = await service.replay(queue, { kind: "reason", reason: "decoder_failed" });
    expect(result).toMatchObject({ matched: 1, replayed: 1, complete: true });
    expect(await queueCount(physical)).toBe(before + 1);
    const rows = await db.handle.pool.query(
      "select count(*)::int as n from raw_messages where json_msg->'end_device_ids'->>'dev_eui' = $1",
      ["a84041000181c0de"],
    );
    expect(rows.rows[0].n).toBe(1);

    const again = await service.replay(queue, { kind: "all" });
    expect(again).toMatchObject({ matched: 1, replayed: 1 });
    // Refused again: the webhook dead-lettered it anew, with today's reason.
    const shown = await service.show(queue, { limit: 10 });
    expect(shown.messages).toBe(1);
    expect(shown.letters[0]).toMatchObject({ origin: { kind: "source", source: "ttn" } });
  });
});
