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
  startPrivateMosquitto,
  startPrivatePostgres,
  startPrivateRabbit,
  until,
  type PrivateMosquitto,
  type PrivatePostgres,
  type PrivateRabbit,
} from "../../test/helpers/private-servers.js";
import { UbidotsStandIn } from "../../test/helpers/ubidots-standin.js";
import { AxisTechStandIn } from "./axistech-standin.js";
import { allFaults, type Fault } from "./faults.js";
import { InfluxStandIn } from "./influx-standin.js";
import {
  axisInput,
  INDEX_FIELD,
  makeInputs,
  paced,
  postUplink,
  type Input,
  type RefusalLog,
} from "./load.js";
import { ComponentProcess } from "./processes.js";
import {
  allAccountedFor,
  describeFailures,
  dotsByMessage,
  reconcileDestination,
  recoveryTimes,
  type AcceptedInput,
  type DestinationReport,
  type FaultWindow,
} from "./reconcile.js";

/**
 * `npm run chaos`: the real system as separate processes on a PostgreSQL, a RabbitMQ and a
 * Mosquitto of the run's own, a steady mixed load (TTN webhook, a YDOC MQTT source, an AxisTech
 * poller against a stand-in vendor), faults spaced out over it, and at the end every accepted
 * input reconciled by correlation id at every destination.
 */

