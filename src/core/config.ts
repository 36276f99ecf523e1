import { z } from "zod";

import { ConfigError, Environment } from "./environment.js";

export { ConfigError, Environment };

/**
 * Configuration comes from the environment only (IoTa's variable names where IoTa has one), is
 * validated once at start-up, and is frozen. `.env.example` lists every variable.
 */

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const list = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

/** True for an IANA zone name both Node and PostgreSQL know (letters, digits, `/_+-`). */
function isTimeZone(name: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_/+-]*$/.test(name)) {
    return false;
  }
  if (name === "UTC") {
    // The default: known everywhere, and loading Intl's zone data costs every CLI call ~15 ms.
    return true;
  }
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

const envSchema = z.object({
  BROKER_ENV: z.enum(["development", "production"]).default("development"),

  PGHOST: z.string().default("localhost"),
  PGPORT: port.default(5432),
  PGUSER: z.string().default("postgres"),
  PGPASSWORD: z.string().default(""),
  PGDATABASE: z.string().default("broker"),
  PG_POOL_SIZE: positiveInt.default(10),
  PG_PREPARED_STATEMENTS: z
    .enum(["true", "false"], { message: "must be true or false" })
    .default("true")
    .transform((v) => v === "true"),
  DISPLAY_TZ: z
    .string()
    .default("UTC")
    .refine(isTimeZone, "must be an IANA time zone name such as UTC or Australia/Sydney"),

  RABBITMQ_HOST: z.string().default("localhost"),
  RABBITMQ_PORT: port.default(5672),
  RABBITMQ_DEFAULT_USER: z.string().default("guest"),
  RABBITMQ_DEFAULT_PASS: z.string().default("guest"),
  RABBITMQ_VHOST: z.string().default("/"),
  // One URL, or a comma-separated list of a cluster's nodes (the connection fails over).
  AMQP_URL: z
    .string()
    .refine(
      (v) => v.split(",").every((u) => z.url().safeParse(u.trim()).success),
      "must be a URL, or a comma-separated list of URLs (one per RabbitMQ node)",
    )
    .optional(),
  PTS_EXCHANGE: z.string().min(1).default("physical_timeseries"),
  LTS_EXCHANGE: z.string().min(1).default("logical_timeseries"),
  EVENTS_EXCHANGE: z.string().min(1).default("broker_events"),
  DEAD_LETTER_EXCHANGE: z.string().min(1).default("broker_dead_letters"),
  QUEUE_PREFIX: z.string().default(""),
  QUEUE_TYPE: z.enum(["quorum", "classic"]).default("quorum"),
  DELIVERY_LIMIT: positiveInt.default(20),
  PREFETCH: z.coerce.number().int().min(1).max(2000).default(500),
  BATCH_SIZE: z.coerce.number().int().min(1).max(2000).default(250),
  CONSUMER_CONCURRENCY: z.coerce.number().int().min(1).max(32).default(4),
  CONSUMER_HOLD_MS: z.coerce.number().int().min(1).max(1_200_000).default(300_000),

  TTN_WEBHOOK_PORT: port.default(5688),
  TTN_WEBHOOK_MAX_BODY: positiveInt.default(1_048_576),
  // 1,000 is about 2 s of work at the ~500 req/s one `broker run all` does on 2 cores: far above
  // what waits below capacity (two batches of 200 in progress and the next filling; about 300 at
  // 300 req/s with the 1 s latencies of a slow minute), so nothing is shed then, and within The
  // Things Stack's request timeout, so an admitted request is answered before its sender gives
  // up on it. Each waiting request holds its socket, body and parsed item: 1,000 held cost the
  // webhook 10 MB of RSS, 5,000 cost 96 MB (measured, webhook process alone, PostgreSQL locked),
  // and without a bound a sender at twice capacity adds 500 a second.
  TTN_WEBHOOK_MAX_WAITING: positiveInt.default(1_000),
  METRICS_PORT: port.default(9464),
  FUTURE_TOLERANCE_SECONDS: positiveInt.default(3600),

  DATABOLT_SHARED_DIR: z.string().optional(),
  FRRED_DIR: z.string().optional(),
  FRRED_SOURCES: list.optional(),
  FRRED_THREADS: z.coerce.number().int().min(1).max(64).default(4),

  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  LOG_FORMAT: z.enum(["auto", "json", "pretty"]).default("auto"),
});

