/**
 * Writer figures for `npm run bench`: messages/s the Ubidots writer delivers to the stand-in
 * Ubidots (test/helpers/ubidots-standin.ts) inside the real budget of 4 requests/s, with 1, 50
 * and 500 active logical devices, and what the InfluxDB writer writes into a real influxd 1.x.
 * Writers run as their own `broker run` processes from dist/, as in production.
 *
 * BENCH_UBIDOTS_WINDOW_S (default 15) is how long each Ubidots run is measured.
 * BENCH_WRITERS_COPIES (e.g. 1,2,4) adds {@link writerCopiesFigures}: the FRRED and InfluxDB
 * writers with that many processes sharing each queue, against the bus-only ceiling.
 * BENCH_WRITERS_COPIES_OF (default `frred,influxdb`) names which of those two writers run, and
 * BENCH_WRITERS_RATE (messages/s) paces their publisher (default: as fast as confirms allow), so
 * the writer meets the small batches of a steady flow, as on the whole path, not a backlog.
 * BENCH_FRRED_KEEP=1 leaves the FRRED runs' files in place (their directory is printed) instead
 * of removing them, so that the next run is not slowed by the removal (see writerCopiesFigures).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type amqp from "amqplib";
import type pg from "pg";

import { startInfluxd } from "../test/helpers/influxdb.js";
import { UbidotsStandIn } from "../test/helpers/ubidots-standin.js";
import { InfluxStandIn } from "./chaos/influx-standin.js";
import { accountCpu } from "./cpu-account.js";
import {
  consumeCounting,
  freePort,
  publishConfirmed,
  startBroker,
  stopBroker,
  waitReady,
} from "./harness.js";

const WINDOW_S = Number(process.env.BENCH_UBIDOTS_WINDOW_S ?? 15);

export interface WriterFigure {
  readonly name: string;
  readonly messages: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly note: string;
}

async function count(pool: pg.Pool, writer: string, delivered: boolean): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    `select count(*) as n from delivery_queue where writer = $1 and delivered_at is ${delivered ? "not null" : "null"}`,
    [writer],
  );
  return Number(rows[0]!.n);
}

async function until(check: () => Promise<boolean>, what: string, ms = 300_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Logical devices already known to Ubidots (label and record stored), so only posts are timed. */
async function ubidotsDevices(pool: pg.Pool, n: number): Promise<number[]> {
  const { rows } = await pool.query<{ uid: number }>(
    `insert into logical_devices (name, properties)
     select 'ubi bench ' || g, jsonb_build_object('ubidots', jsonb_build_object('label', 'bench-' || g || '-' || $2::text, 'id', 'id' || g))
     from generate_series(1, $1) g returning uid`,
    [n, randomUUID().slice(0, 8)],
  );
  return rows.map((r) => r.uid);
}

function message(lUid: number, i: number): object {
  return {
    broker_correlation_id: randomUUID(),
    p_uid: 1,
    l_uid: lUid,
    timestamp: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString(),
    timeseries: [
      { name: "temperature", value: Math.round(Math.random() * 4000) / 100 },
      { name: "battery (v)", value: Math.round(300 + Math.random() * 100) / 100 },
    ],
  };
}

