import { z } from "zod";

import { ConfigError, parseSection, type Config } from "../../core/config.js";

/** IoTa's cluster; au1 and nam1 users set TTN_API_URL. */
export const DEFAULT_TTN_API_URL = "https://eu1.cloud.thethings.network/api/v3";

const positiveInt = z.coerce.number().int().positive();
const flag = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
const list = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

const schema = z
  .object({
    TTN_API_TOKEN: z.string().optional(),
    TTN_API_URL: z.url().default(DEFAULT_TTN_API_URL),
    TTN_API_TIMEOUT_MS: positiveInt.default(5_000),
    TTN_API_RATE_PER_SECOND: z.coerce.number().positive().max(1000).default(5),
    TTN_API_RETRY_INITIAL_MS: positiveInt.default(1_000),
    TTN_API_RETRY_MAX_MS: positiveInt.default(300_000),
    TTN_DECODERS_DIR: z.string().optional(),
    TTN_DECODE_LOCALLY: list.optional(),
    TTN_DECODER_TIMEOUT_MS: positiveInt.default(100),
    TTN_DECODER_MEMORY_MB: z.coerce.number().int().min(8).max(2000).default(64),
    TTN_DECODER_WORKERS: z.coerce.number().int().min(1).max(64).default(2),
    TTN_ACCEPT_SIMULATED: flag.default(true),
    TTN_WEBHOOK_SECRET: z.string().optional(),
    TTN_WEBHOOK_SECRET_HEADER: z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, "must be an HTTP header name")
      .default("X-Webhook-Secret"),
    TTN_WEBHOOK_BASIC_USER: z.string().optional(),
    TTN_WEBHOOK_BASIC_PASSWORD: z.string().optional(),
    TTN_WEBHOOK_AUTH: z.enum(["required", "none"]).optional(),
  })
  .refine(
    (e) =>
      (e.TTN_WEBHOOK_BASIC_USER === undefined) === (e.TTN_WEBHOOK_BASIC_PASSWORD === undefined),
    {
      message:
        "TTN_WEBHOOK_BASIC_USER and TTN_WEBHOOK_BASIC_PASSWORD are set together or not at all",
      path: ["TTN_WEBHOOK_BASIC_PASSWORD"],
    },
  )
  .refine(
    (e) =>
      e.TTN_WEBHOOK_AUTH !== "none" ||
      (e.TTN_WEBHOOK_SECRET === undefined && e.TTN_WEBHOOK_BASIC_USER === undefined),
    {
      message: "is none, yet TTN_WEBHOOK_SECRET or TTN_WEBHOOK_BASIC_USER is set: keep one",
      path: ["TTN_WEBHOOK_AUTH"],
    },
  )
  .refine((e) => e.TTN_DECODE_LOCALLY === undefined || e.TTN_DECODERS_DIR !== undefined, {
    message: "local decoding needs TTN_DECODERS_DIR",
    path: ["TTN_DECODE_LOCALLY"],
  });

/** The TTN webhook component's own settings (see doc/sources-ttn.md). */
export interface TtnSettings {
  readonly api: {
    /** The Authorization header value; a bare token gets `Bearer `. Undefined: no fetching. */
    readonly authorization: string | undefined;
    /** Base URL up to and including `/api/v3`. Default IoTa's eu1 cluster. */
    readonly url: string;
    /** Per-request timeout, ms. Default 5 000. */
    readonly timeoutMs: number;
    /** Most requests started per second. Default 5. */
    readonly ratePerSecond: number;
    /** First retry delay after a failed fetch, ms. Default 1 000. */
    readonly retryInitialMs: number;
    /** Longest retry delay, ms (also caps an honoured Retry-After). Default 300 000. */
    readonly retryMaxMs: number;
  };
  readonly decoders: {
    /** Directory holding `uplink/<name>.js`. Undefined: no local decoding. */
    readonly dir: string | undefined;
    /** Application ids always decoded locally; `all` means every application. Default none. */
    readonly locally: readonly string[] | "all";
    /** CPU time one decodeUplink call may take, ms. Default 100. */
    readonly timeoutMs: number;
    /**
     * Memory one decoder may allocate beyond its interpreter's fixed 16 MB, MB (the cap of its
     * WebAssembly memory; QuickJS's build allows 2 GiB in all). Default 64.
     */
    readonly memoryMb: number;
    /** Decoder worker threads. Default 2. */
    readonly workers: number;
  };
  /** Whether simulated uplinks are published (they are always stored raw). Default true. */
  readonly acceptSimulated: boolean;
  readonly auth: {
    /** Shared secret expected in {@link TtnSettings.auth.secretHeader}. Undefined: not checked. */
    readonly secret: string | undefined;
    /** Header carrying the secret. Default `X-Webhook-Secret`. */
    readonly secretHeader: string;
    /** Basic credentials (TTS "Request authentication"). Undefined: not checked. */
    readonly basic: { readonly user: string; readonly password: string } | undefined;
  };
  /**
   * Why the webhook runs without credentials, when it does: `default` (none configured outside
   * production: IoTa's behaviour, for a first try) or `chosen` (TTN_WEBHOOK_AUTH=none, the only
   * way to run it open in production). Undefined when credentials are configured.
   */
  readonly openWebhook: "default" | "chosen" | undefined;
}

