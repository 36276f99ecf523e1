import { Counter, Gauge } from "prom-client";

import type { Metrics } from "../core/metrics.js";
import type { Logger } from "../core/logger.js";
import { HOLD_REASONS } from "./route.js";

/** The mapper's held-message metrics (architecture.md § Hold and release). */
export interface HeldMetrics {
  /** Messages the mapper held, by reason, as it decided (a redelivery counts again). */
  readonly held: Counter<"reason">;
}

export interface HeldCountOptions {
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Held messages now, per reason. */
  count(): Promise<Record<string, number>>;
  /** How old the last count may be at a scrape before it is taken again (ms). */
  readonly maxAgeMs: number;
  /** Longest a scrape waits for the count; past it the previous figures stay (ms). */
  readonly timeoutMs?: number;
}

/**
 * `broker_mapper_held_total{reason}` (a counter of held decisions) and
 * `broker_mapper_held_messages{reason}` (the messages held now, i.e. stored with no logical
 * device: counted by one query when a scrape finds the last count older than `maxAgeMs`). Every
 * mapper copy reports the same count: read it with `max`, not `sum`.
 */
export function heldMetrics(o: HeldCountOptions): HeldMetrics {
  const registers = [o.metrics.registry];
  // A second mapper in the same process reports through the first one's metrics.
  const existing = o.metrics.registry.getSingleMetric("broker_mapper_held_total");
  if (existing) {
    return { held: existing as Counter<"reason"> };
  }
  const held = new Counter({
    name: "broker_mapper_held_total",
    help: "Messages the mapper held instead of forwarding, by reason (a redelivery counts again)",
    labelNames: ["reason"],
    registers,
  });
  for (const reason of HOLD_REASONS) {
    held.inc({ reason }, 0);
  }
  let countedAt = -Infinity;
  const timeoutMs = o.timeoutMs ?? 2_000;
  new Gauge({
    name: "broker_mapper_held_messages",
    help: "Messages stored with no logical device (held), by reason, as of the last count",
    labelNames: ["reason"],
    registers,
    async collect() {
      if (Date.now() - countedAt < o.maxAgeMs) {
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      try {
        const counts = await Promise.race([
          o.count(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no count within ${timeoutMs} ms`)),
              timeoutMs,
            );
          }),
        ]);
        this.reset();
        for (const reason of new Set([...HOLD_REASONS, ...Object.keys(counts)])) {
          this.set({ reason }, counts[reason] ?? 0);
        }
        countedAt = Date.now();
      } catch (err) {
        // The database is away or slow: the scrape shows the last figures it had.
        o.logger.warn({ err }, "could not count held messages for the metrics");
      } finally {
        clearTimeout(timer);
      }
    },
  });
  return { held };
}
