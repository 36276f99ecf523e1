/**
 * Ingest figures for `npm run bench` (issue 11), each part in processes of its own:
 *
 * - the ceiling: bench/ceiling-server.ts, the webhook's HTTP stack and JSON parse answering 204
 *   with no database or broker;
 * - `broker run ttn-webhook` alone (POST → 204 with the raw row committed and the normalised
 *   message confirmed; the messages wait in the mapper's queue, purged after each run), with
 *   devices already known and with every uplink from a new device;
 * - the whole path: `ttn-webhook`, `mapper` and `frred` as three processes, until every FRRED file
 *   exists, and POST → logical exchange latency at a fixed offered load.
 *
 * Maximum throughput is closed loop (autocannon, BENCH_CONNECTIONS connections); fixed loads are
 * open loop (bench/open-loop.ts) at each of BENCH_RATES requests/s for BENCH_OPEN_SECONDS each.
 * BENCH_INGEST_REQUESTS (default 20000) requests per closed-loop run, BENCH_DEVICES devices;
 * BENCH_INGEST_RUNS picks runs (a profile or an A/B of two builds needs only one).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type amqp from "amqplib";
import autocannon from "autocannon";
import type pg from "pg";

import { QUEUE_NAMES } from "../src/bus/topology.js";
import { ttnCorrelationId } from "../src/sources/ttn/normalise.js";
import { BENCH_APPLICATION, BENCH_FRM_PAYLOAD } from "./decoders.js";
import { consumeCounting, freePort, startBroker, stopBroker, waitReady } from "./harness.js";
import { accountCpu, CORES, type CpuAccount } from "./cpu-account.js";
import { openLoop } from "./open-loop.js";
import { percentile } from "./stats.js";

const REQUESTS = Number(process.env.BENCH_INGEST_REQUESTS ?? 20_000);
const DEVICES = Number(process.env.BENCH_DEVICES ?? 1_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const RATES = (process.env.BENCH_RATES ?? "500,1000").split(",").map(Number);
const OPEN_SECONDS = Number(process.env.BENCH_OPEN_SECONDS ?? 10);
/** Which runs (BENCH_INGEST_RUNS, comma-separated): ceiling, known, new, path. Default all. */
const RUNS = new Set(
  (process.env.BENCH_INGEST_RUNS ?? "ceiling,known,new,path").split(",").map((r) => r.trim()),
);

/** One row of the ingest table. */
export interface IngestFigure {
  readonly name: string;
  /** "max" (closed loop) or the offered requests/s (open loop). */
  readonly offered: string;
  readonly requests: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  /** p95 for open-loop runs; autocannon reports p97.5 instead. */
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly failures: number;
  /** Where the CPU went over the run (bench/cpu-account.ts). */
  readonly cpu?: CpuAccount;
}

export interface IngestContext {
  readonly conn: amqp.ChannelModel;
  readonly pool: pg.Pool;
  readonly env: Record<string, string>;
  readonly queuePrefix: string;
  readonly ltsExchange: string;
}

/** A TTN uplink of device `device`, frame `i` (distinct bodies: the webhook drops repeats). */
export function benchUplink(device: number, i: number): string {
  const eui = (0x70b3d57e00000000n + BigInt(device)).toString(16).padStart(16, "0");
  const at = new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString();
  return JSON.stringify({
    end_device_ids: {
      device_id: `bench-${eui}`,
      application_ids: { application_id: BENCH_APPLICATION },
      dev_eui: eui,
    },
    received_at: at,
    uplink_message: {
      f_port: 6,
      frm_payload: BENCH_FRM_PAYLOAD,
      f_cnt: i,
      received_at: at,
      decoded_payload: { battery: 3.6, humidity: 55.18, temperature: 16.46 },
    },
  });
}

/** Bodies from uplink index `first` on: known devices cycle, new ones are one per uplink. */
export type Bodies = (i: number) => string;
export const knownDevices =
  (first: number): Bodies =>
  (i) =>
    benchUplink((first + i) % DEVICES, first + i);
const newDevices =
  (first: number): Bodies =>
  (i) =>
    benchUplink(10_000_000 + first + i, first + i);

