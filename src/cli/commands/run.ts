import type { Command } from "commander";

import { COMPONENT_NAMES, resolveComponentNames } from "../../app/registry.js";
import { loadConfig } from "../../core/config.js";
import { createLogger, type Logger } from "../../core/logger.js";
import { createDatabase } from "../../db/database.js";
import { schemaStatus } from "../../db/migrate.js";
import { UsageError } from "../context.js";

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
      const logger = createLogger({ level: config.logLevel });
      await checkSchema(config, logger);
      // Loaded here so the other commands never depend on every component's code.
      const { startSystem } = await import("../../app/root.js");
      const system = await startSystem(components, config, logger);
      logger.info({ components, opsPort: system.opsPort }, "broker running");

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
