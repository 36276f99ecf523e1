/**
 * What the soak (bench/soak.ts) measured, the table it prints and its verdict against issue 11:
 * `broker run all` under 300 MB resident at the peak rate, and flat memory, file descriptors and
 * queue depths over the soak. The verdict is a measurement: it never fails the bench.
 */
import { LatencyHistogram } from "./histogram.js";
import type { ProcessFigures } from "./process-figures.js";

/** Issue 11: `broker run all` stays under this resident size at the target rate, MB. */
export const RSS_TARGET_MB = 300;
/** Flat memory: RSS grows less than this over the soak's second half, MB per 10 minutes. */
const RSS_SLOPE_LIMIT_MB = 5;
/** Flat descriptors: the count at the end is within this of the count after the first minutes. */
const FD_DRIFT_LIMIT = 10;
/** Flat queues: every queue holds less than this many seconds of the offered traffic. */
const QUEUE_LIMIT_SECONDS = 2;
/** The fd reference point, s into the soak (or half a shorter soak). */
const FD_REFERENCE_SECONDS = 300;
/** Queues may still hold the start's backlog this long, s into the soak (or a quarter of a shorter soak). */
const QUEUE_SETTLE_SECONDS = 60;

/** The process and the bus at one moment. */
export interface Sample {
  /** Seconds since the phase started. */
  readonly at: number;
  readonly proc: ProcessFigures;
  /** Messages waiting in each watched queue or backlog, by name (queues without the bench's prefix). */
  readonly depths: ReadonlyMap<string, number>;
  /** FRRED message directories written so far, those the bench deleted included. */
  readonly frredFiles: number;
}

/** One open-loop window (one sample period of load). */
export interface LoadWindow {
  /** Seconds since the phase started at which the window's last request was due. */
  readonly end: number;
  readonly latencies: LatencyHistogram;
  readonly requests: number;
  /** Answers other than 204, and socket errors. */
  readonly failures: number;
  /** The failures by HTTP status or socket error code. */
  readonly failuresBy: Readonly<Record<string, number>>;
  /** Answers 503 `overloaded` (load shedding: intended above capacity, not failures). */
  readonly shed: number;
}

/** One phase at a fixed offered rate. */
export interface Phase {
  /** Offered requests/s. */
  readonly rate: number;
  /** Planned length (whole sample periods), s. */
  readonly seconds: number;
  /** One sample (and one open-loop window) every this many seconds. */
  readonly sampleSeconds: number;
  readonly samples: readonly Sample[];
  readonly windows: readonly LoadWindow[];
  /** From the first request's due time to the last answer, s. */
  readonly elapsed: number;
}

export interface SoakReport {
  /** Components the one `broker run all` process ran. */
  readonly components: readonly string[];
  /** RabbitMQ queues of the bench's prefix that existed (names without the prefix) and the PostgreSQL backlogs, sampled. */
  readonly queues: readonly string[];
  readonly peak: Phase;
  /** Seconds the queues took to empty after the peak; `drained` false when they had not within the limit. */
  readonly drainSeconds: number;
  readonly drained: boolean;
  /** The process after the peak phase and its drain (VmHWM: its highest RSS so far). */
  readonly afterPeak: ProcessFigures;
  readonly soak: Phase;
  /** The process at the end of the soak. */
  readonly atEnd: ProcessFigures;
}

const verdict = (ok: boolean): string => (ok ? "**PASS**" : "**FAIL**");
const minutes = (s: number): string => (s / 60).toFixed(s % 60 === 0 ? 0 : 2);
const ms = (v: number): string => (Number.isNaN(v) ? "–" : v.toFixed(1));

function deepest(samples: readonly Sample[]): { queue: string; depth: number; at: number } {
  let out = { queue: "–", depth: 0, at: 0 };
  for (const s of samples) {
    for (const [queue, depth] of s.depths) {
      if (depth > out.depth || out.queue === "–") {
        out = { queue, depth, at: s.at };
      }
    }
  }
  return out;
}

function merged(windows: readonly LoadWindow[]): {
  latencies: LatencyHistogram;
  requests: number;
  failures: number;
  shed: number;
  /** `503 × 12, ECONNRESET × 3`, or empty. */
  kinds: string;
} {
  const latencies = new LatencyHistogram();
  const by = new Map<string, number>();
  for (const w of windows) {
    latencies.merge(w.latencies);
    for (const [kind, n] of Object.entries(w.failuresBy)) {
      by.set(kind, (by.get(kind) ?? 0) + n);
    }
  }
  return {
    kinds: [...by].map(([kind, n]) => `${kind} × ${n}`).join(", "),
    latencies,
    requests: windows.reduce((n, w) => n + w.requests, 0),
    failures: windows.reduce((n, w) => n + w.failures, 0),
    shed: windows.reduce((n, w) => n + w.shed, 0),
  };
}