async function closedLoop(name: string, url: string, bodies: Bodies): Promise<IngestFigure> {
  let next = 0;
  const started = performance.now();
  let lastAnswer = started;
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    amount: REQUESTS,
    requests: [
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        setupRequest: (req) => ({ ...req, body: bodies(next++) }),
        onResponse: () => {
          lastAnswer = performance.now();
        },
      },
    ],
  });
  const ok = result.non2xx === 0 && result.errors === 0 && result.timeouts === 0;
  // Up to the last answer: autocannon ends on its next one-second tick after the last one, and
  // its own duration (and any rate from it) counts that wait, up to 14 % of an 8 s run.
  const seconds = (lastAnswer - started) / 1000;
  return {
    name,
    offered: "max",
    requests: result.requests.total,
    seconds,
    perSecond: result.requests.total / seconds,
    p50Ms: result.latency.p50,
    p95Ms: result.latency.p97_5,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    failures: ok ? 0 : result.non2xx + result.errors + result.timeouts,
  };
}

async function fixedLoad(
  name: string,
  url: string,
  rate: number,
  bodies: Bodies,
): Promise<IngestFigure> {
  const count = rate * OPEN_SECONDS;
  const r = await openLoop(url, rate, count, bodies);
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  return {
    name,
    offered: String(rate),
    requests: count,
    seconds: r.seconds,
    perSecond: count / r.seconds,
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.at(-1) ?? Number.NaN,
    // A shed request was not ingested: a failure for a throughput figure.
    failures: r.failures + r.shed,
  };
}

function startCeiling(): Promise<{ child: ChildProcess; port: number }> {
  const profile = process.env.BENCH_PROFILE
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]
    : [];
  const child = spawn(
    process.execPath,
    [...profile, "--import", "tsx", "bench/ceiling-server.ts"],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      const m = /ceiling ready (\d+)/.exec(d.toString());
      if (m) {
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once("exit", () => reject(new Error("ceiling server exited")));
  });
}

async function purge(ctx: IngestContext, queue: string): Promise<void> {
  const ch = await ctx.conn.createChannel();
  await ch.purgeQueue(queue).catch(() => undefined);
  await ch.close();
}

/** Runs the webhook alone as its own process while `body` runs; purges the mapper's queue after. */
async function withWebhook<T>(
  ctx: IngestContext,
  extraEnv: Record<string, string>,
  body: (url: string, pid: number) => Promise<T>,
): Promise<T> {
  const port = await freePort();
  const opsPort = await freePort();
  const child = startBroker(["ttn-webhook"], {
    ...ctx.env,
    ...extraEnv,
    TTN_WEBHOOK_PORT: String(port),
    METRICS_PORT: String(opsPort),
  });
  try {
    await waitReady(opsPort);
    return await body(`http://127.0.0.1:${port}/ttn/webhook/up`, child.pid!);
  } finally {
    await stopBroker(child);
    await purge(ctx, ctx.queuePrefix + QUEUE_NAMES.mapper);
  }
}

