import { createHash } from "node:crypto";

import { z } from "zod";

import { ConfigError, parseSection, type Config } from "../../core/config.js";

const schema = z.object({
  UBIDOTS_URL: z.url().default("https://industrial.api.ubidots.com.au"),
  UBIDOTS_API_TOKEN: z.string().min(1).optional(),
  UBIDOTS_RATE_LIMIT: z.coerce.number().positive().max(1000).default(4),
  UBIDOTS_TIMEOUT_MS: z.coerce.number().int().min(1).default(10_000),
  UBIDOTS_MAX_BODY_BYTES: z.coerce.number().int().min(200).default(10_000),
  UBIDOTS_BATCH_MESSAGES: z.coerce.number().int().min(1).max(5_000).default(200),
  UBIDOTS_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(4),
});

export interface UbidotsSettings {
  /** Scheme and host (and port) of the API, no path: the writer adds /api/v1.6/… and /api/v2.0/…. */
  readonly baseUrl: string;
  readonly token: string;
  /** Requests per second the token may make, shared by every copy of the writer. Default 4. */
  readonly requestsPerSecond: number;
  /** Longest wait for one answer, in ms. Default 10 000. */
  readonly timeoutMs: number;
  /** Every request body is smaller than this, in bytes. Default 10 000 (Ubidots' limit). */
  readonly maxBodyBytes: number;
  /** Most messages of one device handed over in one batch. Default 200. */
  readonly batchMessages: number;
  /** Devices worked on at once by one process. Default 4. */
  readonly concurrency: number;
  /** Name of the shared budget in `rate_limits`: one per token, without revealing it. */
  readonly budgetName: string;
}

export function ubidotsSettings(config: Pick<Config, "env">): UbidotsSettings {
  const s = parseSection(config, schema, "ubidots");
  if (s.UBIDOTS_API_TOKEN === undefined) {
    throw new ConfigError("the ubidots component needs UBIDOTS_API_TOKEN");
  }
  const url = new URL(s.UBIDOTS_URL);
  if ((url.pathname !== "/" && url.pathname !== "") || url.search !== "" || url.hash !== "") {
    throw new ConfigError(
      `UBIDOTS_URL is the API's scheme and host only (e.g. https://industrial.api.ubidots.com.au), not ${s.UBIDOTS_URL}`,
    );
  }
  const tokenId = createHash("sha256").update(s.UBIDOTS_API_TOKEN).digest("hex").slice(0, 16);
  return {
    baseUrl: url.origin,
    token: s.UBIDOTS_API_TOKEN,
    requestsPerSecond: s.UBIDOTS_RATE_LIMIT,
    timeoutMs: s.UBIDOTS_TIMEOUT_MS,
    maxBodyBytes: s.UBIDOTS_MAX_BODY_BYTES,
    batchMessages: s.UBIDOTS_BATCH_MESSAGES,
    concurrency: s.UBIDOTS_CONCURRENCY,
    budgetName: `ubidots:${tokenId}`,
  };
}
