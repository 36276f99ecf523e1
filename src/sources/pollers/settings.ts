import { z } from "zod";

import { ConfigError, parseSection, type Config } from "../../core/config.js";

/** Fractional seconds allowed, so tests can poll every few hundred milliseconds. */
const seconds = z.coerce.number().positive();

/** Settings every poller shares (all optional; `.env.example` lists them under "Pollers"). */
const sharedSchema = z.object({
  POLLER_HTTP_TIMEOUT_SECONDS: seconds.default(30),
  POLLER_HTTP_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(4),
  POLLER_RETRY_SECONDS: seconds.default(5),
  POLLER_RETRY_MAX_SECONDS: seconds.default(300),
  POLLER_MAX_RESPONSE_BYTES: z.coerce.number().int().positive().default(33_554_432),
});

export interface PollerSettings {
  /** Time between the starts of two polls, in ms (the vendor's `*_POLL_SECONDS`). */
  readonly intervalMs: number;
  /** Vendor API base URL without a trailing slash (the vendor's `*_API_URL`). */
  readonly baseUrl: string;
  /** Longest time one HTTP request (headers and body) may take, in ms. Default 30 000. */
  readonly timeoutMs: number;
  /** Tries per request when the vendor fails transiently (network, timeout, 5xx, 429). Default 4. */
  readonly attempts: number;
  /**
   * First retry delay in ms, after a failed request or an incomplete poll; it doubles per retry
   * (with jitter) up to `retryMaxMs`, and an incomplete poll never waits longer than a normal
   * interval. Default 5 000.
   */
  readonly retryInitialMs: number;
  /** Longest retry delay, and longest Retry-After honoured inside one poll, in ms. Default 300 000. */
  readonly retryMaxMs: number;
  /** Larger response bodies are cut here, kept raw and dead-lettered. Default 32 MiB. */
  readonly maxResponseBytes: number;
}

/**
 * Reads the shared poller settings plus one vendor's interval and base URL. `prefix` is the
 * vendor's variable prefix (`GREENBRAIN`, `EAGLEIO`, `AXISTECH`).
 */
export function pollerSettings(
  config: Pick<Config, "env">,
  prefix: string,
  defaults: { pollSeconds: number; apiUrl: string },
): PollerSettings {
  const shared = parseSection(config, sharedSchema, "poller");
  const poll = envValue(config, `${prefix}_POLL_SECONDS`, seconds.default(defaults.pollSeconds));
  const url = envValue(config, `${prefix}_API_URL`, z.url().default(defaults.apiUrl));
  return {
    intervalMs: poll * 1000,
    baseUrl: url.replace(/\/+$/, ""),
    timeoutMs: shared.POLLER_HTTP_TIMEOUT_SECONDS * 1000,
    attempts: shared.POLLER_HTTP_ATTEMPTS,
    retryInitialMs: shared.POLLER_RETRY_SECONDS * 1000,
    retryMaxMs: shared.POLLER_RETRY_MAX_SECONDS * 1000,
    maxResponseBytes: shared.POLLER_MAX_RESPONSE_BYTES,
  };
}

/** One variable validated by `schema`; a bad value is a ConfigError naming the variable. */
export function envValue<T>(config: Pick<Config, "env">, name: string, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(config.env.value(name));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => i.message).join("; ");
    throw new ConfigError(`invalid configuration: ${name}: ${problems}`);
  }
  return parsed.data;
}

/** A required secret: refuses to start with a message naming the variable (IoTa exited silently). */
export function requiredSecret(
  config: Pick<Config, "env">,
  name: string,
  component: string,
  meaning: string,
): string {
  const value = config.env.value(name);
  if (value === undefined || value.trim() === "") {
    throw new ConfigError(`the ${component} component needs ${name} (${meaning}); it is not set`);
  }
  return value.trim();
}
