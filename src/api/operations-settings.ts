import { z } from "zod";

import { parseSection, type Config } from "../core/config.js";

/** Settings of the API's operator endpoints (health, Wombat scripts); see .env.example. */
export interface OperationsSettings {
  /**
   * Ops base URLs (`http://host:METRICS_PORT`) of the processes the health page reports on.
   * Default this host's METRICS_PORT: `broker run all` serves every component's readiness there.
   */
  readonly healthTargets: readonly string[];
  /** Longest wait for one process's /readyz or /metrics, in milliseconds. Default 2 000. */
  readonly healthTimeoutMs: number;
  /** Topic root of Wombat configuration scripts (`<root>/<serial_no>`). Default `wombat`. */
  readonly wombatConfigTopic: string;
}

const targetList = z
  .string()
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  )
  .pipe(z.array(z.url({ protocol: /^https?$/ })).max(50));

const schema = z.object({
  WEB_HEALTH_TARGETS: targetList.optional(),
  WEB_HEALTH_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2_000),
  WOMBAT_CONFIG_TOPIC: z
    .string()
    .min(1)
    .refine((t) => !["+", "#", "\u0000"].some((c) => t.includes(c)), "a topic without wildcards")
    .default("wombat"),
});

/** Validates the operator endpoints' variables; throws ConfigError naming each bad one. */
export function operationsSettings(
  config: Pick<Config, "env" | "metricsPort">,
): OperationsSettings {
  const env = parseSection(config, schema, "API operations");
  return Object.freeze({
    healthTargets: Object.freeze(
      env.WEB_HEALTH_TARGETS && env.WEB_HEALTH_TARGETS.length > 0
        ? env.WEB_HEALTH_TARGETS
        : [`http://127.0.0.1:${config.metricsPort}`],
    ),
    healthTimeoutMs: env.WEB_HEALTH_TIMEOUT_MS,
    wombatConfigTopic: env.WOMBAT_CONFIG_TOPIC.replace(/\/+$/, ""),
  });
}