/** Least-squares slope of RSS over time, MB per 10 minutes. */
function rssSlope(samples: readonly Sample[]): number {
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.at, 0) / n;
  const my = samples.reduce((a, s) => a + s.proc.rssMb, 0) / n;
  const sxy = samples.reduce((a, s) => a + (s.at - mx) * (s.proc.rssMb - my), 0);
  const sxx = samples.reduce((a, s) => a + (s.at - mx) ** 2, 0);
  return sxx === 0 ? Number.NaN : (sxy / sxx) * 600;
}

/** One row per minute (per sample when the soak is under 5 minutes, so a smoke shows a shape). */
function printTable(soak: Phase): void {
  const rowSeconds = soak.seconds < 300 ? soak.sampleSeconds : 60;
  console.log(
    "\n| min | RSS MB | fds (sockets) | threads | deepest queue | depth | FRRED files | p50 ms | p99 ms | failures | shed |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  const rows = new Map<number, { samples: Sample[]; windows: LoadWindow[] }>();
  const row = (at: number): { samples: Sample[]; windows: LoadWindow[] } => {
    const key = Math.ceil(at / rowSeconds - 1e-9);
    let r = rows.get(key);
    if (r === undefined) {
      r = { samples: [], windows: [] };
      rows.set(key, r);
    }
    return r;
  };
  soak.samples.forEach((s) => row(s.at).samples.push(s));
  soak.windows.forEach((w) => row(w.end).windows.push(w));
  for (const [key, r] of [...rows].sort((a, b) => a[0] - b[0])) {
    const last = r.samples.at(-1);
    const deep = deepest(r.samples);
    const load = merged(r.windows);
    console.log(
      `| ${minutes(key * rowSeconds)} | ${last?.proc.rssMb.toFixed(1) ?? "–"} | ${last === undefined ? "–" : `${last.proc.fds} (${last.proc.sockets})`} | ${last?.proc.threads ?? "–"} | ${deep.queue} | ${deep.depth} | ${last?.frredFiles ?? "–"} | ${ms(load.latencies.percentile(50))} | ${ms(load.latencies.percentile(99))} | ${load.failures} | ${load.shed} |`,
    );
  }
}

export function printSoak(report: SoakReport): void {
  const { peak, soak } = report;
  console.log(`\nSoak and memory: one \`broker run all\` (${report.components.join(", ")})`);
  console.log(
    `Queues sampled (RabbitMQ, behind the bench's prefix; PostgreSQL backlogs): ${report.queues.join(", ")}`,
  );

  const peakLoad = merged(peak.windows);
  const peakSamples = peak.samples.map((s) => s.proc.rssMb);
  const peakDeep = deepest(peak.samples);
  console.log(
    `\nPeak: ${peak.rate} req/s offered for ${peak.seconds} s, ${peakLoad.requests} requests answered in ${peak.elapsed.toFixed(1)} s (${Math.round(peakLoad.requests / peak.elapsed)} req/s), p50 ${ms(peakLoad.latencies.percentile(50))} ms, p99 ${ms(peakLoad.latencies.percentile(99))} ms, failures ${peakLoad.failures}, shed ${peakLoad.shed} (503 overloaded, intended above capacity; latencies include them); deepest queue ${peakDeep.queue} ${peakDeep.depth}; the queues ${report.drained ? "emptied" : "had NOT emptied"} ${report.drainSeconds.toFixed(0)} s after the last answer.`,
  );
  console.log(
    `Soak: ${soak.rate} req/s offered for ${soak.seconds} s, sampled every ${soak.sampleSeconds} s.`,
  );
  printTable(soak);

  const checks: string[] = [];
  const maxSampled = Math.max(...peakSamples);
  checks.push(
    `Peak RSS at ${peak.rate} req/s offered: VmHWM ${report.afterPeak.hwmMb.toFixed(1)} MB after the peak and its drain (highest sampled VmRSS during the peak ${maxSampled.toFixed(1)} MB; VmHWM at the end of the soak ${report.atEnd.hwmMb.toFixed(1)} MB) against ${RSS_TARGET_MB} MB: ${verdict(report.afterPeak.hwmMb < RSS_TARGET_MB)}`,
  );

  const half = soak.samples.filter((s) => s.at >= soak.seconds / 2);
  const slope = rssSlope(half);
  checks.push(
    `RSS slope over the soak's second half (${minutes(half[0]?.at ?? 0)}–${minutes(half.at(-1)?.at ?? 0)} min, ${half.length} samples, least squares): ${slope >= 0 ? "+" : ""}${slope.toFixed(2)} MB per 10 min (flat: under ${RSS_SLOPE_LIMIT_MB}): ${verdict(slope < RSS_SLOPE_LIMIT_MB)}`,
  );

  // Sockets apart: the load generator's keep-alive connections come and go with latency, so the
  // "within 10" test is on the other descriptors (files, pipes, epoll, timers); sockets are
  // flat when the end holds no more than the busiest of the first minutes, plus the limit.
  const fdAt = Math.min(FD_REFERENCE_SECONDS, soak.seconds / 2);
  const others = soak.samples.map((s) => s.proc.fds - s.proc.sockets);
  const reference = soak.samples.find((s) => s.at >= fdAt) ?? soak.samples.at(-1);
  const early = soak.samples.filter((s) => s.at <= (reference?.at ?? 0));
  const otherRef =
    reference === undefined ? Number.NaN : reference.proc.fds - reference.proc.sockets;
  const otherLast = others.at(-1) ?? Number.NaN;
  const socketsEarlyMax = Math.max(...early.map((s) => s.proc.sockets));
  const socketsLast = soak.samples.at(-1)?.proc.sockets ?? Number.NaN;
  const at = minutes(reference?.at ?? 0);
  const shortNote = fdAt < FD_REFERENCE_SECONDS ? " (a soak under 10 min: its middle)" : "";
  checks.push(
    `fds other than sockets: first ${others[0] ?? Number.NaN}, at ${at} min ${otherRef}${shortNote}, last ${otherLast}, max ${Math.max(...others)} (flat: last within ${FD_DRIFT_LIMIT} of the count at ${at} min): ${verdict(Math.abs(otherLast - otherRef) <= FD_DRIFT_LIMIT)}`,
  );
  checks.push(
    `sockets: most up to ${at} min ${socketsEarlyMax}, last ${socketsLast}, max ${Math.max(...soak.samples.map((s) => s.proc.sockets))} (flat: last within ${FD_DRIFT_LIMIT} above the most up to ${at} min): ${verdict(socketsLast <= socketsEarlyMax + FD_DRIFT_LIMIT)}`,
  );

  const limit = soak.rate * QUEUE_LIMIT_SECONDS;
  const settle = Math.min(QUEUE_SETTLE_SECONDS, soak.seconds / 4);
  const deep = deepest(soak.samples);
  const over = soak.samples.filter(
    (s) => s.at > settle && [...s.depths.values()].some((d) => d >= limit),
  );
  const end = soak.samples.at(-1);
  const endDepth = end === undefined ? 0 : Math.max(0, ...end.depths.values());
  checks.push(
    `Queue depth: max ${deep.depth} (${deep.queue} at ${minutes(deep.at)} min), at the end ${endDepth}; under ${limit} (${QUEUE_LIMIT_SECONDS} s of traffic) at every sample after ${minutes(settle)} min${settle < QUEUE_SETTLE_SECONDS ? " (a soak under 4 min: its first quarter)" : ""}: ${verdict(over.length === 0)}${over.length > 0 ? ` (${over.length} samples over, the first at ${minutes(over[0]!.at)} min)` : ""}`,
  );

  const soakLoad = merged(soak.windows);
  checks.push(
    `Failures (not 204 nor shed, or socket errors): peak ${peakLoad.failures} of ${peakLoad.requests}${peakLoad.kinds === "" ? "" : ` (${peakLoad.kinds})`}, soak ${soakLoad.failures} of ${soakLoad.requests}${soakLoad.kinds === "" ? "" : ` (${soakLoad.kinds})`}: ${verdict(peakLoad.failures + soakLoad.failures === 0)}`,
  );
  // Shedding at the peak is the bound on waiting requests working; in the soak, below capacity,
  // it would mean the bound is too low for this machine.
  checks.push(
    `Shed (503 overloaded): peak ${peakLoad.shed} of ${peakLoad.requests}, soak ${soakLoad.shed} of ${soakLoad.requests} (none below capacity): ${verdict(soakLoad.shed === 0)}`,
  );
  console.log("\nVerdict (a measurement: the bench does not fail on it):\n");
  for (const c of checks) {
    console.log(`- ${c}`);
  }
}
