import { z } from "zod";

import type { HealthReport } from "../health.js";
import { ok, route, type Route } from "../route.js";
import { json } from "../schemas/common.js";

/** What the health route needs: one report of every process, queue and writer. */
export interface HealthSource {
  check(): Promise<HealthReport>;
}

const counters = z.object({ in: z.number(), out: z.number(), dead_lettered: z.number() });

const healthOutput = z
  .object({
    checked_at: z.string().meta({ format: "date-time" }),
    targets: z.array(
      z.object({
        url: z.string(),
        reachable: z.boolean(),
        ready: z.boolean(),
        postgres: z.boolean().nullable(),
        rabbitmq: z.boolean().nullable(),
        components: z.record(z.string(), z.boolean()),
        totals: z.record(z.string(), counters),
        rates: z.record(z.string(), counters).nullable(),
        error: z.string().nullable(),
      }),
    ),
    queues: z
      .array(
        z.object({
          queue: z.string(),
          kind: z.enum(["consumer", "dead letters"]),
          messages: z.number().int().nullable(),
          change_per_second: z.number().nullable(),
        }),
      )
      .nullable(),
    rabbitmq_error: z.string().nullable(),
    writers: z.array(
      z.object({
        writer: z.string(),
        pending: z.number().int(),
        oldest_pending_age_seconds: z.number().int(),
        retrying: z.number().int(),
        last_error: z.string().nullable(),
        delivered_last_hour: z.number().int(),
      }),
    ),
  })
  .meta({ id: "Health" });

export function healthRoutes(source: HealthSource): Route[] {
  return [
    route({
      method: "get",
      path: "/health",
      summary: "Every process's readiness, queue depths and rates, writer lag (extension)",
      description:
        "Asks each process listed in WEB_HEALTH_TARGETS (default: this host's METRICS_PORT, " +
        "where `broker run all` reports every component) for /readyz and /metrics, counts the " +
        "messages of every known queue and dead-letter queue, and reads each writer's backlog " +
        "from delivery_queue. Rates are measured over at least ten seconds between calls.",
      tags: ["operations"],
      access: "read",
      responses: { "200": json("The report.", healthOutput) },
      handler: async () => ok(await source.check()),
    }),
  ];
}
