import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import type { CommanderError } from "commander";
import { Command, type Option } from "commander";

import { UsageError } from "./errors.js";

/**
 * The `broker` program: its command groups, loaded only when named. Operators run the CLI in
 * loops over hundreds of devices, and loading every command's code (the API, every source, the
 * AMQP and MQTT clients) took most of a second per call; `broker pd get` now loads the pd
 * commands and what they use, nothing else. This module imports only commander.
 */

interface Group {
  readonly description: string;
  readonly load: () => Promise<(program: Command) => void>;
}

const GROUPS: Readonly<Record<string, Group>> = {
  migrate: {
    description: "create or upgrade the database schema",
    load: async () => (await import("./commands/migrate.js")).registerMigrateCommand,
  },
  pd: {
    description: "physical device operations",
    load: async () => (await import("./commands/pd.js")).registerPdCommands,
  },
  ld: {
    description: "logical device operations",
    load: async () => (await import("./commands/ld.js")).registerLdCommands,
  },
  map: {
    description: "mapping operations",
    load: async () => (await import("./commands/map.js")).registerMapCommands,
  },
  users: {
    description: "API user operations",
    load: async () => (await import("./commands/users.js")).registerUsersCommands,
  },
  events: {
    description: "registry event log",
    load: async () => (await import("./commands/events.js")).registerEventsCommands,
  },
  dlq: {
    description: "dead-letter queues: look, replay, purge",
    load: async () => (await import("./commands/dlq.js")).registerDlqCommands,
  },
  backfill: {
    description: "send stored logical messages to one writer (a destination added later)",
    load: async () => (await import("./commands/backfill.js")).registerBackfillCommand,
  },
  replay: {
    description: "re-normalise stored raw messages with today's decoders (--dry-run to preview)",
    load: async () => (await import("./commands/replay.js")).registerReplayCommand,
  },
  run: {
    description: "run one or more components in this process until SIGTERM/SIGINT",
    load: async () => (await import("./commands/run.js")).registerRunCommand,
  },
};

/** The version in package.json (the nearest one above this file, in src/ and in dist/ alike). */
export function brokerVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
        version?: string;
      };
      if (pkg.version) {
        return pkg.version;
      }
    } catch {
      // Not here: look one directory up.
    }
    const parent = dirname(dir);
    if (parent === dir) {
      return "unknown";
    }
    dir = parent;
  }
}

/** The group an argument vector names: its first word (options before it belong to `broker`). */
function groupNamed(args: readonly string[]): string | undefined {
  return args.find((a) => !a.startsWith("-"));
}

/**
 * Builds the program. `load` says which groups get their real commands: `"all"`, or the group
 * the arguments name; the others are listed by name and description only (for `--help`).
 */
export async function buildProgram(load: "all" | readonly string[]): Promise<Command> {
  const program = new Command("broker")
    .description("IoTa-compatible IoT telemetry router")
    .version(brokerVersion(), "-V, --version", "print the version")
    .showSuggestionAfterError()
    // As argparse: options of `broker` come before the command, the command's after it.
    .enablePositionalOptions()
    // Usage errors are thrown (main.ts gives them exit 2), not exited on.
    .exitOverride();
  const wanted = load === "all" ? Object.keys(GROUPS) : [groupNamed(load)];
  for (const [name, group] of Object.entries(GROUPS)) {
    if (wanted.includes(name)) {
      (await group.load())(program);
    } else {
      program.command(name).description(group.description);
    }
  }
  return program;
}

/** The long option names a command accepts, `--help` included (argparse counts it too). */
function longOptions(command: Command): string[] {
  return [
    ...command.options.map((o: Option) => o.long).filter((l): l is string => l !== undefined),
    "--help",
  ];
}

function takesValue(command: Command, long: string): boolean {
  const option = command.options.find((o: Option) => o.long === long);
  return option !== undefined && (option.required || option.optional);
}

/** The command `args` (after `node broker`) run, and where its own arguments start. */
function leafCommand(program: Command, args: readonly string[]): [Command, number] {
  let command = program;
  let i = 0;
  while (i < args.length) {
    const arg = args[i]!;
    if (arg.startsWith("-")) {
      break;
    }
    const sub = command.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (!sub) {
      break;
    }
    command = sub;
    i += 1;
  }
  return [command, i];
}

/**
 * Long options shortened to a prefix unique among the command's options are written out in
 * full, as Python's argparse (IoTa's CLI) accepts them: `--prop`, `--pl`, `--so ydoc`,
 * `--pu 2`, `--pu=2`. A prefix shared by several options is a usage error, as in argparse. An
 * exact name always wins; anything else is left for commander to judge.
 */
export function expandOptionPrefixes(program: Command, args: readonly string[]): string[] {
  const [command, start] = leafCommand(program, args);
  const out = args.slice(0, start);
  const names = longOptions(command);
  for (let i = start; i < args.length; i += 1) {
    const arg = args[i]!;
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (!arg.startsWith("--") || arg.length < 3) {
      out.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const given = eq < 0 ? arg : arg.slice(0, eq);
    let name = given;
    if (!names.includes(given)) {
      const matches = names.filter((n) => n.startsWith(given));
      if (matches.length > 1) {
        throw new UsageError(`ambiguous option: ${given} could match ${matches.join(", ")}`);
      }
      if (matches.length === 1) {
        name = matches[0]!;
      }
    }
    out.push(eq < 0 ? name : `${name}${arg.slice(eq)}`);
    // The option's value is the next argument, whatever it looks like: copy it untouched.
    if (eq < 0 && takesValue(command, name) && i + 1 < args.length) {
      out.push(args[i + 1]!);
      i += 1;
    }
  }
  return out;
}

/** Exit status for a usage error, as argparse (IoTa's CLI). Other failures exit 1. */
export const USAGE_EXIT = 2;

/** The exit status for an error commander threw: 0 for help and version, else a usage error. */
export function commanderExitCode(err: CommanderError): number {
  return err.exitCode === 0 ? 0 : USAGE_EXIT;
}