export async function ubidotsFigures(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
): Promise<WriterFigure[]> {
  const standIn = new UbidotsStandIn({ token: "bench-token", rate: 4 });
  const url = await standIn.start();
  const opsPort = await freePort();
  const child = startBroker(["ubidots"], {
    ...env,
    METRICS_PORT: String(opsPort),
    UBIDOTS_URL: url,
    UBIDOTS_API_TOKEN: "bench-token",
    UBIDOTS_RATE_LIMIT: "4",
    WRITER_RETRY_MAX_MS: "200",
    WRITER_POLL_MS: "100",
  });
  const out: WriterFigure[] = [];
  try {
    await waitReady(opsPort);
    const ch = await conn.createConfirmChannel();
    for (const devices of [1, 50, 500]) {
      // Enough waiting per device that the run is never starved during the window.
      const perDevice = devices === 1 ? 4_000 : devices === 50 ? 100 : 20;
      const uids = await ubidotsDevices(pool, devices);
      // Held back while the backlog is taken in, so the window starts with a full queue.
      standIn.down = true;
      await publishConfirmed(ch, env.LTS_EXCHANGE!, devices * perDevice, (i) =>
        message(uids[i % devices]!, i),
      );
      await until(
        async () => (await count(pool, "ubidots", false)) >= devices * perDevice,
        "backlog taken in",
      );
      const before = await count(pool, "ubidots", true);
      const requestsBefore = standIn.posts;
      standIn.down = false;
      const started = Date.now();
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      const delivered = (await count(pool, "ubidots", true)) - before;
      const seconds = (Date.now() - started) / 1000;
      const posts = standIn.posts - requestsBefore;
      out.push({
        name: `Ubidots, ${devices} active device${devices === 1 ? "" : "s"}`,
        messages: delivered,
        seconds,
        perSecond: delivered / seconds,
        note: `${(posts / seconds).toFixed(2)} req/s, ${(delivered / Math.max(1, posts)).toFixed(1)} msg/request, ${standIn.rateLimited} × 429`,
      });
      // Drain the rest before the next run.
      await pool.query("delete from delivery_queue where writer = 'ubidots'");
    }
    await ch.close();
  } finally {
    await stopBroker(child);
    await standIn.stop();
  }
  return out;
}

export async function influxFigures(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
  messages: number,
): Promise<WriterFigure> {
  const influx = await startInfluxd();
  await influx.query('CREATE DATABASE "bench"');
  const opsPort = await freePort();
  const child = startBroker(["influxdb"], {
    ...env,
    METRICS_PORT: String(opsPort),
    INFLUXDB_URL: influx.url,
    INFLUXDB_DB: "bench",
  });
  try {
    await waitReady(opsPort);
    const ch = await conn.createConfirmChannel();
    const started = Date.now();
    await publishConfirmed(ch, env.LTS_EXCHANGE!, messages, (i) => message(1 + (i % 100), i));
    await until(async () => (await count(pool, "influxdb", true)) >= messages, "influx writes");
    const seconds = (Date.now() - started) / 1000;
    await ch.close();
    return {
      name: "InfluxDB 1.x (publish → written)",
      messages,
      seconds,
      perSecond: messages / seconds,
      note: `${Math.round((messages * 2) / seconds)} field values/s, 100 measurements`,
    };
  } finally {
    await stopBroker(child);
    await influx.stop();
  }
}

/** User and system CPU of a process so far (all its threads), ms; zeros once it has exited. */
async function userSystemMs(pid: number): Promise<{ user: number; system: number }> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // utime and stime are /proc's fields 14 and 15, in ticks of 10 ms.
    return { user: Number(f[11]) * 10, system: Number(f[12]) * 10 };
  } catch {
    return { user: 0, system: 0 };
  }
}

