/**
 * `npm run bench`: throughput and latency of the mapper and of the whole path, with the raw
 * RabbitMQ confirmed publish-and-consume rate measured in the same run as the yardstick. Every
 * durability rule is on: quorum queues, persistent messages, publisher confirms, acks after
 * commit. Components run as their own `broker run` processes from dist/, as in production.
 *
 * BENCH_MESSAGES (default 20000) sets the mapper and yardstick runs; BENCH_UPLINKS (default
 * 5000) each whole-path run (TTN's decoded_payload, then local decoding); BENCH_DEVICES
 * (default 1000) the number of mapped devices; BENCH_DECODES (default 20000) each decoder run;
 * BENCH_HELD (default 100000) the held messages released (bench/release.ts);
 * BENCH_CLI_RUNS (default 20) the CLI start-up runs (bench/cli-startup.ts); BENCH_REPLAY
 * (default 1000000, 0 to leave it out) the raw uplinks replayed (bench/replay.ts).
 * BENCH_ONLY (comma-separated: startup, mapper, path, decoders, release, replay, writers, ingest,
 * soak) runs only those parts; the ingest part (bench/ingest.ts) has settings of its own.
 *
 * The soak part (bench/soak.ts, issue 11's memory and flatness targets) runs only when BENCH_ONLY
 * names it, never by default: it lasts over half an hour. One `broker run all` process;
 * BENCH_SOAK_PEAK_RATE (default 1000) req/s for BENCH_SOAK_PEAK_SECONDS (default 60) for the peak
 * RSS, then BENCH_SOAK_RATE (default 300) req/s for BENCH_SOAK_SECONDS (default 1800), sampled
 * every BENCH_SOAK_SAMPLE_SECONDS (default 10); BENCH_DEVICES devices.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";

import amqp from "amqplib";
import pg from "pg";

import { QUEUE_NAMES } from "../src/bus/topology.js";
import { migrate } from "../src/db/migrate.js";
import { knownDeadLetterQueues } from "../src/dlq/catalogue.js";
import { ttnCorrelationId } from "../src/sources/ttn/normalise.js";
import {
  BENCH_APPLICATION,
  BENCH_FRM_PAYLOAD,
  decoderThroughput,
  writeBenchDecoder,
} from "./decoders.js";
import {
  consumeCounting,
  freePort,
  publishConfirmed,
  startBroker,
  startRelay,
  stopBroker,
  waitReady,
} from "./harness.js";
import { cliStartup, printStartup, type StartupFigures } from "./cli-startup.js";
import { accountCpu, CORES, type CpuAccount } from "./cpu-account.js";
import { releaseRun } from "./release.js";
import { ingestFigures, mapTtnDevices, printIngest, type IngestFigure } from "./ingest.js";
import { REPLAY_MESSAGES, replayRun } from "./replay.js";
import { printSoak, type SoakReport } from "./soak-report.js";
import { soakFigures } from "./soak.js";
import { figures, formatRow, type Figures } from "./stats.js";
import {
  influxFigures,
  ubidotsFigures,
  writerCopies,
  writerCopiesFigures,
  type WriterFigure,
} from "./writers.js";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const UPLINKS = Number(process.env.BENCH_UPLINKS ?? 5_000);
const DEVICES = Number(process.env.BENCH_DEVICES ?? 1_000);
const DECODES = Number(process.env.BENCH_DECODES ?? 20_000);
const ONLY = process.env.BENCH_ONLY?.split(",").map((p) => p.trim());
const part = (name: string): boolean => ONLY === undefined || ONLY.includes(name);
/** Parts that run only when BENCH_ONLY names them. */
const named = (name: string): boolean => ONLY?.includes(name) === true;
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
const queue = (q: string): string => names.QUEUE_PREFIX + q;

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ ...PG_BASE, database: "postgres" });
  await c.connect();
  await c.query(sql);
  await c.end();
}