export interface Config {
  /**
   * `BROKER_ENV=production` (set by `./run.sh production` and the production Compose file): the
   * defaults that make a first try easy (an unauthenticated TTN webhook) become errors unless the
   * operator opts in explicitly. Not NODE_ENV, which also changes what `npm ci` installs.
   */
  readonly production: boolean;
  readonly pg: {
    readonly host: string;
    readonly port: number;
    readonly user: string;
    readonly password: string;
    readonly database: string;
    /** Maximum connections in this process's pool. Default 10. */
    readonly poolSize: number;
    /**
     * Whether the hot-path statements are prepared by name on each connection (src/db/prepared.ts).
     * Default true; false behind a pooler that cannot keep them (PgBouncer in transaction mode
     * before 1.21, or with max_prepared_statements = 0).
     */
    readonly preparedStatements?: boolean;
    /**
     * The sessions' time zone (DISPLAY_TZ, an IANA name): the offset every datetime read from
     * the database is written in. Default UTC. IoTa showed the database server's zone (its TZ).
     */
    readonly timeZone?: string;
  };
  readonly amqp: {
    /**
     * Full AMQP URL, credentials URL-escaped; or several, comma-separated (one per node of a
     * RabbitMQ cluster): the connection tries them in turn (src/bus/connection.ts).
     */
    readonly url: string;
    readonly ptsExchange: string;
    readonly ltsExchange: string;
    readonly eventsExchange: string;
    readonly deadLetterExchange: string;
    /** Prepended to every queue name this process declares (lets tests and side-by-side runs isolate). */
    readonly queuePrefix: string;
    readonly queueType: "quorum" | "classic";
    /** Deliveries after which RabbitMQ dead-letters a message that keeps failing. Default 20. */
    readonly deliveryLimit: number;
    /** Unacknowledged deliveries per consumer. Default 500. */
    readonly prefetch: number;
    /** Messages a consumer processes together (one transaction, one ack). Default 250. */
    readonly batchSize: number;
    /** Batches a consumer works on at once (their database and confirm waits overlap). Default 4. */
    readonly consumerConcurrency: number;
    /**
     * How long a consumer keeps messages in hand while PostgreSQL (or the broker) is away before
     * handing them back and waiting, in ms; under RabbitMQ's 30-min consumer timeout. Default 300 000.
     */
    readonly consumerHoldMs: number;
  };
  readonly ttnWebhook: {
    readonly port: number;
    /** Largest request body read, bytes (TTN_WEBHOOK_MAX_BODY). Default 1 048 576. */
    readonly maxBodyBytes: number;
    /**
     * Most requests the webhook holds at once, from their admission (before the body is read)
     * until they are answered and out of the batcher (TTN_WEBHOOK_MAX_WAITING), in requests;
     * beyond it a request is answered 503 at once, unread and unstored. Default 1000.
     */
    readonly maxWaiting: number;
  };
  readonly metricsPort: number;
  /** Messages further than this in the future are not forwarded (seconds). Default 3600. */
  readonly futureToleranceSeconds: number;
  readonly frred: {
    /** Where message directories are written: FRRED_DIR, else $DATABOLT_SHARED_DIR/raw_data. */
    readonly dir: string | undefined;
    /** Sources whose messages are written; undefined means all. */
    readonly sources: readonly string[] | undefined;
    /**
     * Threads writing message directories at the same time (FRRED_THREADS), each waiting on its
     * own fsyncs. Default 4.
     */
    readonly threads: number;
  };
  readonly logLevel: string;
  /**
   * `json` (pino's lines, for log collectors), `pretty` (readable lines), or `auto`: pretty when
   * standard output is a terminal, JSON otherwise. Default auto.
   */
  readonly logFormat: "auto" | "json" | "pretty";
  /**
   * The environment this config was read from. Components with settings of their own parse their
   * section from it with {@link parseSection} when they are built, at start-up, so every variable
   * is still validated before any work starts; it hands out sections and named variables only,
   * never the whole environment (see {@link Environment}).
   */
  readonly env: Environment;
}

