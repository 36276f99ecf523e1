import type { ChaosReport } from "./run.js";

const seconds = (ms: number | undefined): string =>
  ms === undefined ? "—" : (ms / 1000).toFixed(1);

/** The chaos run's result as Markdown tables (doc/reliability.md takes them as they are). */
export function formatReport(r: ChaosReport): string {
  const lines = [
    `${r.ok ? "PASS" : "FAIL"}: ${r.accepted} inputs accepted, ${r.givenUp} given up by the webhook sender; load ${seconds(r.loadMs)} s, drain ${seconds(r.drainMs)} s`,
    "",
    "| destination | lost | duplicated | unexpected | devices out of order | inversions |",
    "|---|---|---|---|---|---|",
    ...r.destinations.map(
      (d) =>
        `| ${d.name} | ${d.lost.length} | ${d.duplicated.length} | ${d.unexpected.length} | ${d.devicesOutOfOrder} | ${d.inversions} |`,
    ),
    "",
    "| fault | lasted s | recovery s | webhook refusals |",
    "|---|---|---|---|",
    ...r.faults.map((f) => {
      const recovery = r.recovery.find((x) => x.name === f.name)?.recoveryMs;
      return `| ${f.name} | ${seconds(f.endedAt - f.startedAt)} | ${seconds(recovery)} | ${r.refusalsByFault[f.name] ?? 0} |`;
    }),
    `| (outside any fault) | | | ${r.refusalsByFault["no fault"] ?? 0} |`,
    "",
    `Peak queue depths: ${Object.entries(r.peakQueueDepths)
      .map(([q, n]) => `${q} ${n}`)
      .join(
        ", ",
      )}. Logical exchange copies under a message id already seen (bus redeliveries): ${r.tapRedeliveries}. InfluxDB lines rewritten verbatim (retries): ${r.influxRewrites}. Ubidots dots rewritten verbatim (retries): ${r.ubidotsRewrites}. AxisTech records saved as read by the poller: ${r.polled.saved} of ${r.polled.served} served.`,
  ];
  if (r.failures.length > 0) {
    lines.push("", "Failures:", ...r.failures.map((f) => `- ${f}`), `Logs: ${r.workDir}/logs`);
  }
  return lines.join("\n");
}
