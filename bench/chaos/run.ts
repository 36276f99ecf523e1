import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import amqp from "amqplib";
import mqtt from "mqtt";
import type pg from "pg";

import { sleep } from "../../src/core/backoff.js";
import { migrate } from "../../src/db/migrate.js";
import {
  createPrivateDatabase,
  freePort,
  startPrivatePostgres,
  startPrivateRabbit,
  until,
  type PrivatePostgres,
  type PrivateRabbit,
} from "../../test/helpers/private-servers.js";
import { allFaults, type Fault } from "./faults.js";
import { InfluxStandIn } from "./influx-standin.js";
import { makeInputs, paced, postUplink, type Input, type RefusalLog } from "./load.js";
import { ComponentProcess } from "./processes.js";
import {
  allAccountedFor,
  describeFailures,
  reconcileDestination,
  recoveryTimes,
  type AcceptedInput,
  type DestinationReport,
  type FaultWindow,
} from "./reconcile.js";

/**
 * `npm run chaos`: the real system as separate processes on a PostgreSQL and a RabbitMQ of the
 * run's own, a steady mixed load (TTN webhook and a YDOC MQTT source), faults spaced out over it,
 * and at the end every accepted input reconciled by correlation id at every destination.
 */

export interface ChaosOptions {
  /** TTN uplinks posted to the webhook. */
  readonly uplinks: number;
  /** YDOC messages published to the MQTT broker. */
  readonly mqttMessages: number;
  readonly ttnDevices: number;
  readonly ydocDevices: number;
  /** How long the steady load lasts (ms); the faults are spread over it. */
  readonly loadMs: number;
  /** How long a lasting fault (destination down, directory gone, locks held) lasts (ms). */
  readonly holdMs: number;
  /** Longest wait after the load for every destination to catch up (ms). */
  readonly drainMs: number;
  /** Attempts of a webhook sender before it gives an uplink up. Default 20. */
  readonly maxAttempts?: number;
  /** MQTT broker the YDOC source and the publisher use (not faulted). */
  readonly mqttUrl?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Keep the work directory (logs, FRRED files) after a passing run too. */
  readonly keep?: boolean;
  /**
   * Aborting it (Ctrl-C in `npm run chaos`) stops everything the run started; `stopped` resolves
   * once that is done.
   */
  readonly abort?: { signal: AbortSignal; stopped?: (done: Promise<void>) => void };
}

export interface ChaosReport {
  readonly ok: boolean;
  readonly failures: string[];
  readonly accepted: number;
  /** Uplinks the webhook sender gave up on after maxAttempts (never accepted). */
  readonly givenUp: number;
  /** Non-2xx answers and failed connections the webhook senders met, by the fault in force. */
  readonly refusalsByFault: Record<string, number>;
  readonly destinations: DestinationReport[];
  readonly recovery: { name: string; recoveryMs: number | undefined }[];
  readonly faults: FaultWindow[];
  readonly peakQueueDepths: Record<string, number>;
  readonly deadLettered: Record<string, number>;
  /** Copies the logical exchange carried again under the same message id (see drainTap). */
  readonly tapRedeliveries: number;
  /** Lines the InfluxDB stand-in received again verbatim (a retried write: the same point). */
  readonly influxRewrites: number;
  /** Component exits nobody asked for. */
  readonly crashes: Record<string, string[]>;
  readonly loadMs: number;
  readonly drainMs: number;
  readonly workDir: string;
}

const TAP_QUEUE = "chaos_lts_tap";
/** The system's own queues (the tap is read only at the end: its depth says nothing). */
const SYSTEM_QUEUES = [
  "lm_physical_timeseries",
  "databolt_logical_msg_queue",
  "influxdb_logical_msg_queue",
];
const DEAD_QUEUES = [
  "lm_physical_timeseries.dead",
  "databolt_logical_msg_queue.dead",
  "influxdb_logical_msg_queue.dead",
  "ydoc_ingest.dead",
  "ttn_webhook.dead",
];

/** Everything the run started, stopped in reverse order whatever happens. */
class Teardown {
  readonly #steps: (() => Promise<unknown>)[] = [];
  add(step: () => Promise<unknown>): void {
    this.#steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      await step().catch(() => undefined);
    }
  }
}

