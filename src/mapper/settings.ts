import { z } from "zod";

import { parseSection, type Config } from "../core/config.js";

/** The mapper's own settings, read from `config.env` (see .env.example, "Components"). */
export interface MapperSettings {
  /**
   * Messages stamped further than this behind now are held (`past_timestamp`) instead of
   * forwarded, in seconds: a device whose clock was reset stamps 1970 or 2000. Undefined (0 in
   * the environment) turns the rule off. Default 315 360 000 (ten 365-day years).
   */
  readonly pastToleranceSeconds: number | undefined;
  /**
   * How old the held-message count (`broker_mapper_held_messages`) may be when Prometheus scrapes
   * it, in seconds: a scrape after that counts again (one query over the held rows' partial
   * index). Default 60; 0 counts at every scrape.
   */
  readonly heldCountSeconds: number;
}

const schema = z.object({
  PAST_TOLERANCE_SECONDS: z.coerce.number().int().min(0).default(315_360_000),
  MAPPER_HELD_COUNT_SECONDS: z.coerce.number().min(0).default(60),
});

/** Validates the mapper's variables; throws ConfigError naming each bad one. */
export function mapperSettings(config: Pick<Config, "env">): MapperSettings {
  const env = parseSection(config, schema, "mapper");
  return Object.freeze({
    pastToleranceSeconds: env.PAST_TOLERANCE_SECONDS === 0 ? undefined : env.PAST_TOLERANCE_SECONDS,
    heldCountSeconds: env.MAPPER_HELD_COUNT_SECONDS,
  });
}