/** The copies counts of BENCH_WRITERS_COPIES (`1,2,4`), none when unset. */
export function writerCopies(): number[] {
  return (process.env.BENCH_WRITERS_COPIES ?? "")
    .split(",")
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * The ceiling for a writer: the same number of messages published (confirmed, persistent) to
 * the logical exchange and consumed (acked) from a quorum queue of its own, nothing else.
 */
async function busCeiling(
  conn: amqp.ChannelModel,
  env: Record<string, string>,
  messages: number,
): Promise<WriterFigure> {
  const ch = await conn.createConfirmChannel();
  const q = `${env.QUEUE_PREFIX}writers_ceiling`;
  await ch.assertQueue(q, { durable: true, arguments: { "x-queue-type": "quorum" } });
  await ch.bindQueue(q, env.LTS_EXCHANGE!, "");
  let consumed = 0;
  const stop = await consumeCounting(conn, q, () => consumed++);
  const started = Date.now();
  await publishConfirmed(ch, env.LTS_EXCHANGE!, messages, (i) => message(1 + (i % 100), i));
  await until(async () => consumed >= messages, "the ceiling's consumer");
  const seconds = (Date.now() - started) / 1000;
  await stop();
  await ch.deleteQueue(q);
  await ch.close();
  return {
    name: "Bus only: logical exchange → quorum queue → consumer (ceiling)",
    messages,
    seconds,
    perSecond: messages / seconds,
    note: "publish confirmed, consume with acks",
  };
}

/**
 * The FRRED writer (files in a directory of its own) and the InfluxDB writer (against the chaos
 * run's InfluxDB 2.x stand-in, which answers at once, so the writer is what is measured) with
 * each number of `copies` processes sharing the writer's queue: `messages` published to the
 * logical exchange over 100 logical devices, timed until every one is delivered.
 */
export async function writerCopiesFigures(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
  copies: readonly number[],
  messages: number,
): Promise<WriterFigure[]> {
  const ceiling = await busCeiling(conn, env, messages);
  const out: WriterFigure[] = [ceiling];
  const influx = new InfluxStandIn("bench-token", () => Date.now());
  const influxUrl = await influx.start();
  const dir = await mkdtemp(join(tmpdir(), "bench-frred-"));
  const writers = {
    frred: { FRRED_DIR: dir },
    influxdb: {
      INFLUXDB_URL: influxUrl,
      INFLUXDB_API: "v2",
      INFLUXDB_ORG: "bench",
      INFLUXDB_BUCKET: "bench",
      INFLUXDB_TOKEN: "bench-token",
    },
  };
  try {
    const only = (process.env.BENCH_WRITERS_COPIES_OF ?? "frred,influxdb").split(",");
    const rate = process.env.BENCH_WRITERS_RATE
      ? Number(process.env.BENCH_WRITERS_RATE)
      : undefined;
    for (const [writer, own] of Object.entries(writers)) {
      if (!only.includes(writer)) {
        continue;
      }
      for (const n of copies) {
        const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
        const children = ports.map((port) =>
          startBroker([writer], { ...env, ...own, METRICS_PORT: String(port) }),
        );
        try {
          await Promise.all(ports.map((port) => waitReady(port)));
          const before = await count(pool, writer, true);
          const ch = await conn.createConfirmChannel();
          const started = Date.now();
          // The writer processes' CPU (user + system, from /proc) over the run, per message.
          const pids = Object.fromEntries(children.map((c, i) => [`${writer} ${i}`, c.pid!]));
          const split = async (): Promise<{ user: number; system: number }> => {
            const each = await Promise.all(children.map((c) => userSystemMs(c.pid!)));
            return each.reduce((a, b) => ({ user: a.user + b.user, system: a.system + b.system }));
          };
          const splitBefore = await split();
          const { cpu } = await accountCpu(pids, async () => {
            await publishConfirmed(
              ch,
              env.LTS_EXCHANGE!,
              messages,
              (i) => message(1 + (i % 100), i),
              1000,
              rate,
            );
            await until(
              async () => (await count(pool, writer, true)) - before >= messages,
              `${writer} deliveries`,
            );
          });
          const seconds = (Date.now() - started) / 1000;
          const splitAfter = await split();
          await ch.close();
          const writerMs = Object.keys(pids).reduce((sum, p) => sum + (cpu.ms[p] ?? 0), 0);
          const perMessage = (ms: number | undefined): string => ((ms ?? 0) / messages).toFixed(3);
          out.push({
            name: `${writer === "frred" ? "FRRED" : "InfluxDB (stand-in)"}, ${n} process${n === 1 ? "" : "es"}${rate === undefined ? "" : `, offered ${rate} msg/s`}`,
            messages,
            seconds,
            perSecond: messages / seconds,
            note:
              `${((messages / seconds / ceiling.perSecond) * 100).toFixed(0)} % of the ceiling; ` +
              `CPU ms/msg: writer ${perMessage(writerMs)} (user ${perMessage(splitAfter.user - splitBefore.user)}, system ${perMessage(splitAfter.system - splitBefore.system)}), PostgreSQL ${perMessage(cpu.ms.PostgreSQL)}, ` +
              `RabbitMQ ${perMessage(cpu.ms.RabbitMQ)}; busy ${(cpu.busy * 100).toFixed(0)} %`,
          });
        } finally {
          await Promise.all(children.map(stopBroker));
        }
        await pool.query("delete from delivery_queue where writer = $1", [writer]);
      }
    }
  } finally {
    await influx.stop();
    if (process.env.BENCH_FRRED_KEEP === "1") {
      // On ext4 without a journal (this machine's disk) inode allocation skips inodes freed in
      // the last one to five minutes, one by one: right after 40,000 were removed, the next
      // run's mkdirs and creates cost several times more kernel time, whatever build it runs.
      console.log(`FRRED files kept in ${dir}`);
    } else {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return out;
}
