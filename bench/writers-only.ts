/**
 * `npx tsx bench/writers-only.ts`: only the writer figures of `npm run bench` (bench/writers.ts),
 * on a database and exchanges of their own (needs `npm run build` first). BENCH_WRITERS=0 leaves
 * out the Ubidots and influxd runs (for `BENCH_WRITERS_COPIES=1,2,4` alone).
 */
import { randomBytes } from "node:crypto";
import { cpus, totalmem } from "node:os";

import amqp from "amqplib";
import pg from "pg";

import { deadLetterQueueName, QUEUE_NAMES } from "../src/bus/topology.js";
import { migrate } from "../src/db/migrate.js";
import { INFLUXDB_QUEUE } from "../src/delivery/influxdb/influxdb-writer.js";
import { UBIDOTS_QUEUE } from "../src/delivery/ubidots/ubidots-writer.js";
import { influxFigures, ubidotsFigures, writerCopies, writerCopiesFigures } from "./writers.js";

const PG_BASE = {
  host: process.env.PGHOST ?? "127.0.0.1",
  port: Number(process.env.PGPORT ?? 5432),
  user: process.env.PGUSER ?? "postgres",
  password: process.env.PGPASSWORD ?? "",
};
const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2F";
const suffix = randomBytes(3).toString("hex");
const DB = `broker_bench_${suffix}`;
const names = {
  PTS_EXCHANGE: `bench_pts_${suffix}`,
  LTS_EXCHANGE: `bench_lts_${suffix}`,
  EVENTS_EXCHANGE: `bench_events_${suffix}`,
  DEAD_LETTER_EXCHANGE: `bench_dlx_${suffix}`,
  QUEUE_PREFIX: `bench_${suffix}_`,
};

const admin = new pg.Client({ ...PG_BASE, database: "postgres" });
await admin.connect();
await admin.query(`create database ${DB}`);
const pool = new pg.Pool({ ...PG_BASE, database: DB, max: 4 });
// An idle connection the final drop terminates is not an error of the run.
pool.on("error", () => undefined);
const conn = await amqp.connect(AMQP_URL);
const env = {
  ...names,
  PGHOST: PG_BASE.host,
  PGPORT: String(PG_BASE.port),
  PGUSER: PG_BASE.user,
  PGPASSWORD: PG_BASE.password,
  PGDATABASE: DB,
  AMQP_URL,
  LOG_LEVEL: "warn",
};
try {
  await migrate(pool);
  const setup = await conn.createChannel();
  await setup.assertExchange(names.LTS_EXCHANGE, "fanout", { durable: true });
  await setup.close();
  const messages = Number(process.env.BENCH_MESSAGES ?? 20_000);
  const figures = [
    ...(process.env.BENCH_WRITERS === "0"
      ? []
      : [
          ...(await ubidotsFigures(conn, pool, env)),
          await influxFigures(conn, pool, env, messages),
        ]),
    ...(await writerCopiesFigures(conn, pool, env, writerCopies(), messages)),
  ];
  console.log(
    `\nMachine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}\n`,
  );
  console.log("| writer run | messages | seconds | msg/s | notes |");
  console.log("|---|---|---|---|---|");
  for (const w of figures) {
    console.log(
      `| ${w.name} | ${w.messages} | ${w.seconds.toFixed(1)} | ${w.perSecond.toFixed(1)} | ${w.note} |`,
    );
  }
} finally {
  const ch = await conn.createChannel();
  for (const q of [UBIDOTS_QUEUE, INFLUXDB_QUEUE, QUEUE_NAMES.frred]) {
    await ch.deleteQueue(names.QUEUE_PREFIX + q).catch(() => undefined);
    await ch.deleteQueue(deadLetterQueueName(names.QUEUE_PREFIX + q)).catch(() => undefined);
  }
  for (const ex of Object.values(names).slice(0, 4)) {
    await ch.deleteExchange(ex).catch(() => undefined);
  }
  await conn.close();
  await pool.end();
  await admin.query(`drop database if exists ${DB} with (force)`);
  await admin.end();
}
