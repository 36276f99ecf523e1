#!/usr/bin/env node
import { Command } from "commander";

import { registerDlqCommands } from "./commands/dlq.js";
import { registerEventsCommands } from "./commands/events.js";
import { registerLdCommands } from "./commands/ld.js";
import { registerMapCommands } from "./commands/map.js";
import { registerMigrateCommand } from "./commands/migrate.js";
import { registerPdCommands } from "./commands/pd.js";
import { registerRunCommand } from "./commands/run.js";
import { registerUsersCommands } from "./commands/users.js";
import { describeError } from "./context.js";
import { loadDotEnv } from "./dotenv.js";

/**
 * The `broker` executable. Usage mistakes are reported by commander itself ("error: …", exit 1);
 * a failing command prints one line on stderr and exits 1, never a stack trace.
 */
const program = new Command("broker")
  .description("IoTa-compatible IoT telemetry router")
  .showSuggestionAfterError();

registerMigrateCommand(program);
registerPdCommands(program);
registerLdCommands(program);
registerMapCommands(program);
registerUsersCommands(program);
registerEventsCommands(program);
registerDlqCommands(program);
registerRunCommand(program);

try {
  loadDotEnv();
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`error: ${describeError(err)}\n`);
  process.exitCode = 1;
}
