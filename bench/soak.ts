/**
 * Soak and memory (issue 11's last target; `BENCH_ONLY=soak npm run bench`, never in the default
 * parts: it lasts over half an hour). ONE `broker run all` process, as a small site would run it,
 * fed open-loop TTN uplinks of BENCH_DEVICES known, mapped devices:
 *
 * 1. peak: BENCH_SOAK_PEAK_RATE (1000) req/s for BENCH_SOAK_PEAK_SECONDS (60), then the queues
 *    drain; the process's highest resident set (VmHWM) against the 300 MB target;
 * 2. soak: BENCH_SOAK_RATE (300) req/s for BENCH_SOAK_SECONDS (1800), sampled every
 *    BENCH_SOAK_SAMPLE_SECONDS (10): RSS, file descriptors, threads, the depth of every queue of
 *    the bench's prefix and of the backlogs kept in PostgreSQL, FRRED files written, and the
 *    window's latencies (p50/p99).
 *
 * The load is one open-loop window (bench/open-loop.ts) per sample period, each started on time
 * whether or not the one before has had all its answers, so it stays an open loop and the bench
 * holds one window's latencies at a time (then a histogram per window). Nobody consumes the FRRED
 * files, so each sample deletes those the previous one saw and counts them as written.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type amqp from "amqplib";

import { resolveComponentNames } from "../src/app/registry.js";
import { QUEUE_NAMES } from "../src/bus/topology.js";
import { createLogger } from "../src/core/logger.js";
import { createDatabase, type Db } from "../src/db/database.js";
import { pendingDeliveries } from "../src/db/repositories/delivery-queue.js";
import { countOutbox } from "../src/db/repositories/ingest-outbox.js";
import { knownDeadLetterQueues } from "../src/dlq/catalogue.js";
import { freePort, startBroker, stopBroker, waitReady } from "./harness.js";
import { LatencyHistogram } from "./histogram.js";
import { knowAndMapDevices, knownDevices, type IngestContext } from "./ingest.js";
import { newAgent, openLoop } from "./open-loop.js";
import { processFigures } from "./process-figures.js";
import type { LoadWindow, Phase, Sample, SoakReport } from "./soak-report.js";

const PEAK_RATE = Number(process.env.BENCH_SOAK_PEAK_RATE ?? 1_000);
const PEAK_SECONDS = Number(process.env.BENCH_SOAK_PEAK_SECONDS ?? 60);
const RATE = Number(process.env.BENCH_SOAK_RATE ?? 300);
const SOAK_SECONDS = Number(process.env.BENCH_SOAK_SECONDS ?? 1_800);
const SAMPLE_SECONDS = Number(process.env.BENCH_SOAK_SAMPLE_SECONDS ?? 10);
/** Longest wait for the peak's backlog to leave the queues before the soak starts, ms. */
const DRAIN_LIMIT_MS = 600_000;
/**
 * First uplink index: past the ingest part's (from 1,000,000), and 2024-08 as a date, so even
 * 600,000 uplinks stay in the past (the webhook does not forward future ones).
 */
const FIRST_UPLINK = 20_000_000;
/** Names of the PostgreSQL backlogs among the queue depths. */
const FRRED_BACKLOG = "delivery_queue (frred)";
const TTN_OUTBOX = "ingest_outbox (ttn)";

const sleepUntil = async (at: number): Promise<void> => {
  const wait = at - performance.now();
  if (wait > 0) {
    await new Promise((r) => setTimeout(r, wait));
  }
};

/**
 * What waits, by place: messages ready in each RabbitMQ queue of the bench's prefix (queues the
 * process never declared are left out), and the two backlogs `all` keeps in PostgreSQL: the FRRED
 * writer's undelivered messages (its intake acks RabbitMQ once they are in `delivery_queue`, so
 * its RabbitMQ queue stays short while files lag) and the TTN webhook's outbox.
 */
