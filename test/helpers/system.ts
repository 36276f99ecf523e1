import { startSystem, type RunningSystem } from "../../src/app/root.js";
import { loadConfig, type Config } from "../../src/core/config.js";
import { createLogger, type Logger } from "../../src/core/logger.js";
import { Metrics } from "../../src/core/metrics.js";
import type { TestDatabase } from "./db.js";

/** Settings that point a broker at the test's own database and exchanges, on free ports. */
function isolatedSettings(db: TestDatabase, amqp: Config["amqp"]): Record<string, string> {
  return {
    PGHOST: db.pg.host,
    PGPORT: String(db.pg.port),
    PGUSER: db.pg.user,
    PGPASSWORD: db.pg.password,
    PGDATABASE: db.pg.database,
    AMQP_URL: amqp.url,
    PTS_EXCHANGE: amqp.ptsExchange,
    LTS_EXCHANGE: amqp.ltsExchange,
    EVENTS_EXCHANGE: amqp.eventsExchange,
    DEAD_LETTER_EXCHANGE: amqp.deadLetterExchange,
    QUEUE_PREFIX: amqp.queuePrefix,
    METRICS_PORT: "0",
    TTN_WEBHOOK_PORT: "0",
    API_PORT: "0",
    WEB_PORT: "0",
  };
}

/** A config for one test: its own database, its own exchanges/queues, ports picked by the OS. */
export function testConfig(
  db: TestDatabase,
  amqp: Config["amqp"],
  env: Record<string, string> = {},
): Config {
  return loadConfig({
    ...isolatedSettings(db, amqp),
    PG_POOL_SIZE: "5",
    LOG_LEVEL: "silent",
    ...env,
  });
}

export async function startTestSystem(
  names: string[],
  config: Config,
  options: { connectionName?: string; logger?: Logger } = {},
): Promise<RunningSystem> {
  const { logger, ...rest } = options;
  return startSystem(
    names,
    config,
    logger ?? createLogger({ level: process.env.TEST_LOG_LEVEL ?? config.logLevel }),
    {
      metrics: new Metrics({ defaultMetrics: false }),
      // Each step's production budget (5 s) is no test of correctness on a loaded machine: a
      // test failed when the webhook's stop took longer while the whole suite ran (twice, in
      // tests that started their system without this helper).
      stopStepTimeoutMs: 20_000,
      ...rest,
    },
  );
}

/** The environment of a separate `broker` process on the test's database and exchanges. */
export function brokerEnv(db: TestDatabase, amqp: Config["amqp"]): NodeJS.ProcessEnv {
  return { ...process.env, ...isolatedSettings(db, amqp) };
}