async function withChannel<T>(url: string, fn: (ch: amqp.Channel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    ch.on("error", () => undefined);
    return await fn(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Ready messages per queue (the queues that do not exist yet are left out). */
async function queueDepths(url: string, queues: readonly string[]): Promise<Map<string, number>> {
  const depths = new Map<string, number>();
  const conn = await amqp.connect(url);
  conn.on("error", () => undefined);
  try {
    for (const q of queues) {
      const ch = await conn.createChannel();
      ch.on("error", () => undefined);
      try {
        depths.set(q, (await ch.checkQueue(q)).messageCount);
        await ch.close();
      } catch {
        // not declared (yet)
      }
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  return depths;
}

/**
 * Every message on the tap queue, in order: its correlation id. The bus is at-least-once: a
 * mapper that dies (or loses its connection) after publishing and before its ack publishes the
 * message again on redelivery, under the same message id (the idempotency key every consumer
 * dedupes by). Those copies are counted apart as `redelivered`; a second message with another
 * id for the same input would still count as a duplicate.
 */
async function drainTap(url: string): Promise<{ ids: string[]; redelivered: number }> {
  return withChannel(url, async (ch) => {
    const ids: string[] = [];
    const messageIds = new Set<string>();
    let redelivered = 0;
    for (;;) {
      const m = await ch.get(TAP_QUEUE, { noAck: false });
      if (m === false) {
        return { ids, redelivered };
      }
      const body = JSON.parse(m.content.toString("utf8")) as { broker_correlation_id?: string };
      const messageId = String(m.properties.messageId);
      if (messageIds.has(messageId)) {
        redelivered++;
      } else {
        messageIds.add(messageId);
        ids.push(body.broker_correlation_id ?? String(m.properties.correlationId));
      }
      ch.ack(m);
    }
  });
}

async function frredContents(dir: string, t0: number): Promise<{ id: string; at: number }[]> {
  const names = (await readdir(dir)).filter((n) => !n.startsWith("."));
  const entries = await Promise.all(
    names.map(async (n) => ({ id: n.slice(0, 36), at: (await stat(join(dir, n))).mtimeMs - t0 })),
  );
  return entries.sort((a, b) => a.at - b.at);
}

async function column(pool: pg.Pool, sql: string): Promise<string[]> {
  return (await pool.query<{ id: string }>(sql)).rows.map((r) => r.id);
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const t0 = Date.now();
  const clock = (): number => Date.now() - t0;
  const teardown = new Teardown();
  options.abort?.signal.addEventListener("abort", () => options.abort?.stopped?.(teardown.run()), {
    once: true,
  });
  const workDir = await mkdtemp(join(tmpdir(), "chaos-"));
  let passed = false;
  try {
    const logDir = join(workDir, "logs");
    const frredDir = join(workDir, "frred");
    await mkdir(logDir);
    await mkdir(frredDir);

    log(`work directory ${workDir}; starting a private PostgreSQL and RabbitMQ`);
    const [postgres, rabbit]: [PrivatePostgres, PrivateRabbit] = await Promise.all([
      startPrivatePostgres(),
      startPrivateRabbit(),
    ]);
    teardown.add(() => postgres.stop());
    teardown.add(() => rabbit.stop());
    const pool = await createPrivateDatabase(postgres, "chaos");
    pool.on("error", () => undefined);
    teardown.add(() => pool.end());
    await migrate(pool);

    const influxToken = randomBytes(8).toString("hex");
    const influx = new InfluxStandIn(influxToken, clock);
    const influxUrl = await influx.start();
    teardown.add(() => influx.stop());

    await withChannel(rabbit.url, async (ch) => {
      await ch.assertExchange("logical_timeseries", "fanout", { durable: true });
      await ch.assertQueue(TAP_QUEUE, { durable: true, arguments: { "x-queue-type": "quorum" } });
      await ch.bindQueue(TAP_QUEUE, "logical_timeseries", "");
    });

    const mqttUrl = options.mqttUrl ?? process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
    const root = `chaos${randomBytes(4).toString("hex")}`;
    const ydocClientId = `${root}-ydoc`;
    const webhookPort = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PGHOST: postgres.host,
      PGPORT: String(postgres.port),
      PGUSER: "postgres",
      PGPASSWORD: "",
      PGDATABASE: "chaos",
      PG_POOL_SIZE: "5",
      AMQP_URL: rabbit.url,
      QUEUE_PREFIX: "",
      METRICS_PORT: "0",
      TTN_WEBHOOK_PORT: String(webhookPort),
      LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? "warn",
      LOG_FORMAT: "json",
      FRRED_DIR: frredDir,
      INFLUXDB_URL: influxUrl,
      INFLUXDB_API: "v2",
      INFLUXDB_ORG: "chaos",
      INFLUXDB_BUCKET: "chaos",
      INFLUXDB_TOKEN: influxToken,
      // Short retry ceilings and claim leases, so that what a fault left waiting (a claim that
      // committed as PostgreSQL went down, a killed writer's claims) comes back within the
      // drain; the defaults (5 minutes each) would only make the run longer.
      WRITER_RETRY_MAX_MS: "5000",
      WRITER_LEASE_MS: "15000",
      INFLUXDB_TIMEOUT_MS: "5000",
      MQTT_URL: mqttUrl,
      YDOC_MQTT_TOPICS: `${root}/YDOC/+`,
      YDOC_MQTT_CLIENT_ID: ydocClientId,
    };
    const processes = [
      new ComponentProcess("ttn-webhook", ["run", "ttn-webhook"], env, logDir),
      new ComponentProcess("ydoc", ["run", "ydoc"], env, logDir),
      new ComponentProcess("mapper-a", ["run", "mapper"], env, logDir),
      new ComponentProcess("mapper-b", ["run", "mapper"], env, logDir),
      new ComponentProcess("frred-a", ["run", "frred"], env, logDir),
      new ComponentProcess("frred-b", ["run", "frred"], env, logDir),
      new ComponentProcess("influxdb-a", ["run", "influxdb"], env, logDir),
      new ComponentProcess("influxdb-b", ["run", "influxdb"], env, logDir),
    ];
    for (const p of processes) {
      teardown.add(() => p.close());
      p.start();
    }
    // The persistent session the YDOC source keeps on the shared MQTT broker goes with the run.
    teardown.add(async () => {
      const c = await mqtt.connectAsync(mqttUrl, { clientId: ydocClientId, clean: true });
      await c.endAsync();
    });
    const url = `http://127.0.0.1:${webhookPort}/ttn/webhook/up`;
    await until("chaos run: the system ready", 120_000, async () => {
      const ready = await fetch(`http://127.0.0.1:${webhookPort}/readyz`);
      const depths = await withChannel(rabbit.url, async (ch) =>
        Promise.all(SYSTEM_QUEUES.map(async (q) => (await ch.checkQueue(q)).consumerCount)),
      );
      return ready.status === 200 && depths.every((n) => n >= 2);
    });
    log(`system ready after ${clock()} ms`);

    const publisher = await mqtt.connectAsync(mqttUrl, { clientId: `${root}-publisher` });
    teardown.add(() => publisher.endAsync());
    const refusals: RefusalLog = [];
    const maxAttempts = options.maxAttempts ?? 20;
    const send = async (input: Input): Promise<boolean> => {
      if (input.kind === "ydoc") {
        await publisher.publishAsync(input.topic!, input.bytes, { qos: 1 });
        return true;
      }
      return (await postUplink(url, input.bytes, clock, refusals, maxAttempts)).accepted;
    };

    // One input per device first, so every device exists and can be mapped before the load.
    const counts = {
      uplinks: options.ttnDevices,
      mqtt: options.ydocDevices,
      ttnDevices: options.ttnDevices,
      ydocDevices: options.ydocDevices,
    };
    const warmUp = makeInputs(root, counts, 1_000_000_000, 1_000_000);
    await Promise.all(warmUp.map(send));
    await until("chaos run: every device seen", 60_000, async () => {
      const rows = await pool.query<{ n: string }>("select count(*) as n from physical_devices");
      return Number(rows.rows[0]!.n) >= options.ttnDevices + options.ydocDevices;
    });
    await pool.query(
      `with pd as (select uid from physical_devices),
            ld as (insert into logical_devices (name) select 'ld ' || uid from pd returning uid, name)
       insert into physical_logical_map (physical_uid, logical_uid, start_time)
       select pd.uid, ld.uid, '2020-01-01T00:00:00Z' from pd join ld on ld.name = 'ld ' || pd.uid`,
    );

    const inputs = makeInputs(root, {
      uplinks: options.uplinks,
      mqtt: options.mqttMessages,
      ttnDevices: options.ttnDevices,
      ydocDevices: options.ydocDevices,
    });
    const byIndex = new Map(inputs.map((i) => [i.index, i]));
    const acceptedAt = new Map<string, number>();
    const givenUp = new Set<string>();

    // Peak depths, sampled every two seconds until the end of the drain.
    const peaks: Record<string, number> = {};
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const depths = await queueDepths(rabbit.url, SYSTEM_QUEUES).catch(() => new Map());
        for (const [q, n] of depths) {
          peaks[q] = Math.max(peaks[q] ?? 0, n);
        }
        await sleep(2_000);
      }
    })();
    teardown.add(async () => {
      sampling = false;
      await sampler;
    });

    const faults: Fault[] = allFaults({
      processes,
      rabbit,
      postgres,
      pool,
      influx,
      frredDir,
    });
    const windows: FaultWindow[] = [];
    const spacing = options.loadMs / (faults.length + 1);
    const loadStart = clock();
    const chaos = (async () => {
      for (const [k, fault] of faults.entries()) {
        if (options.abort?.signal.aborted) {
          return;
        }
        const due = (k + 1) * spacing - (clock() - loadStart);
        if (due > 0) {
          await sleep(due);
        }
        const startedAt = clock();
        log(`fault: ${fault.name}`);
        await fault.run(options.holdMs);
        windows.push({ name: fault.name, startedAt, endedAt: clock() });
      }
    })();

    const ttn = inputs.filter((i) => i.kind === "ttn");
    const ydoc = inputs.filter((i) => i.kind === "ydoc");
    const track = async (input: Input): Promise<void> => {
      if (await send(input)) {
        acceptedAt.set(input.correlationId, clock());
      } else {
        givenUp.add(input.correlationId);
      }
    };
    await Promise.all([
      paced(ttn, options.loadMs, 32, track),
      paced(ydoc, options.loadMs, 4, track),
      chaos,
    ]);
    const loadMs = clock() - loadStart;
    log(`load done in ${loadMs} ms: ${acceptedAt.size} accepted, ${givenUp.size} given up`);

    // Drain: every accepted input at every destination, or the time runs out.
    const drainStart = clock();
    const acceptedIds = [...acceptedAt.keys()];
    await until("chaos run: every destination caught up", options.drainMs, async () => {
      const files = new Set((await readdir(frredDir)).map((n) => n.slice(0, 36)));
      const seqs = new Set(influx.lines.map((l) => /\bseq=([0-9.]+)/.exec(l.line)?.[1]));
      const pts = await pool.query<{ n: string }>(
        "select count(*) as n from physical_timeseries where logical_uid is not null",
      );
      return (
        acceptedIds.every((id) => files.has(id)) &&
        [...acceptedAt.keys()].length <= seqs.size &&
        Number(pts.rows[0]!.n) >= acceptedIds.length
      );
    }).catch((err: Error) => log(err.message));
    // What is still in flight (a late redelivery) has a moment to show itself as a duplicate.
    await sleep(3_000);
    const drainMs = clock() - drainStart;
    sampling = false;
    await sampler;

    const accepted: AcceptedInput[] = inputs
      .filter((i) => acceptedAt.has(i.correlationId))
      .map((i) => ({ correlationId: i.correlationId, device: i.device, seq: i.seq }));
    const tolerated = new Set([...givenUp, ...warmUp.map((w) => w.correlationId)]);
    const frred = await frredContents(frredDir, t0);
    const influxIds = influx.lines.map((l) => {
      const seq = /\bseq=([0-9.]+)/.exec(l.line)?.[1];
      const input = seq === undefined ? undefined : byIndex.get(Number(seq));
      return input?.correlationId ?? `unknown line ${l.line.slice(0, 60)}`;
    });
    const warmIds = new Set(warmUp.map((w) => w.correlationId));
    const tap = await drainTap(rabbit.url);
    const contents = [
      {
        name: "raw_messages",
        correlationIds: await column(
          pool,
          "select correlation_id::text as id from raw_messages order by uid",
        ),
      },
      {
        name: "physical_timeseries",
        correlationIds: await column(
          pool,
          "select json_msg->>'broker_correlation_id' as id from physical_timeseries order by uid",
        ),
      },
      { name: "logical exchange tap", correlationIds: tap.ids },
      { name: "FRRED directories", correlationIds: frred.map((f) => f.id) },
      {
        name: "InfluxDB stand-in",
        // Writing a point again is the same point in InfluxDB (a retry never duplicates there),
        // so a line repeated verbatim is counted once; a second, different line would not be.
        correlationIds: dedupeVerbatim(
          influx.lines.map((l) => l.line),
          influxIds,
        ),
      },
    ];
    const destinations = contents.map((c) =>
      reconcileDestination(
        accepted,
        { name: c.name, correlationIds: c.correlationIds.filter((id) => !warmIds.has(id)) },
        tolerated,
      ),
    );
    // An input has arrived when it is at both final destinations: the later of the two times.
    const arrivedAt = new Map(frred.map((f) => [f.id, f.at]));
    influx.lines.forEach((l, i) => {
      const id = influxIds[i]!;
      const at = arrivedAt.get(id);
      if (at !== undefined) {
        arrivedAt.set(id, Math.max(at, l.at));
      }
    });
    const recovery = recoveryTimes(windows, acceptedAt, arrivedAt);

    const refusalsByFault: Record<string, number> = {};
    for (const r of refusals) {
      const during = [...windows].reverse().find((w) => r.at >= w.startedAt);
      const name = during && r.at <= during.endedAt + 10_000 ? during.name : "no fault";
      refusalsByFault[name] = (refusalsByFault[name] ?? 0) + 1;
    }
    // Ready and unacknowledged: a message a consumer holds and never settles is not done either.
    const finalDepths = new Map<string, number>();
    const listing = await rabbit
      .ctl("-q", "list_queues", "name", "messages_ready", "messages_unacknowledged")
      .catch(() => "");
    for (const [name, ready, unacked] of listing.split("\n").map((l) => l.split("\t"))) {
      if (name && SYSTEM_QUEUES.includes(name)) {
        finalDepths.set(name, Number(ready) + Number(unacked));
      }
    }
    const dead = await queueDepths(rabbit.url, DEAD_QUEUES).catch(() => new Map<string, number>());
    const deadLettered = Object.fromEntries([...dead].filter(([, n]) => n > 0));
    const crashes = Object.fromEntries(
      processes
        .filter((p) => p.unexpectedExits.length > 0)
        .map((p) => [p.label, p.unexpectedExits]),
    );
    const failures = describeFailures(destinations);
    const pending = await pool.query<{ writer: string; n: string }>(
      "select writer, count(*) as n from delivery_queue where delivered_at is null group by writer",
    );
    for (const row of pending.rows) {
      failures.push(`${row.writer}: ${row.n} messages still waiting in delivery_queue at the end`);
    }
    for (const [q, n] of finalDepths) {
      if (n > 0) {
        failures.push(`${q}: ${n} messages still queued (ready or unacknowledged) at the end`);
      }
    }
    for (const [q, n] of Object.entries(deadLettered)) {
      failures.push(`${q}: ${n} dead-lettered`);
    }
    for (const [label, exits] of Object.entries(crashes)) {
      failures.push(`${label} exited on its own: ${exits.join(", ")}`);
    }
    passed = allAccountedFor(destinations) && failures.length === 0;
    const report: ChaosReport = {
      ok: passed,
      failures,
      accepted: accepted.length,
      givenUp: givenUp.size,
      refusalsByFault,
      destinations,
      recovery,
      faults: windows,
      peakQueueDepths: peaks,
      deadLettered,
      tapRedeliveries: tap.redelivered,
      influxRewrites: influx.lines.length - new Set(influx.lines.map((l) => l.line)).size,
      crashes,
      loadMs,
      drainMs,
      workDir,
    };
    await writeFile(join(workDir, "report.json"), JSON.stringify(report, null, 2));
    return report;
  } finally {
    await teardown.run();
    if (passed && !options.keep) {
      await rm(workDir, { recursive: true, force: true });
    }
  }
}

/** The ids of `lines`, a line repeated verbatim counted once. */
function dedupeVerbatim(lines: readonly string[], ids: readonly string[]): string[] {
  const seen = new Set<string>();
  return ids.filter((_, i) => {
    const line = lines[i]!;
    if (seen.has(line)) {
      return false;
    }
    seen.add(line);
    return true;
  });
}
