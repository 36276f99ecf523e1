import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

import amqp from "amqplib";

import { loadConfig, type Config } from "../../src/core/config.js";
import { AMQP_URL } from "./env.js";

const exec = promisify(execFile);

/** AMQP settings with exchange and queue names of this test's own. */
export function isolatedAmqpConfig(overrides: Record<string, string> = {}): Config["amqp"] {
  const suffix = randomBytes(4).toString("hex");
  return loadConfig({
    AMQP_URL,
    PTS_EXCHANGE: `test_pts_${suffix}`,
    LTS_EXCHANGE: `test_lts_${suffix}`,
    EVENTS_EXCHANGE: `test_events_${suffix}`,
    DEAD_LETTER_EXCHANGE: `test_dlx_${suffix}`,
    QUEUE_PREFIX: `test_${suffix}_`,
    ...overrides,
  }).amqp;
}

/** A plain amqplib connection for the test's own checks and cleanup. */
export async function openTestChannel(): Promise<{ conn: amqp.ChannelModel; ch: amqp.Channel }> {
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  // A failed check (checkQueue of a queue not declared yet) closes the channel with an 'error'
  // event; the awaited call rejects with the same error, so the event itself is not news.
  ch.on("error", () => undefined);
  return { conn, ch };
}

/** Deletes the test's exchanges, the queues named, and every queue under its QUEUE_PREFIX. */
export async function cleanupAmqp(config: Config["amqp"], queues: string[] = []): Promise<void> {
  // Every queue a component declared under this test's prefix goes too, named here or not.
  const { stdout } = await exec("rabbitmqctl", ["-q", "list_queues", "name"]).catch(() => ({
    stdout: "",
  }));
  const prefixed = stdout
    .split("\n")
    .map((line) => line.trim())
    .filter((name) => config.queuePrefix !== "" && name.startsWith(config.queuePrefix));
  const { conn, ch } = await openTestChannel();
  try {
    for (const q of new Set([...queues, ...prefixed])) {
      await ch.deleteQueue(q).catch(() => undefined);
    }
    for (const ex of [
      config.ptsExchange,
      config.ltsExchange,
      config.eventsExchange,
      config.deadLetterExchange,
    ]) {
      await ch.deleteExchange(ex).catch(() => undefined);
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** RabbitMQ's ids of the AMQP connections whose client named itself `name`. */
async function connectionsNamed(name: string): Promise<string[]> {
  const { stdout } = await exec("rabbitmqctl", [
    "-q",
    "list_connections",
    "pid",
    "client_properties",
  ]);
  return stdout
    .split("\n")
    .filter((line) => line.includes(`"${name}"`))
    .map((line) => line.split("\t")[0]!)
    .filter((pid) => pid.startsWith("<"));
}

/**
 * Deliveries RabbitMQ has handed to the connection(s) named `name` and not yet seen acked, summed
 * over their channels (`rabbitmqctl list_channels`; the management plugin is not needed).
 */
export async function unackedOnConnectionsNamed(name: string): Promise<number> {
  const pids = new Set(await connectionsNamed(name));
  const { stdout } = await exec("rabbitmqctl", [
    "-q",
    "list_channels",
    "connection",
    "messages_unacknowledged",
  ]);
  return stdout
    .split("\n")
    .map((line) => line.split("\t"))
    .filter(([connection]) => pids.has(connection ?? ""))
    .reduce((sum, [, unacked]) => sum + Number(unacked), 0);
}

/** Closes, from the broker's side, every AMQP connection whose client named itself `name`. */
export async function closeConnectionsNamed(name: string): Promise<number> {
  const pids = await connectionsNamed(name);
  for (const pid of pids) {
    await exec("rabbitmqctl", ["-q", "close_connection", pid, "closed by test"]);
  }
  return pids.length;
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
  what = "condition",
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Ready messages in `queue`, read without touching them. */
export async function queueCount(queue: string): Promise<number> {
  const { conn, ch } = await openTestChannel();
  try {
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}