class Backlogs {
  /** Every queue a component may declare, without the prefix: consumers' and dead-letter queues. */
  readonly #names = [
    ...new Set([...Object.values(QUEUE_NAMES), ...knownDeadLetterQueues("").map((q) => q.name)]),
  ];
  readonly #absent = new Set<string>();
  #channel: amqp.Channel | undefined;
  readonly #conn: amqp.ChannelModel;
  readonly #prefix: string;
  readonly #db: Db;

  constructor(conn: amqp.ChannelModel, prefix: string, db: Db) {
    this.#conn = conn;
    this.#prefix = prefix;
    this.#db = db;
  }

  get watched(): string[] {
    return [...this.#names.filter((n) => !this.#absent.has(n)), FRRED_BACKLOG, TTN_OUTBOX];
  }

  async depths(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    out.set(FRRED_BACKLOG, await pendingDeliveries(this.#db, "frred"));
    out.set(TTN_OUTBOX, await countOutbox(this.#db, "ttn"));
    for (const name of this.#names.filter((n) => !this.#absent.has(n))) {
      if (this.#channel === undefined) {
        this.#channel = await this.#conn.createChannel();
        // A missing queue closes the channel with an error event; the rejection below reports it.
        this.#channel.on("error", () => undefined);
      }
      try {
        out.set(name, (await this.#channel.checkQueue(this.#prefix + name)).messageCount);
      } catch (err) {
        this.#channel = undefined;
        if (!/NOT_FOUND|404/.test(String(err))) {
          throw err;
        }
        this.#absent.add(name);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#channel?.close().catch(() => undefined);
  }
}

/** Counts FRRED message directories written, deleting at each count those the last one saw. */
class FrredCount {
  #seen: string[] = [];
  #deleted = 0;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  async count(): Promise<number> {
    for (let i = 0; i < this.#seen.length; i += 64) {
      await Promise.all(
        this.#seen
          .slice(i, i + 64)
          .map((n) => rm(join(this.#dir, n), { recursive: true, force: true })),
      );
    }
    this.#deleted += this.#seen.length;
    // Dot names are the writer's directories still being written.
    this.#seen = (await readdir(this.#dir)).filter((n) => !n.startsWith("."));
    return this.#deleted + this.#seen.length;
  }
}

/**
 * `rate` req/s for `seconds` (rounded up to whole sample periods) from uplink index `first`,
 * calling `observe` at the end of each period; resolves once every request has its answer.
 */
async function runPhase(
  url: string,
  rate: number,
  seconds: number,
  first: number,
  observe: (at: number) => Promise<Sample>,
): Promise<Phase> {
  const periods = Math.max(1, Math.ceil(seconds / SAMPLE_SECONDS));
  const perWindow = Math.max(1, Math.round(rate * SAMPLE_SECONDS));
  const bodies = knownDevices(first);
  // One pool for the phase: the webhook's descriptors then follow the load, not the windows.
  const agent = newAgent();
  const started = performance.now();
  const due = (k: number): number => started + k * SAMPLE_SECONDS * 1000;
  const windows: Promise<LoadWindow>[] = [];
  const samples: Sample[] = [];
  const load = async (): Promise<void> => {
    for (let k = 0; k < periods; k++) {
      await sleepUntil(due(k));
      const offset = k * perWindow;
      windows.push(
        openLoop(url, rate, perWindow, (i) => bodies(offset + i), agent).then((r) => {
          const latencies = new LatencyHistogram();
          latencies.addAll(r.latenciesMs);
          return {
            end: (k + 1) * SAMPLE_SECONDS,
            latencies,
            requests: perWindow,
            failures: r.failures,
            failuresBy: r.failuresBy,
            shed: r.shed,
          };
        }),
      );
    }
  };
  const watch = async (): Promise<void> => {
    for (let k = 1; k <= periods; k++) {
      await sleepUntil(due(k));
      samples.push(await observe(k * SAMPLE_SECONDS));
    }
  };
  await Promise.all([load(), watch()]);
  const done = await Promise.all(windows);
  agent.destroy();
  return {
    rate,
    seconds: periods * SAMPLE_SECONDS,
    sampleSeconds: SAMPLE_SECONDS,
    samples,
    windows: done,
    elapsed: (performance.now() - started) / 1000,
  };
}

/** Waits until nothing waits but dead letters (dead-letter queues may keep what they hold). */
async function drain(queues: Backlogs): Promise<{ seconds: number; drained: boolean }> {
  const started = Date.now();
  for (;;) {
    const depths = await queues.depths();
    const drained = [...depths].every(([name, depth]) => name.endsWith(".dead") || depth === 0);
    if (drained || Date.now() - started > DRAIN_LIMIT_MS) {
      return { seconds: (Date.now() - started) / 1000, drained };
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** The peak and the soak against one `broker run all`, with the env the ingest part gets. */
export async function soakFigures(ctx: IngestContext): Promise<SoakReport> {
  const webhookPort = await freePort();
  const opsPort = await freePort();
  const apiPort = await freePort();
  const webPort = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "bench-soak-frred-"));
  // TTN_API_TOKEN stays unset (no metadata lookups); Ubidots and InfluxDB are not part of `all`.
  const child = startBroker(["all"], {
    ...ctx.env,
    TTN_WEBHOOK_PORT: String(webhookPort),
    METRICS_PORT: String(opsPort),
    API_PORT: String(apiPort),
    WEB_PORT: String(webPort),
    FRRED_DIR: dir,
  });
  const database = createDatabase(
    {
      host: ctx.env.PGHOST!,
      port: Number(ctx.env.PGPORT),
      user: ctx.env.PGUSER!,
      password: ctx.env.PGPASSWORD!,
      database: ctx.env.PGDATABASE!,
      poolSize: 1,
    },
    createLogger({ level: "warn" }),
  );
  const queues = new Backlogs(ctx.conn, ctx.queuePrefix, database.db);
  try {
    await waitReady(opsPort);
    const pid = child.pid;
    if (pid === undefined) {
      throw new Error("broker run all did not start");
    }
    const url = `http://127.0.0.1:${webhookPort}/ttn/webhook/up`;
    await knowAndMapDevices(ctx, url);
    const files = new FrredCount(dir);
    const observe =
      (phase: string) =>
      async (at: number): Promise<Sample> => {
        const [proc, depths, frredFiles] = await Promise.all([
          processFigures(pid),
          queues.depths(),
          files.count(),
        ]);
        if (Math.floor(at / 60) > Math.floor((at - SAMPLE_SECONDS) / 60)) {
          // Progress on stderr, so a long run shows it is alive.
          console.error(
            `soak bench, ${phase} ${(at / 60).toFixed(1)} min: RSS ${proc.rssMb.toFixed(1)} MB, ${proc.fds} fds, deepest queue ${Math.max(0, ...depths.values())}, ${frredFiles} FRRED files`,
          );
        }
        return { at, proc, depths, frredFiles };
      };
    const peak = await runPhase(url, PEAK_RATE, PEAK_SECONDS, FIRST_UPLINK, observe("peak"));
    const drained = await drain(queues);
    const afterPeak = await processFigures(pid);
    const sent = peak.windows.reduce((n, w) => n + w.requests, 0);
    const soak = await runPhase(url, RATE, SOAK_SECONDS, FIRST_UPLINK + sent, observe("soak"));
    const atEnd = await processFigures(pid);
    return {
      components: resolveComponentNames(["all"]),
      queues: queues.watched,
      peak,
      drainSeconds: drained.seconds,
      drained: drained.drained,
      afterPeak,
      soak,
      atEnd,
    };
  } finally {
    await queues.close();
    await database.close();
    await stopBroker(child);
    await rm(dir, { recursive: true, force: true });
  }
}
