#!/usr/bin/env node
import { CommanderError } from "commander";

import { loadDotEnv } from "./dotenv.js";
import { buildProgram, commanderExitCode, expandOptionPrefixes, USAGE_EXIT } from "./program.js";
import { describeError, UsageError } from "./errors.js";

/**
 * The `broker` executable. As IoTa's CLI (argparse): a usage mistake exits 2, any other failure
 * 1, each reported in one line on stderr, never a stack trace. Only commander is loaded before
 * the command is known (program.ts).
 */

// A reader that goes away (`broker pd ls --plain | head -1`) ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") {
    process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
  }
  process.stderr.write(`error: ${describeError(err)}\n`);
  process.exit(1);
});

const args = process.argv.slice(2);
try {
  loadDotEnv();
  const program = await buildProgram(args);
  await program.parseAsync(expandOptionPrefixes(program, args), { from: "user" });
} catch (err) {
  if (err instanceof CommanderError) {
    // commander has printed its message already.
    process.exitCode = commanderExitCode(err);
  } else {
    process.stderr.write(`error: ${describeError(err)}\n`);
    process.exitCode = err instanceof UsageError ? USAGE_EXIT : 1;
  }
}
