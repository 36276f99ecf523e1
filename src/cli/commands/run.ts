import { relative } from "node:path";

import type { Command } from "commander";

import { COMPONENT_NAMES, resolveComponentNames } from "../../app/registry.js";
import type { RunningSystem } from "../../app/root.js";
import { sleep } from "../../core/backoff.js";
import { loadConfig, type Config } from "../../core/config.js";
import { createLogger, type Logger } from "../../core/logger.js";
import { createDatabase } from "../../db/database.js";
import { schemaStatus } from "../../db/migrate.js";
import { countAdmins } from "../../db/repositories/users.js";
import { UsageError } from "../context.js";
import { formatStartupSummary, startupSummary, type StartupFacts } from "../startup-summary.js";

/** Hard limit on a graceful stop (design §5.7: exit within 10 s). */
const STOP_LIMIT_MS = 9_000;

/**
 * Refuses to start on a schema older than this build. An unreachable database is not a reason
 * to refuse: components wait for it and report it on /readyz.
 */
async function checkSchema(config: ReturnType<typeof loadConfig>, logger: Logger): Promise<void> {
  const handle = createDatabase({ ...config.pg, poolSize: 1 }, logger);
  try {
    const { current, expected, pending } = await schemaStatus(handle.pool);
    if (pending.length > 0) {
      throw new UsageError(
        `database ${config.pg.database} is at schema version ${current} and lacks ${pending.join(", ")} (this build expects ${expected}): run "broker migrate" first`,
      );
    }
  } catch (err) {
    if (err instanceof UsageError) {
      throw err;
    }
    logger.warn({ err }, "cannot check the schema version now; starting anyway");
  } finally {
    await handle.close();
    if (!handle.pool.ended) {
      await handle.pool.end();
    }
  }
}

/** Longest wait for RabbitMQ and every component before the start-up summary is shown. */
const SETTLE_LIMIT_MS = 5_000;

/** Waits until RabbitMQ is connected and every component serves, or SETTLE_LIMIT_MS passed. */
async function settle(system: RunningSystem): Promise<void> {
  const until = Date.now() + SETTLE_LIMIT_MS;
  const ready = (): boolean =>
    system.deps.amqp.isConnected && system.components.every((c) => c.isReady?.() ?? true);
  while (!ready() && Date.now() < until) {
    await sleep(50);
  }
}

/** How a person runs the CLI from here: the built file, or `npm run broker --` from source. */
function brokerCommand(): string {
  const script = process.argv[1] ?? "dist/src/cli/main.js";
  return script.endsWith(".ts") ? "npm run broker --" : `node ${relative(process.cwd(), script)}`;
}

async function startupFacts(system: RunningSystem, config: Config): Promise<StartupFacts> {
  const portOf = (name: string): number | undefined =>
    system.components.find((c) => c.name === name)?.port?.();
  const webhookPort = portOf("ttn-webhook");
  const apiPort = portOf("api");
  const webhook =
    webhookPort === undefined
      ? undefined
      : await import("../../sources/ttn/settings.js").then(({ loadTtnSettings }) => {
          const { auth } = loadTtnSettings(config);
          return {
            port: webhookPort,
            secretHeader: auth.secret === undefined ? undefined : auth.secretHeader,
            basic: auth.basic !== undefined,
          };
        });
  const api =
    apiPort === undefined
      ? undefined
      : {
          port: apiPort,
          prefix: (await import("../../api/api.js")).API_PREFIX,
          admins: await countAdmins(system.deps.database.db).catch(() => undefined),
        };
  const frredDir = system.components.some((c) => c.name === "frred") ? config.frred.dir : undefined;
  const webPort = portOf("web");
  return {
    components: system.components.map((c) => c.name),
    opsPort: system.opsPort,
    production: config.production,
    rabbitmqConnected: system.deps.amqp.isConnected,
    ...(webhook && { webhook }),
    ...(api && { api }),
    ...(frredDir !== undefined && { frredDir }),
    ...(webPort !== undefined && { webPort }),
    brokerCommand: brokerCommand(),
  };
}

/**
 * Ends start-up with where to go next: a block of text for a person at a terminal, one log line
 * (the same facts as fields) for a log collector.
 */
async function showStartupSummary(
  system: RunningSystem,
  config: Config,
  logger: Logger,
  pretty: boolean,
): Promise<void> {
  await settle(system);
  const facts = await startupFacts(system, config);
  if (pretty) {
    process.stdout.write(`${formatStartupSummary(facts)}\n`);
  } else {
    const summary = Object.fromEntries(startupSummary(facts).map((i) => [i.label, i.lines]));
    logger.info({ summary }, "start-up summary");
  }
}

/** `broker run <component...>`: the long-running process. Only here are signals handled. */
export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("run one or more components in this process until SIGTERM/SIGINT")
    .argument("<components...>", `${COMPONENT_NAMES.join(", ")}, or all`)
    .action(async (names: string[]) => {
      let components: string[];
      try {
        components = resolveComponentNames(names);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const config = loadConfig();
      // A person at a terminal reads lines; a collector (stdout not a TTY) gets JSON.
      const pretty =
        config.logFormat === "pretty" || (config.logFormat === "auto" && process.stdout.isTTY);
      const logger = createLogger({ level: config.logLevel, pretty });
      await checkSchema(config, logger);
      // Loaded here so the other commands never depend on every component's code.
      const { startSystem } = await import("../../app/root.js");
      const system = await startSystem(components, config, logger);
      logger.info({ components, opsPort: system.opsPort }, "broker running");
      // Not awaited: the signal handlers below must be in place while it waits for RabbitMQ.
      void showStartupSummary(system, config, logger, pretty).catch((err: unknown) =>
        logger.warn({ err }, "cannot show the start-up summary"),
      );

      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (why: string, code: number): void => {
          if (stopping) {
            logger.warn("second signal: exiting now");
            process.exit(1);
          }
          stopping = true;
          logger.info({ why }, "stopping");
          const limit = setTimeout(() => {
            logger.error("graceful stop took too long; exiting");
            process.exit(1);
          }, STOP_LIMIT_MS);
          limit.unref();
          system
            .stop()
            .catch((err: unknown) => logger.error({ err }, "stop failed"))
            .finally(() => {
              clearTimeout(limit);
              process.exitCode = code;
              resolve();
              // Whatever a library left scheduled must not hold the exit past the stop.
              setTimeout(() => process.exit(code), 200).unref();
            });
        };
        process.on("SIGTERM", () => stop("SIGTERM", 0));
        process.on("SIGINT", () => stop("SIGINT", 0));
        process.on("uncaughtException", (err) => {
          logger.fatal({ err }, "uncaught exception");
          stop("uncaughtException", 1);
        });
        process.on("unhandledRejection", (err) => {
          logger.fatal({ err }, "unhandled rejection");
          stop("unhandledRejection", 1);
        });
      });
    });
}
