import { z } from "zod";

import { parseSection, type Config } from "../core/config.js";
import { parsePublicUrl } from "./location.js";
import { trustProxySetting } from "../runtime/http.js";

/** The REST API's own settings, read from `config.env` (see .env.example, "API"). */
export interface ApiSettings {
  /** HTTP port of the API (IoTa's). Default 5687; 0 picks a free port. */
  readonly port: number;
  /** Largest request body accepted, in bytes. Default 1 048 576 (1 MiB). */
  readonly maxBodyBytes: number;
  /** Lifetime of tokens issued from now on, in seconds; undefined (the default) = never expire. */
  readonly tokenTtlSeconds: number | undefined;
  /** Failed logins per user name and client address within the window before 429. Default 10. */
  readonly loginMaxFailures: number;
  /**
   * Failed logins per user name from all addresses within the window before 429, except from an
   * address the user logged in from within `loginTrustedSeconds`. Default 100.
   */
  readonly loginMaxFailuresPerUser: number;
  /** The window failed logins are counted over, in seconds. Default 900 (15 minutes). */
  readonly loginWindowSeconds: number;
  /** First lock-out after too many failures, in seconds; each next one doubles. Default 60. */
  readonly loginLockoutSeconds: number;
  /** Longest lock-out, in seconds. Default 86400 (one day). */
  readonly loginMaxLockoutSeconds: number;
  /**
   * How long a successful login exempts its address from the per-user ceiling, in seconds.
   * Default 2592000 (30 days).
   */
  readonly loginTrustedSeconds: number;
  /**
   * Express's `trust proxy`: which peers may set X-Forwarded-For/-Proto (client address for
   * login limits, scheme of Location headers). Default `loopback` (a reverse proxy on this host,
   * like uvicorn's --proxy-headers); a number trusts that many hops; `false` trusts none.
   */
  readonly trustProxy: string | number | boolean;
  /**
   * The API's public URL (scheme, host, optional path prefix), which `Location` headers start
   * with instead of the request's scheme and Host. Default unset.
   */
  readonly publicUrl: string | undefined;
  /**
   * Host names (lower case, no port) accepted from the Host header for `Location`; empty (the
   * default) accepts any well-formed host. Ignored when `publicUrl` is set.
   */
  readonly hosts: readonly string[];
  /**
   * /messages responses streamed at once; more wait for a turn. Each holds a PostgreSQL
   * connection while its client reads, so the default leaves half of the pool for everything else:
   * max(1, PG_POOL_SIZE / 2).
   */
  readonly maxStreams: number;
}

const positiveInt = z.coerce.number().int().positive();

const schema = z.object({
  API_PORT: z.coerce.number().int().min(0).max(65535).default(5687),
  API_MAX_BODY: positiveInt.default(1_048_576),
  TOKEN_TTL: positiveInt.optional(),
  LOGIN_MAX_FAILURES: positiveInt.default(10),
  LOGIN_MAX_FAILURES_PER_USER: positiveInt.default(100),
  LOGIN_WINDOW_SECONDS: positiveInt.default(900),
  LOGIN_LOCKOUT_SECONDS: positiveInt.default(60),
  LOGIN_MAX_LOCKOUT_SECONDS: positiveInt.default(86_400),
  LOGIN_TRUSTED_SECONDS: positiveInt.default(2_592_000),
  API_TRUST_PROXY: z.string().default("loopback"),
  API_PUBLIC_URL: z
    .string()
    .transform((value, ctx) => {
      const parsed = parsePublicUrl(value.trim());
      if ("error" in parsed) {
        ctx.addIssue({ code: "custom", message: parsed.error });
        return z.NEVER;
      }
      return parsed.url;
    })
    .optional(),
  API_HOSTS: z.string().optional(),
  API_MAX_STREAMS: positiveInt.optional(),
});

/** Validates the API's variables; throws ConfigError naming each bad one. */
export function apiSettings(config: Pick<Config, "env" | "pg">): ApiSettings {
  const env = parseSection(config, schema, "API");
  return Object.freeze({
    port: env.API_PORT,
    maxBodyBytes: env.API_MAX_BODY,
    tokenTtlSeconds: env.TOKEN_TTL,
    loginMaxFailures: env.LOGIN_MAX_FAILURES,
    loginMaxFailuresPerUser: env.LOGIN_MAX_FAILURES_PER_USER,
    loginWindowSeconds: env.LOGIN_WINDOW_SECONDS,
    loginLockoutSeconds: env.LOGIN_LOCKOUT_SECONDS,
    loginMaxLockoutSeconds: env.LOGIN_MAX_LOCKOUT_SECONDS,
    loginTrustedSeconds: env.LOGIN_TRUSTED_SECONDS,
    trustProxy: trustProxySetting(env.API_TRUST_PROXY),
    publicUrl: env.API_PUBLIC_URL,
    hosts: Object.freeze(
      (env.API_HOSTS ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h !== ""),
    ),
    maxStreams: env.API_MAX_STREAMS ?? Math.max(1, Math.floor(config.pg.poolSize / 2)),
  });
}