/** One uplink per device (they are created), then a logical device mapped to each. */
export async function knowAndMapDevices(ctx: IngestContext, url: string): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < DEVICES) {
      const i = next++;
      const res = await fetch(url, { method: "POST", body: benchUplink(i, 900_000 + i) });
      await res.arrayBuffer();
      if (res.status !== 204) {
        throw new Error(`a device-creating uplink was answered ${res.status}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  await mapTtnDevices(ctx.pool);
}

/** A logical device mapped to each TTN device that has no mapping yet (bench runs share them). */
export async function mapTtnDevices(pool: pg.Pool): Promise<void> {
  await pool.query(
    `insert into logical_devices (name) select 'ttn ' || p.uid from physical_devices p
     where p.source_name = 'ttn' and not exists (select 1 from physical_logical_map m where m.physical_uid = p.uid);
     insert into physical_logical_map (physical_uid, logical_uid, start_time)
     select p.uid, l.uid, '2000-01-01T00:00:00Z' from physical_devices p join logical_devices l on l.name = 'ttn ' || p.uid
     where p.source_name = 'ttn' and not exists (select 1 from physical_logical_map m where m.physical_uid = p.uid)`,
  );
}

/**
 * The whole path as three processes: `count` uplinks of known devices sent at maximum (closed
 * loop) or at `rate`/s (open loop); the rate counts until every FRRED file exists, the latencies
 * are POST → logical exchange.
 */
async function wholePath(
  ctx: IngestContext,
  first: number,
  rate: number | undefined,
): Promise<IngestFigure> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "bench-ingest-frred-"));
  const children: ChildProcess[] = [];
  const ops: number[] = [];
  for (const [component, extra] of [
    ["ttn-webhook", { TTN_WEBHOOK_PORT: String(port) }],
    ["mapper", {}],
    ["frred", { FRRED_DIR: dir }],
  ] as const) {
    const opsPort = await freePort();
    ops.push(opsPort);
    children.push(
      startBroker([component], { ...ctx.env, ...extra, METRICS_PORT: String(opsPort) }),
    );
  }
  const ch = await ctx.conn.createChannel();
  const capture = ctx.queuePrefix + "lts_capture_ingest";
  try {
    await Promise.all(ops.map((p) => waitReady(p)));
    await ch.assertQueue(capture, { durable: true, arguments: { "x-queue-type": "quorum" } });
    await ch.bindQueue(capture, ctx.ltsExchange, "");
    const count = rate === undefined ? REQUESTS : rate * OPEN_SECONDS;
    const bodies = Array.from({ length: count }, (_, i) => knownDevices(first)(i));
    const sentAt = new Map<string, number>();
    const cids = bodies.map((b) => ttnCorrelationId(JSON.parse(b), Buffer.from(b)));
    const latencies: number[] = [];
    const stop = await consumeCounting(ctx.conn, capture, (body, at) => {
      const sent = sentAt.get(body.broker_correlation_id as string);
      if (sent !== undefined) {
        latencies.push(at - sent);
      }
    });
    const url = `http://127.0.0.1:${port}/ttn/webhook/up`;
    const pids = {
      "ttn-webhook": children[0]!.pid!,
      mapper: children[1]!.pid!,
      frred: children[2]!.pid!,
    };
    const measured = await accountCpu(pids, async () => {
      const started = Date.now();
      // The send time is stamped when the body is built (closed loop: as the request goes out).
      const stamped: Bodies = (i) => {
        // A load generator may ask for a body or two past the count: the last one again (its
        // repeat is stored once and forwarded under the same msg_key, so it changes no figure).
        const k = Math.min(i, count - 1);
        sentAt.set(cids[k]!, Date.now());
        return bodies[k]!;
      };
      const http =
        rate === undefined
          ? await closedLoop("whole path", url, stamped)
          : await fixedLoad("whole path", url, rate, stamped);
      const until = Date.now() + 600_000;
      while ((await readdir(dir)).filter((n) => !n.startsWith(".")).length < count) {
        if (Date.now() > until) {
          throw new Error("timed out waiting for FRRED files");
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return { http, seconds: (Date.now() - started) / 1000 };
    });
    const { http, seconds } = measured.result;
    await stop();
    const sorted = latencies.sort((a, b) => a - b);
    return {
      name: `whole path, 3 processes (POST → LTS; rate until every FRRED file exists)`,
      offered: rate === undefined ? "max" : String(rate),
      requests: count,
      seconds,
      perSecond: count / seconds,
      p50Ms: percentile(sorted, 50),
      p95Ms: percentile(sorted, 95),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.at(-1) ?? Number.NaN,
      failures: http.failures,
      cpu: measured.cpu,
    };
  } finally {
    await ch.deleteQueue(capture).catch(() => undefined);
    await ch.close().catch(() => undefined);
    await Promise.all(children.map((c) => stopBroker(c)));
    await rm(dir, { recursive: true, force: true });
  }
}

/** `run`'s figure with the CPU it cost, the processes in `pids` counted on their own. */
async function withCpu(
  pids: Readonly<Record<string, number>>,
  run: () => Promise<IngestFigure>,
): Promise<IngestFigure> {
  const { result, cpu } = await accountCpu(pids, run);
  return { ...result, cpu };
}

/** Every ingest run, in order; uplink indexes never repeat across runs. */
export async function ingestFigures(ctx: IngestContext): Promise<IngestFigure[]> {
  const out: IngestFigure[] = [];
  if (RUNS.has("ceiling")) {
    const ceiling = await startCeiling();
    try {
      const url = `http://127.0.0.1:${ceiling.port}/ttn/webhook/up`;
      const pids = { ceiling: ceiling.child.pid! };
      out.push(
        await withCpu(pids, () =>
          closedLoop("ceiling (HTTP + JSON parse, 204)", url, knownDevices(0)),
        ),
      );
      for (const rate of RATES) {
        out.push(
          await withCpu(pids, () =>
            fixedLoad("ceiling (HTTP + JSON parse, 204)", url, rate, knownDevices(0)),
          ),
        );
      }
    } finally {
      await stopBroker(ceiling.child);
    }
  }
  let first = 1_000_000;
  const advance = (n: number): number => {
    const at = first;
    first += n;
    return at;
  };
  await withWebhook(ctx, {}, async (url, pid) => {
    await knowAndMapDevices(ctx, url);
    if (!RUNS.has("known")) {
      return;
    }
    const pids = { "ttn-webhook": pid };
    out.push(
      await withCpu(pids, () =>
        closedLoop("ttn-webhook alone, known devices", url, knownDevices(advance(REQUESTS))),
      ),
    );
    for (const rate of RATES) {
      const bodies = knownDevices(advance(rate * OPEN_SECONDS));
      out.push(
        await withCpu(pids, () => fixedLoad("ttn-webhook alone, known devices", url, rate, bodies)),
      );
    }
  });
  if (RUNS.has("new")) {
    await withWebhook(ctx, {}, async (url, pid) => {
      const bodies = newDevices(advance(REQUESTS));
      out.push(
        await withCpu({ "ttn-webhook": pid }, () =>
          closedLoop("ttn-webhook alone, every uplink a new device", url, bodies),
        ),
      );
    });
  }
  if (RUNS.has("path")) {
    out.push(await wholePath(ctx, advance(REQUESTS), undefined));
    out.push(await wholePath(ctx, advance(RATES[0]! * OPEN_SECONDS), RATES[0]!));
  }
  return out;
}

/** The table, with each rate as a ratio of the ceiling's at the same offered load. */
export function printIngest(figures: readonly IngestFigure[]): void {
  const ceilingAt = new Map(
    figures.filter((f) => f.name.startsWith("ceiling")).map((f) => [f.offered, f.perSecond]),
  );
  console.log(
    "\n| ingest run | offered req/s | requests | seconds | req/s | / ceiling | p50 ms | p95 ms (closed loop: p97.5) | p99 ms | max ms | failures |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const f of figures) {
    const ceiling = ceilingAt.get(f.offered);
    const ratio = ceiling === undefined ? "" : (f.perSecond / ceiling).toFixed(2);
    console.log(
      `| ${f.name} | ${f.offered} | ${f.requests} | ${f.seconds.toFixed(1)} | ${Math.round(f.perSecond)} | ${ratio} | ${f.p50Ms.toFixed(1)} | ${f.p95Ms.toFixed(1)} | ${f.p99Ms.toFixed(1)} | ${f.maxMs.toFixed(1)} | ${f.failures} |`,
    );
  }
  printCpu(figures);
}

/**
 * Where the CPU went, per request: when the machine is near fully busy, the rate is bound by CPU
 * and the largest consumers are what to make cheaper; when it is not, by waiting.
 */
function printCpu(figures: readonly IngestFigure[]): void {
  const parties = [...new Set(figures.flatMap((f) => Object.keys(f.cpu?.ms ?? {})))];
  if (parties.length === 0) {
    return;
  }
  console.log(
    `\nCPU per request, ms (machine busy: share of ${CORES} cores' time not idle during the run, every process counted)\n`,
  );
  console.log(`| ingest run | offered req/s | machine busy | ${parties.join(" | ")} |`);
  console.log(`|---|---|---|${parties.map(() => "---|").join("")}`);
  for (const f of figures) {
    if (f.cpu === undefined) {
      continue;
    }
    const cells = parties.map((p) => {
      const ms = f.cpu!.ms[p];
      return ms === undefined || Number.isNaN(ms) ? "" : (ms / f.requests).toFixed(3);
    });
    console.log(
      `| ${f.name} | ${f.offered} | ${(100 * f.cpu.busy).toFixed(0)} % | ${cells.join(" | ")} |`,
    );
  }
}