export interface ChaosOptions {
  /** TTN uplinks posted to the webhook. */
  readonly uplinks: number;
  /** YDOC messages published to the MQTT broker. */
  readonly mqttMessages: number;
  /** Weather records the AxisTech stand-in makes available to the poller. */
  readonly axisRecords: number;
  readonly ttnDevices: number;
  readonly ydocDevices: number;
  readonly axisStations: number;
  /** How long the steady load lasts (ms); the faults are spread over it. */
  readonly loadMs: number;
  /** How long a lasting fault (destination down, directory gone, locks held) lasts (ms). */
  readonly holdMs: number;
  /** Longest wait after the load for every destination to catch up (ms). */
  readonly drainMs: number;
  /** Attempts of a webhook sender before it gives an uplink up. Default 20. */
  readonly maxAttempts?: number;
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
  /** Dots the Ubidots stand-in received again verbatim (a retried post: the same dot). */
  readonly ubidotsRewrites: number;
  /** AxisTech records the poller saved as read (accepted) of those the vendor served. */
  readonly polled: { saved: number; served: number };
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
  "ubidots_logical_msg_queue",
];
const DEAD_QUEUES = [
  "lm_physical_timeseries.dead",
  "databolt_logical_msg_queue.dead",
  "influxdb_logical_msg_queue.dead",
  "ubidots_logical_msg_queue.dead",
  "ydoc_ingest.dead",
  "ttn_webhook.dead",
  "axistech_ingest.dead",
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
  // A connection the run's own teardown cuts (Ctrl-C while reading) is not a crash.
  conn.on("error", () => undefined);
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
    let lastAt = Date.now();
    // Consumed with a prefetch window, not fetched one `get` at a time: a hundred thousand
    // round trips to a quorum queue take over an hour on a loaded machine.
    await ch.prefetch(1000);
    const { consumerTag } = await ch.consume(TAP_QUEUE, (m) => {
      if (!m) {
        return;
      }
      lastAt = Date.now();
      const body = JSON.parse(m.content.toString("utf8")) as { broker_correlation_id?: string };
      const messageId = String(m.properties.messageId);
      if (messageIds.has(messageId)) {
        redelivered++;
      } else {
        messageIds.add(messageId);
        ids.push(body.broker_correlation_id ?? String(m.properties.correlationId));
      }
      ch.ack(m);
    });
    // Until nothing has come for a second and the queue holds nothing ready.
    for (;;) {
      await sleep(500);
      if (Date.now() - lastAt >= 1_000 && (await ch.checkQueue(TAP_QUEUE)).messageCount === 0) {
        break;
      }
    }
    await ch.cancel(consumerTag);
    return { ids, redelivered };
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

    log(`work directory ${workDir}; starting a private PostgreSQL, RabbitMQ and Mosquitto`);
    const [postgres, rabbit, mosquitto]: [PrivatePostgres, PrivateRabbit, PrivateMosquitto] =
      await Promise.all([startPrivatePostgres(), startPrivateRabbit(), startPrivateMosquitto()]);
    teardown.add(() => postgres.stop());
    teardown.add(() => rabbit.stop());
    teardown.add(() => mosquitto.stop());
    const pool = await createPrivateDatabase(postgres, "chaos");
    pool.on("error", () => undefined);
    teardown.add(() => pool.end());
    await migrate(pool);

    const influxToken = randomBytes(8).toString("hex");
    const influx = new InfluxStandIn(influxToken, clock);
    const influxUrl = await influx.start();
    teardown.add(() => influx.stop());
    const ubidotsToken = randomBytes(8).toString("hex");
    // Ubidots allows 4 requests/s per token; the run's stand-in allows 25 and the writers use
    // 20, so that the long run's load is not bounded by a rate the real service would impose.
    const ubidots = new UbidotsStandIn({ token: ubidotsToken, rate: 25 });
    const ubidotsUrl = await ubidots.start();
    teardown.add(() => ubidots.stop());
    const axisToken = randomBytes(8).toString("hex");
    const vendor = new AxisTechStandIn(axisToken);
    const vendorUrl = await vendor.start();
    teardown.add(() => vendor.stop());

    await withChannel(rabbit.url, async (ch) => {
      await ch.assertExchange("logical_timeseries", "fanout", { durable: true });
      await ch.assertQueue(TAP_QUEUE, { durable: true, arguments: { "x-queue-type": "quorum" } });
      await ch.bindQueue(TAP_QUEUE, "logical_timeseries", "");
    });

    const mqttUrl = mosquitto.url;
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
      UBIDOTS_URL: ubidotsUrl,
      UBIDOTS_API_TOKEN: ubidotsToken,
      UBIDOTS_RATE_LIMIT: "20",
      UBIDOTS_TIMEOUT_MS: "5000",
      AXISTECH_TOKEN: axisToken,
      AXISTECH_API_URL: vendorUrl,
      AXISTECH_POLL_SECONDS: "0.5",
      POLLER_RETRY_SECONDS: "0.2",
      POLLER_RETRY_MAX_SECONDS: "2",
      MQTT_URL: mqttUrl,
      YDOC_MQTT_TOPICS: `${root}/YDOC/+`,
      YDOC_MQTT_CLIENT_ID: ydocClientId,
    };
    const processes = [
      new ComponentProcess("ttn-webhook", ["run", "ttn-webhook"], env, logDir),
      new ComponentProcess("ydoc", ["run", "ydoc"], env, logDir),
      new ComponentProcess("axistech", ["run", "axistech"], env, logDir),
      new ComponentProcess("mapper-a", ["run", "mapper"], env, logDir),
      new ComponentProcess("mapper-b", ["run", "mapper"], env, logDir),
      new ComponentProcess("frred-a", ["run", "frred"], env, logDir),
      new ComponentProcess("frred-b", ["run", "frred"], env, logDir),
      new ComponentProcess("influxdb-a", ["run", "influxdb"], env, logDir),
      new ComponentProcess("influxdb-b", ["run", "influxdb"], env, logDir),
      new ComponentProcess("ubidots-a", ["run", "ubidots"], env, logDir),
      new ComponentProcess("ubidots-b", ["run", "ubidots"], env, logDir),
    ];
    // Stopped together: one by one, their grace periods would add up.
    teardown.add(() => Promise.all(processes.map((p) => p.close())));
    for (const p of processes) {
      p.start();
    }
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
      if (input.kind === "axistech") {
        // Served from now on; owed once the poller saved it as read (checked at the end).
        vendor.add(input.record!);
        return true;
      }
      if (input.kind === "ydoc") {
        await publisher.publishAsync(input.topic!, input.bytes, { qos: 1 });
        return true;
      }
      return (await postUplink(url, input.bytes, clock, refusals, maxAttempts)).accepted;
    };

    // One input per device first, so every device exists and can be mapped before the load.
    // (The AxisTech stations' first records are older than any record of the load.)
    const counts = {
      uplinks: options.ttnDevices,
      mqtt: options.ydocDevices,
      axis: 0,
      ttnDevices: options.ttnDevices,
      ydocDevices: options.ydocDevices,
      axisStations: options.axisStations,
    };
    const warmUp = [
      ...makeInputs(root, counts, 1_000_000_000, 1_000_000),
      ...Array.from({ length: options.axisStations }, (_, d) =>
        axisInput(1_000_100_000 + d, d, -1),
      ),
    ];
    await Promise.all(warmUp.map(send));
    const devices = options.ttnDevices + options.ydocDevices + options.axisStations;
    await until("chaos run: every device seen", 60_000, async () => {
      const rows = await pool.query<{ n: string }>("select count(*) as n from physical_devices");
      return Number(rows.rows[0]!.n) >= devices;
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
      axis: options.axisRecords,
      ttnDevices: options.ttnDevices,
      ydocDevices: options.ydocDevices,
      axisStations: options.axisStations,
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
      mosquitto,
      influx,
      ubidots,
      vendor,
      frredDir,
    });
    const windows: FaultWindow[] = [];
    // Spread over the first three quarters of the load: a fault that runs late (a restart on a
    // loaded machine) still has fresh inputs after it to measure the recovery by.
    const spacing = (options.loadMs * 0.75) / faults.length;
    const loadStart = clock();
    const chaos = (async () => {
      for (const [k, fault] of faults.entries()) {
        if (options.abort?.signal.aborted) {
          return;
        }
        const due = (k + 0.5) * spacing - (clock() - loadStart);
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
    const axis = inputs.filter((i) => i.kind === "axistech");
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
      // One at a time: a station's records appear in time order, as a vendor's do.
      paced(axis, options.loadMs, 1, track),
      chaos,
    ]);
    const loadMs = clock() - loadStart;
    log(`load done in ${loadMs} ms: ${acceptedAt.size} accepted, ${givenUp.size} given up`);

    // Drain: the poller through every record served and every accepted input at every
    // destination, or the time runs out.
    const drainStart = clock();
    const lastServed = new Map<string, number>();
    for (const i of axis) {
      lastServed.set(i.record!.code, Date.parse(i.record!.time));
    }
    await until("chaos run: every destination caught up", options.drainMs, async () => {
      const saved = await pollerProgress(pool);
      if (![...lastServed].every(([code, at]) => (saved.get(code) ?? -1) >= at)) {
        return false;
      }
      const ids = [...acceptedAt.keys()];
      const files = new Set((await readdir(frredDir)).map((n) => n.slice(0, 36)));
      const seqs = new Set(influx.lines.map((l) => INDEX_FIELD.exec(l.line)?.[1]));
      const dots = new Set(ubidots.arrivals.map((a) => a.correlationId));
      const pts = await pool.query<{ n: string }>(
        "select count(*) as n from physical_timeseries where logical_uid is not null",
      );
      return (
        ids.every((id) => files.has(id) && dots.has(id)) &&
        ids.length <= seqs.size &&
        Number(pts.rows[0]!.n) >= ids.length
      );
    }).catch((err: Error) => log(err.message));
    // What is still in flight (a late redelivery) has a moment to show itself as a duplicate.
    await sleep(3_000);
    const drainMs = clock() - drainStart;
    sampling = false;
    await sampler;

    // A vendor record is accepted once the poller saved its progress past it; one it never got
    // to is owed nowhere (and fails the run below: the drain gives the poller time enough).
    const saved = await pollerProgress(pool);
    const unread = new Set<string>();
    for (const i of axis) {
      if (Date.parse(i.record!.time) > (saved.get(i.record!.code) ?? -1)) {
        acceptedAt.delete(i.correlationId);
        unread.add(i.correlationId);
      }
    }

    const accepted: AcceptedInput[] = inputs
      .filter((i) => acceptedAt.has(i.correlationId))
      .map((i) => ({ correlationId: i.correlationId, device: i.device, seq: i.seq }));
    const tolerated = new Set([...givenUp, ...unread, ...warmUp.map((w) => w.correlationId)]);
    const frred = await frredContents(frredDir, t0);
    const influxIds = influx.lines.map((l) => {
      const seq = INDEX_FIELD.exec(l.line)?.[1];
      const input = seq === undefined ? undefined : byIndex.get(Number(seq));
      return input?.correlationId ?? `unknown line ${l.line.slice(0, 60)}`;
    });
    const warmIds = new Set(warmUp.map((w) => w.correlationId));
    const tap = await drainTap(rabbit.url);
    const dots = dotsByMessage(ubidots.arrivals);
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
      {
        name: "Ubidots stand-in",
        // Ubidots keeps one dot per variable and timestamp (doc/ubidots.md § Duplicates): a dot
        // received again verbatim is the same dot; the same message's variable received with
        // another value or timestamp would be a duplicate.
        correlationIds: dots.correlationIds,
      },
    ];
    const destinations = contents.map((c) =>
      reconcileDestination(
        accepted,
        { name: c.name, correlationIds: c.correlationIds.filter((id) => !warmIds.has(id)) },
        tolerated,
      ),
    );
    // An input has arrived when it is at every final destination: the latest of the times.
    const arrivedAt = new Map(frred.map((f) => [f.id, f.at]));
    const later = (id: string, at: number): void => {
      const before = arrivedAt.get(id);
      if (before !== undefined) {
        arrivedAt.set(id, Math.max(before, at));
      }
    };
    influx.lines.forEach((l, i) => later(influxIds[i]!, l.at));
    for (const a of ubidots.arrivals) {
      later(a.correlationId ?? "", a.at - t0);
    }
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
    if (unread.size > 0) {
      failures.push(
        `axistech poller: ${unread.size} records served and never saved as read: ${[...unread].slice(0, 50).join(" ")}`,
      );
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
      ubidotsRewrites: dots.rewrites,
      polled: { saved: axis.length - unread.size, served: axis.length },
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

/** The AxisTech poller's saved progress: per station code, the last record time read (ms). */
async function pollerProgress(pool: pg.Pool): Promise<Map<string, number>> {
  const rows = await pool.query<{ code: string; ms: number }>(
    `select device_key as code, extract(epoch from last_ts::timestamptz) * 1000 as ms
       from poller_state where source_name = 'axistech' and last_ts is not null`,
  );
  return new Map(rows.rows.map((r) => [r.code, Number(r.ms)]));
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
