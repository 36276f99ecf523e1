import { pino } from "pino";
import { describe, expect, it } from "vitest";

import { Metrics } from "../../src/core/metrics.js";
import { heldMetrics } from "../../src/mapper/held-metrics.js";

/** The held-message gauge's own logic: when it counts again and what it keeps when it cannot. */
async function gauge(metrics: Metrics): Promise<Record<string, number>> {
  const values = (await metrics.registry.getSingleMetric("broker_mapper_held_messages")!.get())
    .values;
  return Object.fromEntries(values.map((v) => [String(v.labels.reason), v.value]));
}

describe("held-message metrics", () => {
  it("counts at a scrape, again only once the count is older than its limit", async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    let calls = 0;
    let figures: Record<string, number> = { no_mapping: 3, unrecorded: 1 };
    heldMetrics({
      metrics,
      logger: pino({ level: "silent" }),
      count: () => {
        calls++;
        return Promise.resolve(figures);
      },
      maxAgeMs: 60_000,
    });
    expect(await gauge(metrics)).toEqual({
      no_mapping: 3,
      paused: 0,
      future_timestamp: 0,
      past_timestamp: 0,
      unrecorded: 1,
    });
    figures = { no_mapping: 5 };
    await gauge(metrics);
    expect(calls).toBe(1);
  });

  it("keeps the last count when counting fails, and counts every scrape at 0", async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    let fail = false;
    heldMetrics({
      metrics,
      logger: pino({ level: "silent" }),
      count: () => (fail ? Promise.reject(new Error("down")) : Promise.resolve({ paused: 2 })),
      maxAgeMs: 0,
    });
    expect((await gauge(metrics)).paused).toBe(2);
    fail = true;
    expect((await gauge(metrics)).paused).toBe(2);
  });

  it("counts hold decisions by reason, and a second mapper in the process shares them", async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const options = {
      metrics,
      logger: pino({ level: "silent" }),
      count: () => Promise.resolve({}),
      maxAgeMs: 0,
    };
    heldMetrics(options).held.inc({ reason: "paused" });
    heldMetrics(options).held.inc({ reason: "paused" });
    const values = (await metrics.registry.getSingleMetric("broker_mapper_held_total")!.get())
      .values;
    expect(values.find((v) => v.labels.reason === "paused")?.value).toBe(2);
  });
});
