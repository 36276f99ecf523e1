import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

import { AmqpConnection } from "../../src/bus/connection.js";
import { BatchConsumer } from "../../src/bus/consumer.js";
import { ConfirmedPublisher } from "../../src/bus/publisher.js";
import { QueueBusyError, QueueSweeper } from "../../src/bus/queue-sweep.js";
import {
  declareConsumerQueue,
  declareExchanges,
  QUEUE_NAMES,
  topologyOptions,
} from "../../src/bus/topology.js";
import { createLogger } from "../../src/core/logger.js";
import { Metrics } from "../../src/core/metrics.js";
import { knownDeadLetterQueues, type DeadLetterQueue } from "../../src/dlq/catalogue.js";
import { DeadLetterService, SweepInterruptedError } from "../../src/dlq/service.js";
import {
  cleanupAmqp,
  closeConnectionsNamed,
  isolatedAmqpConfig,
  openTestChannel,
  queueCount,
  waitFor,
} from "../helpers/bus.js";
import { ROOT, runBroker } from "../helpers/cli.js";

const logger = createLogger({ level: "silent" });
const config = isolatedAmqpConfig({ DELIVERY_LIMIT: "2" });
const queue = config.queuePrefix + QUEUE_NAMES.mapper;
const dead = `${queue}.dead`;
const connections: AmqpConnection[] = [];

/** The environment a `broker dlq` process needs to see this test's queues. */
const cliEnv = {
  AMQP_URL: config.url,
  PTS_EXCHANGE: config.ptsExchange,
  LTS_EXCHANGE: config.ltsExchange,
  EVENTS_EXCHANGE: config.eventsExchange,
  DEAD_LETTER_EXCHANGE: config.deadLetterExchange,
  QUEUE_PREFIX: config.queuePrefix,
  LOG_LEVEL: "silent",
};

function connection(name = `dlq-test-${randomUUID()}`): AmqpConnection {
  const c = new AmqpConnection({ url: config.url, name, logger, maxBackoffMs: 500 });
  c.start();
  connections.push(c);
  return c;
}

let conn: AmqpConnection;
let service: DeadLetterService;
let dlq: DeadLetterQueue;

/** The seeded dead letters, in queue order: [correlation id, reason]. */
let seeded: { cid: string; reason: string }[] = [];

interface Seen {
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly headers: Record<string, unknown>;
  readonly redelivered: boolean;
  readonly body: string;
}

/** Takes every message out of `q` (the test's own check, at the end of a test). */
async function drain(q: string): Promise<Seen[]> {
  const { conn: c, ch } = await openTestChannel();
  const seen: Seen[] = [];
  try {
    const total = (await ch.checkQueue(q)).messageCount;
    await ch.prefetch(2_000);
    await ch.consume(q, (m) => {
      if (m !== null) {
        seen.push({
          messageId: m.properties.messageId as string | undefined,
          correlationId: m.properties.correlationId as string | undefined,
          headers: (m.properties.headers ?? {}) as Record<string, unknown>,
          redelivered: m.fields.redelivered,
          body: m.content.toString("utf8"),
        });
      }
    });
    await waitFor(() => seen.length >= total, 15_000, `${total} messages from ${q}`);
    ch.ackAll();
  } finally {
    await c.close();
  }
  return seen;
}

/**
 * Dead letters made the way the system makes them: a BatchConsumer dead-letters the messages
 * its handler refuses (our headers), and one message is dead-lettered by RabbitMQ itself after
 * the quorum queue's delivery limit (a consumer that keeps crashing: get + requeue).
 */
async function seed(): Promise<void> {
  const { conn: c, ch } = await openTestChannel();
  try {
    await ch.purgeQueue(queue);
    await ch.purgeQueue(dead);
  } finally {
    await c.close();
  }
  const reasons = ["unknown_device", "invalid_message", "unknown_device", "invalid_message"];
  reasons.push("unknown_device", "unknown_device");
  seeded = reasons.map((reason) => ({ cid: randomUUID(), reason }));
  const publisher = new ConfirmedPublisher({ connection: conn, exchange: "", logger });
  await publisher.publish(
    seeded.map((s, i) => ({
      body: { broker_correlation_id: s.cid, p_uid: i + 1, bad: s.reason },
      messageId: `m${i}`,
      correlationId: s.cid,
      routingKey: queue,
    })),
  );
  const consumer = new BatchConsumer({
    connection: conn,
    queue: { name: queue, exchange: config.ptsExchange },
    topology: topologyOptions(config),
    handler: async (batch) =>
      batch.map((d) => {
        const body = JSON.parse(d.body.toString("utf8")) as { bad: string };
        return { action: "dead-letter", reason: body.bad, error: `refused: ${body.bad}` };
      }),
    deadLetters: new ConfirmedPublisher({
      connection: conn,
      exchange: config.deadLetterExchange,
      logger,
    }),
    isHealthy: async () => true,
    logger,
    metrics: new Metrics({ defaultMetrics: false }),
    component: "mapper",
    batchSize: 50,
  });
  consumer.start();
  await waitFor(async () => (await queueCount(dead)) === seeded.length, 15_000, "dead letters");
  await consumer.stop();

  const crashing = { cid: randomUUID(), reason: "delivery_limit" };
  await publisher.publish([
    {
      body: { broker_correlation_id: crashing.cid, p_uid: 99 },
      messageId: "m-crash",
      correlationId: crashing.cid,
      routingKey: queue,
      headers: { "x-custom": "kept" },
    },
  ]);
  await publisher.close();
  const { conn: c2, ch: ch2 } = await openTestChannel();
  try {
    for (let i = 0; i < 10; i++) {
      const m = await ch2.get(queue, { noAck: false });
      if (m === false) {
        await waitFor(async () => (await queueCount(dead)) === seeded.length + 1, 5_000, "limit");
        break;
      }
      ch2.nack(m, false, true);
    }
  } finally {
    await c2.close();
  }
  seeded.push(crashing);
  expect(await queueCount(dead)).toBe(seeded.length);
}

