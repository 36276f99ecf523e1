import { Option, type Command } from "commander";

import { loadConfig } from "../../core/config.js";
import { createLogger } from "../../core/logger.js";
import { listEvents } from "../../db/repositories/events.js";
import { EVENT_ENTITIES, EVENT_OPERATIONS, eventFilterSchema } from "../../events/event.js";
import { tailEvents } from "../../events/tail.js";
import { printJson, validate, withDatabase } from "../context.js";

interface FilterOptions {
  since?: string;
  entity?: string;
  operation?: string;
  limit?: string;
}

const sinceOption = () =>
  new Option("--since <id>", "only events after this event id (default: from the start)");
const entityOption = () =>
  new Option("--entity <entity>", "only events of this entity").choices(EVENT_ENTITIES);
const operationOption = () =>
  new Option("--operation <operation>", "only events of this operation").choices(EVENT_OPERATIONS);

/** `broker events …`: read the registry event log (doc/events.md). */
export function registerEventsCommands(program: Command): void {
  const events = program.command("events").description("registry event log");

  events
    .command("ls")
    .description("list registry events, oldest first, as a JSON array")
    .addOption(sinceOption())
    .addOption(entityOption())
    .addOption(operationOption())
    .option("--limit <n>", "at most this many events (1-1000, default 100)")
    .action(async (opts: FilterOptions) => {
      const filter = validate(eventFilterSchema, opts, "event filter");
      printJson(await withDatabase((db) => listEvents(db, filter)));
    });

  events
    .command("tail")
    .description("print new registry events as JSON lines as they happen, until Ctrl-C")
    .addOption(new Option("--since <id>", "start after this event id (default: only new events)"))
    .addOption(entityOption())
    .addOption(operationOption())
    .action(async (opts: Omit<FilterOptions, "limit">) => {
      const filter = validate(eventFilterSchema, opts, "event filter");
      const logger = createLogger({ level: loadConfig().logLevel, destination: process.stderr });
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      // A closed pipe (`| head`) ends the tail instead of crashing it.
      process.stdout.once("error", onSignal);
      try {
        await withDatabase((_db, database) =>
          tailEvents({
            database,
            logger,
            since: opts.since === undefined ? undefined : filter.since,
            entity: filter.entity,
            operation: filter.operation,
            signal: stop.signal,
            onEvent: (event) => process.stdout.write(`${JSON.stringify(event)}\n`),
          }),
        );
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        process.stdout.off("error", onSignal);
      }
    });
}