/** `Bearer NNSXS…` stays as it is (IoTa's form); a bare `NNSXS…` gets the scheme. */
export function authorizationHeader(token: string): string {
  const trimmed = token.trim();
  return /^(bearer|basic)\s/i.test(trimmed) ? trimmed : `Bearer ${trimmed}`;
}

/**
 * Reads the TTN_* variables from the process configuration; ConfigError when one is bad, and in
 * production (or with TTN_WEBHOOK_AUTH=required) when the webhook would accept anyone.
 */
export function loadTtnSettings(config: Pick<Config, "env" | "production">): TtnSettings {
  const env = parseSection(config, schema, "TTN");
  const credentials =
    env.TTN_WEBHOOK_SECRET !== undefined || env.TTN_WEBHOOK_BASIC_USER !== undefined;
  const required = env.TTN_WEBHOOK_AUTH === "required" || config.production;
  if (!credentials && required && env.TTN_WEBHOOK_AUTH !== "none") {
    const why = config.production ? "BROKER_ENV=production" : "TTN_WEBHOOK_AUTH=required";
    throw new ConfigError(
      `invalid TTN configuration: TTN_WEBHOOK_SECRET: the webhook needs credentials (${why}): set TTN_WEBHOOK_SECRET, or TTN_WEBHOOK_BASIC_USER and TTN_WEBHOOK_BASIC_PASSWORD, and the same in The Things Stack's webhook; or set TTN_WEBHOOK_AUTH=none to let anyone who reaches it post uplinks`,
    );
  }
  const locally = env.TTN_DECODE_LOCALLY ?? [];
  return {
    api: {
      authorization:
        env.TTN_API_TOKEN === undefined ? undefined : authorizationHeader(env.TTN_API_TOKEN),
      url: env.TTN_API_URL.replace(/\/+$/, ""),
      timeoutMs: env.TTN_API_TIMEOUT_MS,
      ratePerSecond: env.TTN_API_RATE_PER_SECOND,
      retryInitialMs: env.TTN_API_RETRY_INITIAL_MS,
      retryMaxMs: env.TTN_API_RETRY_MAX_MS,
    },
    decoders: {
      dir: env.TTN_DECODERS_DIR,
      locally: locally.some((a) => a.toLowerCase() === "all") ? "all" : locally,
      timeoutMs: env.TTN_DECODER_TIMEOUT_MS,
      memoryMb: env.TTN_DECODER_MEMORY_MB,
      workers: env.TTN_DECODER_WORKERS,
    },
    acceptSimulated: env.TTN_ACCEPT_SIMULATED,
    auth: {
      secret: env.TTN_WEBHOOK_SECRET,
      secretHeader: env.TTN_WEBHOOK_SECRET_HEADER,
      basic:
        env.TTN_WEBHOOK_BASIC_USER !== undefined && env.TTN_WEBHOOK_BASIC_PASSWORD !== undefined
          ? { user: env.TTN_WEBHOOK_BASIC_USER, password: env.TTN_WEBHOOK_BASIC_PASSWORD }
          : undefined,
    },
    openWebhook: credentials ? undefined : env.TTN_WEBHOOK_AUTH === "none" ? "chosen" : "default",
  };
}