async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 300_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The yardstick: what RabbitMQ alone does with the same durability (quorum, persistent, confirms, acks). */
async function rawBroker(conn: amqp.ChannelModel): Promise<Figures> {
  const ch = await conn.createConfirmChannel();
  const exchange = `bench_raw_${suffix}`;
  const q = queue("raw");
  await ch.assertExchange(exchange, "fanout", { durable: true });
  await ch.assertQueue(q, { durable: true, arguments: { "x-queue-type": "quorum" } });
  await ch.bindQueue(q, exchange, "");
  const latencies: number[] = [];
  const stop = await consumeCounting(conn, q, (body, at) =>
    latencies.push(at - (body.sent as number)),
  );
  const started = Date.now();
  let lastAt = started;
  await publishConfirmed(ch, exchange, MESSAGES, () => ({
    sent: Date.now(),
    pad: "x".repeat(200),
  }));
  await waitUntil(() => latencies.length >= MESSAGES, "raw consumer");
  lastAt = Date.now();
  await stop();
  await ch.deleteQueue(q);
  await ch.deleteExchange(exchange);
  await ch.close();
  return figures("RabbitMQ alone (yardstick)", latencies, (lastAt - started) / 1000);
}

async function mapperRun(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
  label: string,
  count: number,
  title = "Mapper (PTS → physical_timeseries + LTS)",
): Promise<Figures> {
  const { rows } = await pool.query<{ uid: number }>(
    "select uid from physical_devices where source_name = 'wombat' order by uid",
  );
  const uids = rows.map((r) => r.uid);
  const ch = await conn.createConfirmChannel();
  const capture = queue(`lts_capture_${label}`);
  await ch.assertQueue(capture, { durable: true, arguments: { "x-queue-type": "quorum" } });
  await ch.bindQueue(capture, names.LTS_EXCHANGE, "");
  const latencies: number[] = [];
  const stop = await consumeCounting(conn, capture, (body, at) =>
    latencies.push(at - (body.bench_sent_at as number)),
  );
  const base = Date.now();
  const started = Date.now();
  await publishConfirmed(ch, names.PTS_EXCHANGE, count, (i) => ({
    broker_correlation_id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    p_uid: uids[i % uids.length],
    timestamp: new Date(base - 86_400_000 + i).toISOString(),
    timeseries: [
      { name: "battery (v)", value: 4.16 },
      { name: "1_Temperature", value: 21.6 },
    ],
    bench_sent_at: Date.now(),
    run: label,
  }));
  await waitUntil(() => latencies.length >= count, "mapped messages");
  const seconds = (Date.now() - started) / 1000;
  await stop();
  await ch.deleteQueue(capture);
  await ch.close();
  void env;
  return figures(
    label === "relay" ? "Bus-only relay (two hops, no database)" : title,
    latencies,
    seconds,
  );
}

async function setupDevices(pool: pg.Pool): Promise<void> {
  await pool.query(
    `insert into physical_devices (source_name, name, source_ids)
     select 'wombat', 'bench ' || g, jsonb_build_object('serial_no', 'bench-' || g) from generate_series(1, $1) g`,
    [DEVICES],
  );
  await pool.query(
    `insert into logical_devices (name) select 'bench ' || g from generate_series(1, $1) g`,
    [DEVICES],
  );
  // Mapped from before every message's timestamp: the mapper routes by the mapping in force then.
  await pool.query(
    `insert into physical_logical_map (physical_uid, logical_uid, start_time)
     select p.uid, l.uid, '2000-01-01T00:00:00Z' from (select uid, row_number() over (order by uid) n from physical_devices where source_name = 'wombat') p
     join (select uid, row_number() over (order by uid) n from logical_devices) l using (n)`,
  );
}

function uplink(i: number): Record<string, unknown> {
  const eui = (0x70b3d57e00000000n + BigInt(i % DEVICES)).toString(16).padStart(16, "0");
  return {
    end_device_ids: {
      device_id: `bench-${eui}`,
      application_ids: { application_id: BENCH_APPLICATION },
      dev_eui: eui,
    },
    received_at: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString(),
    uplink_message: {
      // What TTN decoded, and the bytes it decoded it from (for runs with local decoding).
      f_port: 6,
      frm_payload: BENCH_FRM_PAYLOAD,
      f_cnt: i,
      received_at: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString(),
      decoded_payload: { battery: 3.6, humidity: 55.18, temperature: 16.46 },
    },
  };
}

