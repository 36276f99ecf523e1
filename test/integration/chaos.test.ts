import { describe, expect, it } from "vitest";

import { formatReport } from "../../bench/chaos/report.js";
import { runChaos } from "../../bench/chaos/run.js";

/**
 * The short chaos run (`npm run chaos` is the long one): the real system as separate processes on
 * a PostgreSQL, a RabbitMQ and a Mosquitto of its own, every fault once over a minute and a half
 * of mixed load, then every accepted input reconciled by correlation id at every destination.
 */
describe("chaos run (short)", () => {
  it("loses and duplicates nothing accepted across every fault", async () => {
    const lines: string[] = [];
    const report = await runChaos({
      uplinks: 1600,
      mqttMessages: 600,
      axisRecords: 240,
      ttnDevices: 40,
      ydocDevices: 8,
      axisStations: 4,
      // 15 faults, each with fresh load after it (a loaded machine stretches the restarts).
      loadMs: 90_000,
      holdMs: 3_000,
      drainMs: 120_000,
      log: (line) => lines.push(line),
    });
    const text = formatReport(report);
    // The figures of this run, for the log of `./run.sh check`.
    process.stdout.write(`${text}\n`);
    // Every fault ran, and each one was followed by fresh inputs getting through.
    expect(report.faults.map((f) => f.name)).toContain("RabbitMQ restarted");
    expect(report.faults.map((f) => f.name)).toContain("PostgreSQL restarted");
    expect(report.faults.map((f) => f.name)).toContain("MQTT broker restarted");
    expect(report.faults.map((f) => f.name)).toContain("kill -9 axistech");
    expect(report.faults.map((f) => f.name)).toContain("kill -9 ubidots-a");
    expect(report.faults).toHaveLength(15);
    // The poller read every record the vendor served, and each was owed everywhere.
    expect(report.polled).toEqual({ saved: 240, served: 240 });
    expect(report.accepted).toBeGreaterThan(2000);
    expect(report.failures, `${text}\n${lines.join("\n")}`).toEqual([]);
    expect(report.ok).toBe(true);
    // The webhook keeps accepting while RabbitMQ restarts or drops its connections (the ingest
    // outbox): a broker outage costs latency, not refusals.
    expect({
      restarted: report.refusalsByFault["RabbitMQ restarted"] ?? 0,
      closed: report.refusalsByFault["RabbitMQ connections closed"] ?? 0,
    }).toEqual({ restarted: 0, closed: 0 });
    for (const d of report.destinations) {
      expect({ name: d.name, lost: d.lost, duplicated: d.duplicated }).toEqual({
        name: d.name,
        lost: [],
        duplicated: [],
      });
    }
  }, 540_000);
});
