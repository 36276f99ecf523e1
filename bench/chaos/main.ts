import { runChaos, type ChaosReport } from "./run.js";
import { formatReport } from "./report.js";

/**
 * `npm run chaos`: the long chaos run (CHAOS_MESSAGES inputs, default 100,000) with its result
 * table; exit status 1 when anything accepted was lost or duplicated. `CHAOS_MESSAGES=3000` is
 * about the size of the test's short run.
 */
const total = Number(process.env.CHAOS_MESSAGES ?? 100_000);
const loadSeconds = Number(process.env.CHAOS_LOAD_SECONDS ?? Math.max(60, total / 100));
const holdSeconds = Number(process.env.CHAOS_HOLD_SECONDS ?? Math.min(120, loadSeconds / 20));

// Ctrl-C or SIGTERM: stop the private servers and every process the run started, then exit.
const abort = new AbortController();
let stopped: Promise<void> = Promise.resolve();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`[chaos] ${signal}: stopping everything the run started\n`);
    abort.abort();
    void stopped.then(() => process.exit(130));
  });
}

let report: ChaosReport;
try {
  report = await runChaos({
    uplinks: Math.round(total * 0.65),
    mqttMessages: Math.round(total * 0.25),
    axisRecords: total - Math.round(total * 0.65) - Math.round(total * 0.25),
    ttnDevices: 50,
    ydocDevices: 10,
    axisStations: 5,
    loadMs: loadSeconds * 1000,
    holdMs: holdSeconds * 1000,
    drainMs: Number(process.env.CHAOS_DRAIN_SECONDS ?? 600) * 1000,
    keep: process.env.CHAOS_KEEP === "1",
    log: (line) => process.stderr.write(`[chaos] ${line}\n`),
    abort: { signal: abort.signal, stopped: (done) => (stopped = done) },
  });
} catch (err) {
  if (abort.signal.aborted) {
    // Interrupted: the signal handler exits once everything is stopped.
    await stopped;
    process.exit(130);
  }
  process.stderr.write(`chaos run failed to run: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
}
process.stdout.write(formatReport(report) + "\n");
process.exit(report.ok ? 0 : 1);