/** Devices appear on their first uplink: send one per device, then map them all. */
async function mapDevices(url: string, pool: pg.Pool): Promise<void> {
  for (let i = 0; i < DEVICES; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, DEVICES - i) }, (_, k) =>
        fetch(url, {
          method: "POST",
          body: JSON.stringify(uplink(-(i + k) - 1 + DEVICES * 1000)),
        }).then((r) => r.arrayBuffer()),
      ),
    );
  }
  await mapTtnDevices(pool);
}

interface PathRun {
  /** Appended to the rows' names. */
  readonly label: string;
  /** First uplink index: each run sends uplinks of its own (the webhook drops repeats). */
  readonly first: number;
  /** TTN_DECODERS_DIR holding uplink/bench.js: decode every uplink locally. */
  readonly decodersDir?: string;
}

async function wholePath(
  conn: amqp.ChannelModel,
  pool: pg.Pool,
  env: Record<string, string>,
  run: PathRun,
): Promise<{ endToEnd: Figures; http: Figures }> {
  const webhookPort = await freePort();
  const opsPort = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "bench-frred-"));
  const child = startBroker(["ttn-webhook", "mapper", "frred"], {
    ...env,
    TTN_WEBHOOK_PORT: String(webhookPort),
    METRICS_PORT: String(opsPort),
    FRRED_DIR: dir,
    ...(run.decodersDir === undefined
      ? {}
      : { TTN_DECODERS_DIR: run.decodersDir, TTN_DECODE_LOCALLY: BENCH_APPLICATION }),
  });
  try {
    await waitReady(opsPort);
    const url = `http://127.0.0.1:${webhookPort}/ttn/webhook/up`;
    if (run.first === 0) {
      await mapDevices(url, pool);
    }
    const ch = await conn.createChannel();
    const capture = queue("lts_capture_path");
    await ch.assertQueue(capture, { durable: true, arguments: { "x-queue-type": "quorum" } });
    await ch.bindQueue(capture, names.LTS_EXCHANGE, "");
    const sentAt = new Map<string, number>();
    const endToEnd: number[] = [];
    const stop = await consumeCounting(conn, capture, (body, at) => {
      const sent = sentAt.get(body.broker_correlation_id as string);
      if (sent !== undefined) {
        endToEnd.push(at - sent);
      }
    });
    const bodies = Array.from({ length: UPLINKS }, (_, i) => JSON.stringify(uplink(run.first + i)));
    const cids = bodies.map((b) => ttnCorrelationId(JSON.parse(b), Buffer.from(b)));
    const http: number[] = [];
    let next = 0;
    const started = Date.now();
    const worker = async (): Promise<void> => {
      while (next < UPLINKS) {
        const i = next++;
        const t0 = Date.now();
        sentAt.set(cids[i]!, t0);
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: bodies[i],
        });
        await res.arrayBuffer();
        if (res.status !== 204) {
          throw new Error(`webhook answered ${res.status}`);
        }
        http.push(Date.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    const httpSeconds = (Date.now() - started) / 1000;
    await waitUntil(() => endToEnd.length >= UPLINKS, "uplinks through the mapper");
    await waitUntil(
      async () => (await readdir(dir)).filter((n) => !n.startsWith(".")).length >= UPLINKS,
      "DataBolt files",
    );
    const seconds = (Date.now() - started) / 1000;
    await stop();
    await ch.deleteQueue(capture);
    await ch.close();
    return {
      http: figures(`TTN webhook (POST → 204)${run.label}`, http, httpSeconds),
      endToEnd: figures(
        `Whole path (POST → LTS, all files written)${run.label}`,
        endToEnd,
        seconds,
      ),
    };
  } finally {
    await stopBroker(child);
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await admin(`create database ${DB}`);
  const pool = new pg.Pool({ ...PG_BASE, database: DB, max: 4 });
  const decodersDir = await mkdtemp(join(tmpdir(), "bench-decoders-"));
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
  const results: Figures[] = [];
  const mapperCpu: { name: string; messages: number; cpu: CpuAccount }[] = [];
  let startup: StartupFigures[] = [];
  const writers: WriterFigure[] = [];
  let ingest: IngestFigure[] = [];
  let soak: SoakReport | undefined;
  try {
    await migrate(pool);
    await setupDevices(pool);
    // First, while nothing else of the bench runs.
    if (part("startup")) {
      startup = await cliStartup(env);
    }
    const setup = await conn.createChannel();
    await setup.assertExchange(names.PTS_EXCHANGE, "fanout", { durable: true });
    await setup.assertExchange(names.LTS_EXCHANGE, "fanout", { durable: true });
    await setup.close();

    if (part("mapper")) {
      results.push(await rawBroker(conn));
      // The same two hops with only the router's bus parts in between: the ceiling for the mapper.
      const relay = await startRelay(env);
      try {
        const { result, cpu } = await accountCpu({ relay: relay.pid! }, () =>
          mapperRun(conn, pool, env, "relay", MESSAGES),
        );
        results.push(result);
        mapperCpu.push({ name: result.name, messages: result.messages, cpu });
      } finally {
        await stopBroker(relay);
      }
      const opsPort = await freePort();
      const mapper = startBroker(["mapper"], { ...env, METRICS_PORT: String(opsPort) });
      try {
        await waitReady(opsPort);
        await mapperRun(conn, pool, env, "warmup", Math.min(2000, MESSAGES));
        const { result, cpu } = await accountCpu({ mapper: mapper.pid! }, () =>
          mapperRun(conn, pool, env, "measured", MESSAGES),
        );
        results.push(result);
        mapperCpu.push({ name: result.name, messages: result.messages, cpu });
      } finally {
        await stopBroker(mapper);
      }
    }
    if (part("ingest")) {
      // Before the path runs below create TTN devices of their own (it maps every TTN device).
      ingest = await ingestFigures({
        conn,
        pool,
        env,
        queuePrefix: names.QUEUE_PREFIX,
        ltsExchange: names.LTS_EXCHANGE,
      });
    }
    if (part("path")) {
      const path = await wholePath(conn, pool, env, { label: "", first: 0 });
      results.push(path.http, path.endToEnd);
    }
    // BENCH_MAPPERS=1,2,4: the same run with that many mapper processes sharing the queue.
    for (const copies of (process.env.BENCH_MAPPERS ?? "").split(",").filter(Boolean)) {
      const n = Number(copies);
      const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
      const mappers = ports.map((p) =>
        startBroker(["mapper"], { ...env, METRICS_PORT: String(p) }),
      );
      try {
        await Promise.all(ports.map((p) => waitReady(p)));
        results.push(
          await mapperRun(
            conn,
            pool,
            env,
            `copies${n}`,
            MESSAGES,
            `Mapper, ${n} process${n === 1 ? "" : "es"}`,
          ),
        );
      } finally {
        await Promise.all(mappers.map(stopBroker));
      }
    }
    // The same with every uplink decoded by the bench decoder (decoders.ts) in the webhook.
    await writeBenchDecoder(decodersDir);
    if (part("path")) {
      const decoded = await wholePath(conn, pool, env, {
        label: ", local decoding",
        first: UPLINKS,
        decodersDir,
      });
      results.push(decoded.http, decoded.endToEnd);
    }
    if (part("decoders")) {
      results.push(...(await decoderThroughput(decodersDir, DECODES)));
    }
    if (part("release")) {
      results.push(await releaseRun(conn, pool, env, queue("lts_capture_release")));
    }
    if (part("replay") && REPLAY_MESSAGES > 0) {
      results.push(await replayRun(conn, pool, env, decodersDir, queue("lts_capture_replay")));
    }
    if (part("writers") && process.env.BENCH_WRITERS !== "0") {
      writers.push(...(await ubidotsFigures(conn, pool, env)));
      writers.push(await influxFigures(conn, pool, env, MESSAGES));
    }
    // BENCH_WRITERS_COPIES=1,2,4: the FRRED and InfluxDB writers with that many processes each.
    if (writerCopies().length > 0) {
      writers.push(...(await writerCopiesFigures(conn, pool, env, writerCopies(), MESSAGES)));
    }
    // Last: its 1,000 req/s peak and half an hour of load would disturb any part after it.
    if (named("soak")) {
      soak = await soakFigures({
        conn,
        pool,
        env,
        queuePrefix: names.QUEUE_PREFIX,
        ltsExchange: names.LTS_EXCHANGE,
      });
    }
  } finally {
    const ch = await conn.createChannel();
    // Every consumer's queue and every dead-letter queue a component may have declared (`broker
    // run all` in the soak declares more than the single-component parts).
    for (const q of [
      ...Object.values(QUEUE_NAMES).map(queue),
      ...knownDeadLetterQueues(names.QUEUE_PREFIX).map((d) => d.name),
    ]) {
      await ch.deleteQueue(q).catch(() => undefined);
    }
    for (const ex of [
      names.PTS_EXCHANGE,
      names.LTS_EXCHANGE,
      names.EVENTS_EXCHANGE,
      names.DEAD_LETTER_EXCHANGE,
    ]) {
      await ch.deleteExchange(ex).catch(() => undefined);
    }
    await conn.close();
    await pool.end();
    await admin(`drop database if exists ${DB} with (force)`);
    await rm(decodersDir, { recursive: true, force: true });
  }
  console.log(
    `\nMachine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  );
  console.log(
    `Messages: ${MESSAGES} (mapper, yardstick), ${UPLINKS} uplinks (each whole path), ${DEVICES} mapped devices, ${DECODES} decodings (each decoder run)\n`,
  );
  if (results.length > 0) {
    console.log("| run | messages | seconds | msg/s | p50 ms | p99 ms |");
    console.log("|---|---|---|---|---|---|");
    for (const r of results) {
      console.log(formatRow(r));
    }
  }
  if (mapperCpu.length > 0) {
    // Whether the mapper is bound by CPU on this machine, and whose: see bench/cpu-account.ts.
    const parties = [...new Set(mapperCpu.flatMap((r) => Object.keys(r.cpu.ms)))];
    console.log(`\nCPU per message, µs (machine busy: share of ${CORES} cores not idle)\n`);
    console.log(`| run | machine busy | ${parties.join(" | ")} |`);
    console.log(`|---|---|${parties.map(() => "---|").join("")}`);
    for (const r of mapperCpu) {
      const cells = parties.map((p) => {
        const ms = r.cpu.ms[p];
        return ms === undefined ? "" : ((1000 * ms) / r.messages).toFixed(0);
      });
      console.log(`| ${r.name} | ${(100 * r.cpu.busy).toFixed(0)} % | ${cells.join(" | ")} |`);
    }
  }
  if (part("mapper")) {
    const [raw, relayed, mapped] = results as [Figures, Figures, Figures];
    console.log(
      `\nMapper / RabbitMQ-alone ratio: ${(mapped.perSecond / raw.perSecond).toFixed(2)} (target ≥ 0.6; target ≥ 5000 msg/s)`,
    );
    console.log(
      `Mapper / bus-only relay ratio: ${(mapped.perSecond / relayed.perSecond).toFixed(2)}`,
    );
  }
  if (ingest.length > 0) {
    printIngest(ingest);
  }
  if (startup.length > 0) {
    printStartup(startup);
  }
  if (soak !== undefined) {
    printSoak(soak);
  }
  if (writers.length > 0) {
    console.log("\n| writer run | messages | seconds | msg/s | notes |");
    console.log("|---|---|---|---|---|");
    for (const w of writers) {
      console.log(
        `| ${w.name} | ${w.messages} | ${w.seconds.toFixed(1)} | ${w.perSecond.toFixed(1)} | ${w.note} |`,
      );
    }
  }
}

await main();