function amqpUrl(env: z.infer<typeof envSchema>): string {
  if (env.AMQP_URL) {
    return env.AMQP_URL;
  }
  const user = encodeURIComponent(env.RABBITMQ_DEFAULT_USER);
  const pass = encodeURIComponent(env.RABBITMQ_DEFAULT_PASS);
  const vhost = encodeURIComponent(env.RABBITMQ_VHOST);
  return `amqp://${user}:${pass}@${env.RABBITMQ_HOST}:${env.RABBITMQ_PORT}/${vhost}`;
}

/** Reads and validates the environment; throws {@link ConfigError} naming each bad variable. */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(
    Object.entries(source).filter(([, v]) => v !== undefined && v !== ""),
  );
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  const env = parsed.data;
  const frredDir =
    env.FRRED_DIR ?? (env.DATABOLT_SHARED_DIR ? `${env.DATABOLT_SHARED_DIR}/raw_data` : undefined);
  return Object.freeze({
    production: env.BROKER_ENV === "production",
    pg: Object.freeze({
      host: env.PGHOST,
      port: env.PGPORT,
      user: env.PGUSER,
      password: env.PGPASSWORD,
      database: env.PGDATABASE,
      poolSize: env.PG_POOL_SIZE,
      preparedStatements: env.PG_PREPARED_STATEMENTS,
      timeZone: env.DISPLAY_TZ,
    }),
    amqp: Object.freeze({
      url: amqpUrl(env),
      ptsExchange: env.PTS_EXCHANGE,
      ltsExchange: env.LTS_EXCHANGE,
      eventsExchange: env.EVENTS_EXCHANGE,
      deadLetterExchange: env.DEAD_LETTER_EXCHANGE,
      queuePrefix: env.QUEUE_PREFIX,
      queueType: env.QUEUE_TYPE,
      deliveryLimit: env.DELIVERY_LIMIT,
      prefetch: env.PREFETCH,
      batchSize: env.BATCH_SIZE,
      consumerConcurrency: env.CONSUMER_CONCURRENCY,
      consumerHoldMs: env.CONSUMER_HOLD_MS,
    }),
    ttnWebhook: Object.freeze({
      port: env.TTN_WEBHOOK_PORT,
      maxBodyBytes: env.TTN_WEBHOOK_MAX_BODY,
      maxWaiting: env.TTN_WEBHOOK_MAX_WAITING,
    }),
    metricsPort: env.METRICS_PORT,
    futureToleranceSeconds: env.FUTURE_TOLERANCE_SECONDS,
    frred: Object.freeze({
      dir: frredDir,
      sources: env.FRRED_SOURCES ? Object.freeze([...env.FRRED_SOURCES]) : undefined,
      threads: env.FRRED_THREADS,
    }),
    logLevel: env.LOG_LEVEL,
    logFormat: env.LOG_FORMAT,
    env: new Environment(cleaned),
  });
}

/**
 * Validates one component's settings from `config.env` with its own zod schema; throws
 * {@link ConfigError} naming each bad variable.
 */
export function parseSection<T>(
  config: Pick<Config, "env">,
  schema: z.ZodType<T>,
  what: string,
): T {
  return config.env.section(schema, what);
}