beforeAll(async () => {
  const { conn: c, ch } = await openTestChannel();
  await declareExchanges(ch, config);
  await declareConsumerQueue(
    ch,
    { name: queue, exchange: config.ptsExchange },
    topologyOptions(config),
  );
  await c.close();
  conn = connection();
  await conn.waitUntilConnected();
  service = new DeadLetterService({
    sweeper: new QueueSweeper(conn),
    queues: knownDeadLetterQueues(config.queuePrefix),
    batchSize: 2,
  });
  dlq = service.queues.find((q) => q.name === dead)!;
});

beforeEach(async () => {
  await seed();
});

afterAll(async () => {
  for (const c of connections) {
    await c.close();
  }
  await cleanupAmqp(config, [queue, dead]);
});

describe("looking at dead letters", () => {
  it("ls and show report reasons, errors, ids and ages and leave order and delivery counts alone", async () => {
    const list = await service.list();
    const summary = list.find((s) => s.queue === dead)!;
    expect(summary).toMatchObject({
      feeds: queue,
      messages: 7,
      reasons: { unknown_device: 4, invalid_message: 2, delivery_limit: 1 },
    });
    expect(summary.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(Date.parse(summary.oldest!)).toBeLessThanOrEqual(Date.now());
    // Source queues nobody declared are not listed.
    expect(list.map((s) => s.queue)).toEqual([dead]);

    const shown = await service.show(dlq, { limit: 2, reason: "unknown_device" });
    expect(shown).toMatchObject({ messages: 7, matched: 4 });
    expect(shown.letters).toHaveLength(2);
    expect(shown.letters[0]).toMatchObject({
      position: 1,
      reason: "unknown_device",
      error: "refused: unknown_device",
      correlationId: seeded[0]!.cid,
      messageId: "m0",
      origin: { kind: "queue", queue },
      component: "mapper",
      byRabbitmq: false,
    });
    expect(shown.letters[0]!.excerpt).toContain(seeded[0]!.cid);
    expect(shown.letters[1]!.position).toBe(3);
    const limit = (await service.show(dlq, { limit: 10, reason: "delivery_limit" })).letters[0]!;
    expect(limit).toMatchObject({
      reason: "delivery_limit",
      correlationId: seeded[6]!.cid,
      origin: { kind: "queue", queue },
      byRabbitmq: true,
    });
    expect(limit.error).toMatch(/delivery limit/);

    // Three looks later: same messages, same order, never delivered, headers untouched.
    const after = await drain(dead);
    expect(after.map((m) => m.correlationId)).toEqual(seeded.map((s) => s.cid));
    for (const m of after) {
      expect(m.redelivered).toBe(false);
      expect(m.headers["x-delivery-count"] ?? 0).toBe(0);
    }
    expect(after[0]!.headers["x-broker-reason"]).toBe("unknown_device");
    expect(after[6]!.headers["x-first-death-reason"]).toBe("delivery_limit");
  });

  it("a sweep of a long queue keeps every message, in order, undelivered", async () => {
    const long = `${config.queuePrefix}long.dead`;
    const { conn: c, ch } = await openTestChannel();
    await ch.assertQueue(long, { durable: true, arguments: { "x-queue-type": "quorum" } });
    await c.close();
    const publisher = new ConfirmedPublisher({ connection: conn, exchange: "", logger });
    const ids = Array.from({ length: 1_003 }, (_, i) => `m${i}`);
    await publisher.publish(ids.map((id) => ({ body: { id }, messageId: id, routingKey: long })));
    await publisher.close();
    const progress: number[] = [];
    const result = await new QueueSweeper(conn).sweep({
      queue: long,
      batchSize: 50,
      decide: async (batch) => batch.map(() => ({ action: "keep" })),
      onProgress: ({ done }) => progress.push(done),
    });
    expect(result).toMatchObject({ total: 1_003, seen: 1_003, kept: 1_003 });
    expect(progress.at(-1)).toBe(1_003);
    const after = await drain(long);
    expect(after.map((m) => m.messageId)).toEqual(ids);
    expect(
      after.filter((m) => m.redelivered || (m.headers["x-delivery-count"] ?? 0) !== 0),
    ).toEqual([]);
  });

  it("an interrupted look is an error, and loses nothing", async () => {
    const stop = new AbortController();
    const look = service.show(
      dlq,
      { limit: 10 },
      ({ done }) => {
        if (done > 0) {
          stop.abort();
        }
      },
      stop.signal,
    );
    await expect(look).rejects.toBeInstanceOf(SweepInterruptedError);
    const after = await drain(dead);
    // Rotated by the messages read before it stopped; nothing lost, nothing delivered twice.
    const cids = seeded.map((s) => s.cid);
    const read = cids.length - after.findIndex((m) => m.correlationId === cids[0]);
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(cids.length);
    expect(after.map((m) => m.correlationId)).toEqual([
      ...cids.slice(read),
      ...cids.slice(0, read),
    ]);
    expect(after.filter((m) => m.redelivered)).toEqual([]);
  });

  it("two operations on one queue never interleave", async () => {
    const other = new QueueSweeper(connection());
    let second: unknown;
    await new QueueSweeper(conn).sweep({
      queue: dead,
      decide: async (batch) => batch.map(() => ({ action: "keep" })),
      onConfirmed: async () => {
        second ??= await other
          .sweep({ queue: dead, decide: async (b) => b.map(() => ({ action: "keep" })) })
          .catch((err: unknown) => err);
      },
    });
    expect(second).toBeInstanceOf(QueueBusyError);
    expect(await queueCount(dead)).toBe(7);
  });
});

describe("replaying dead letters", () => {
  it("replays a subset by correlation id to the one queue it came from, the rest left in order", async () => {
    const chosen = [seeded[1]!.cid, seeded[4]!.cid];
    const result = await service.replay(dlq, { kind: "cids", cids: chosen });
    expect(result).toMatchObject({ messages: 7, matched: 2, replayed: 2, complete: true });
    const back = await drain(queue);
    expect(back.map((m) => m.correlationId)).toEqual(chosen);
    expect(back.map((m) => m.messageId)).toEqual(["m1", "m4"]);
    for (const m of back) {
      expect(Object.keys(m.headers).filter((k) => k.startsWith("x-broker-"))).toEqual([]);
    }
    const left = await drain(dead);
    expect(left.map((m) => m.correlationId)).toEqual(
      seeded.map((s) => s.cid).filter((c) => !chosen.includes(c)),
    );
  });

  it("replays by reason and never through the fanout exchange", async () => {
    // A second queue on the same fanout exchange (another writer) must see no duplicate.
    const { conn: c, ch } = await openTestChannel();
    const bystander = `${config.queuePrefix}bystander`;
    await ch.assertQueue(bystander, { durable: true });
    await ch.bindQueue(bystander, config.ptsExchange, "");
    await c.close();
    const result = await service.replay(dlq, { kind: "reason", reason: "invalid_message" });
    expect(result).toMatchObject({ matched: 2, replayed: 2 });
    expect((await drain(queue)).map((m) => m.correlationId)).toEqual([
      seeded[1]!.cid,
      seeded[3]!.cid,
    ]);
    expect(await queueCount(bystander)).toBe(0);
    expect(await queueCount(dead)).toBe(5);
  });

  it("replays a message RabbitMQ dead-lettered at the delivery limit with its count reset", async () => {
    const result = await service.replay(dlq, { kind: "reason", reason: "delivery_limit" });
    expect(result).toMatchObject({ matched: 1, replayed: 1 });
    const [back] = await drain(queue);
    expect(back!.correlationId).toBe(seeded[6]!.cid);
    expect(back!.messageId).toBe("m-crash");
    expect(back!.headers["x-custom"]).toBe("kept");
    expect(back!.headers["x-death"]).toBeUndefined();
    expect(back!.headers["x-first-death-reason"]).toBeUndefined();
    // First delivery from the queue again: the limit counts from zero.
    expect(back!.headers["x-delivery-count"] ?? 0).toBe(0);
    expect(back!.redelivered).toBe(false);
  });

  it("an interrupted replay loses nothing (connection killed between confirm and ack)", async () => {
    const name = `dlq-interrupted-${randomUUID()}`;
    const doomed = connection(name);
    await doomed.waitUntilConnected();
    const interrupted = new DeadLetterService({
      sweeper: {
        count: (q) => new QueueSweeper(doomed).count(q),
        sweep: (options) => {
          let batches = 0;
          return new QueueSweeper(doomed).sweep({
            ...options,
            onConfirmed: async () => {
              if (++batches === 2) {
                await closeConnectionsNamed(name);
                await waitFor(() => !doomed.isConnected, 5_000, "connection closed");
              }
            },
          });
        },
      },
      queues: service.queues,
      batchSize: 2,
    });
    await expect(interrupted.replay(dlq, { kind: "all" })).rejects.toThrow();
    await waitFor(async () => (await queueCount(dead)) === 5, 10_000, "unacked requeued");
    const replayed = await drain(queue);
    const left = await drain(dead);
    // Batches 1 and 2 were confirmed in the queue; batch 2 was never acked, so it is in both.
    expect(replayed.map((m) => m.correlationId)).toEqual(seeded.slice(0, 4).map((s) => s.cid));
    const all = new Set([...replayed, ...left].map((m) => m.correlationId));
    expect([...all].sort()).toEqual(seeded.map((s) => s.cid).sort());
    expect(left).toHaveLength(5);
  });
});

describe("purging dead letters", () => {
  it("purges one reason and keeps the rest in order", async () => {
    const result = await service.purge(dlq, "unknown_device");
    expect(result).toMatchObject({ messages: 7, purged: 4, complete: true });
    expect((await drain(dead)).map((m) => m.correlationId)).toEqual(
      [1, 3, 6].map((i) => seeded[i]!.cid),
    );
  });
});

/** Each `broker` process takes seconds to start from source on a shared machine. */
const CLI_TIMEOUT = 180_000;

describe("broker dlq (CLI)", { timeout: CLI_TIMEOUT }, () => {
  it("ls and show print JSON; replay needs a selection (exit 2)", async () => {
    const ls = await runBroker(["dlq", "ls"], { database: "postgres", env: cliEnv });
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout)).toMatchObject([{ queue: dead, messages: 7 }]);

    const show = await runBroker(
      ["dlq", "show", QUEUE_NAMES.mapper, "-n", "1", "--reason", "invalid_message"],
      { database: "postgres", env: cliEnv },
    );
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({
      queue: dead,
      matched: 2,
      letters: [{ correlationId: seeded[1]!.cid, reason: "invalid_message" }],
    });

    const bad = await runBroker(["dlq", "replay", dead], { database: "postgres", env: cliEnv });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toEqual([
      "error: give exactly one of --cid, --reason or --all",
    ]);
    const unknown = await runBroker(["dlq", "show", "nope"], { database: "postgres", env: cliEnv });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split("\n")).toHaveLength(1);

    const replay = await runBroker(
      ["dlq", "replay", dead, "--cid", `${seeded[0]!.cid},${seeded[2]!.cid}`],
      { database: "postgres", env: cliEnv },
    );
    expect(replay.code).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({ matched: 2, replayed: 2 });
    expect(await queueCount(queue)).toBe(2);
  });

  it("purge refuses without --yes when there is no terminal, and purges with it", async () => {
    const refused = await runBroker(["dlq", "purge", dead, "--reason", "unknown_device"], {
      database: "postgres",
      env: cliEnv,
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toEqual([
      "error: refusing to purge without confirmation: no terminal to ask on; add --yes",
    ]);
    expect(await queueCount(dead)).toBe(7);

    const purged = await runBroker(["dlq", "purge", dead, "--reason", "unknown_device", "--yes"], {
      database: "postgres",
      env: cliEnv,
    });
    expect(purged.code).toBe(0);
    expect(JSON.parse(purged.stdout)).toMatchObject({ purged: 4 });
    expect(await queueCount(dead)).toBe(3);
  });

  it("purge asks on a terminal and does nothing unless the answer is yes", async () => {
    // `script` gives the command a terminal; what is written to its stdin is typed there.
    const ask = (answer: string) =>
      new Promise<{ code: number | null; output: string }>((resolve, reject) => {
        const command = `node --import tsx src/cli/main.ts dlq purge ${dead} --reason unknown_device`;
        const child = spawn("script", ["-qec", command, "/dev/null"], {
          cwd: ROOT,
          env: { ...process.env, ...cliEnv },
        });
        let output = "";
        child.stdout.on("data", (d: Buffer) => (output += d.toString()));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, output }));
        child.stdin.end(`${answer}\n`);
      });
    const no = await ask("n");
    expect(no.code).toBe(0);
    expect(no.output).toContain(
      `delete every dead letter with reason "unknown_device" from ${dead}?`,
    );
    expect(no.output).toContain("nothing purged");
    expect(await queueCount(dead)).toBe(7);
    const yes = await ask("y");
    expect(yes.code).toBe(0);
    expect(await queueCount(dead)).toBe(3);
  });
});
