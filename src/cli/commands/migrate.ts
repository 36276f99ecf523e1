import type { Command } from "commander";

import { migrate } from "../../db/migrate.js";
import { withDatabase } from "../context.js";

/**
 * `broker migrate`: creates the schema in an empty database, or upgrades an IoTa (version 2)
 * database in place. Prints each migration it applied and the version reached.
 */
export function registerMigrateCommand(program: Command): void {
  program
    .command("migrate")
    .description("create or upgrade the database schema")
    .action(async () => {
      await withDatabase(async (_db, handle) => {
        const result = await migrate(handle.pool);
        for (const step of result.applied) {
          process.stdout.write(`applied ${step.name} (${step.ms} ms)\n`);
        }
        const note = result.applied.length === 0 ? " (up to date)" : "";
        process.stdout.write(`schema version ${result.to}${note}\n`);
      });
    });
}
