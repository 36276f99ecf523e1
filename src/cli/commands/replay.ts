import { InvalidArgumentError, Option, type Command } from "commander";

import { loadConfig } from "../../core/config.js";
import { createLogger } from "../../core/logger.js";
import { ProgressReporter } from "../../dlq/progress.js";
import { mapperSettings } from "../../mapper/settings.js";
import { replay, type ReplaySummary } from "../../replay/replay.js";
import { describeSelection, parseSelection, SelectionError } from "../../replay/selection.js";
import { openRawNormaliser, REPLAYABLE_SOURCES } from "../../sources/replay.js";
import { withLogicalPublisher } from "../bus.js";
import { parseUid, printJson, UsageError, withDatabase } from "../context.js";
import { parseTime } from "../output.js";

function collect(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(",")
      .map((v) => v.trim())
      .filter((v) => v !== ""),
  ];
}

function collectUids(value: string, previous: number[] | undefined): number[] {
  return [...(previous ?? []), ...value.split(",").map((v) => parseUid(v))];
}

function parseBatch(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) {
    throw new InvalidArgumentError("must be an integer from 1 to 10000.");
  }
  return n;
}

interface ReplayOpts {
  source?: string[];
  puid?: number[];
  app?: string[];
  cid?: string[];
  from?: string;
  to?: string;
  all?: boolean;
  dryRun?: boolean;
  batchSize: number;
}

/** `broker replay`: re-normalise stored raw messages with today's decoders and normalisers. */
export function registerReplayCommand(program: Command): void {
  program
    .command("replay")
    .description(
      "re-normalise stored raw messages with today's decoders and normalisers, replace what they stored, and republish it (x-broker-replay header); prints a JSON summary, progress on stderr",
    )
    .option(
      "--source <name...>",
      `source (${REPLAYABLE_SOURCES.join(", ")}); repeat or comma-separate`,
      collect,
    )
    .option("--puid <uid...>", "physical device uid; repeat or comma-separate", collectUids)
    .option("--app <id...>", "TTN application id; repeat or comma-separate", collect)
    .option("--cid <id...>", "raw message correlation id; repeat or comma-separate", collect)
    .option(
      "--from <time>",
      "raw messages from this instant (ISO-8601 with offset), inclusive",
      parseTime,
    )
    .option("--to <time>", "raw messages before this instant, exclusive", parseTime)
    .option(
      "--all",
      "every raw message (those of sources that cannot be replayed are counted under failures)",
    )
    .option(
      "--dry-run",
      "print what would change (values, points added and removed, devices); change nothing",
    )
    .addOption(
      new Option("--batch-size <n>", "raw messages per transaction and publish round")
        .argParser(parseBatch)
        .default(500),
    )
    .action(async (opts: ReplayOpts) => {
      let selection;
      try {
        selection = parseSelection({
          sources: opts.source,
          puids: opts.puid,
          apps: opts.app,
          correlationIds: opts.cid,
          from: opts.from,
          to: opts.to,
          all: opts.all,
        });
      } catch (err) {
        if (err instanceof SelectionError) {
          throw new UsageError(err.message);
        }
        throw err;
      }
      const unknown = selection.sources?.filter((s) => !REPLAYABLE_SOURCES.includes(s)) ?? [];
      if (unknown.length > 0) {
        throw new UsageError(
          `cannot replay source ${unknown[0]}: replayable sources are ${REPLAYABLE_SOURCES.join(", ")}`,
        );
      }
      const config = loadConfig();
      const logger = createLogger({ level: config.logLevel, destination: process.stderr });
      const route = {
        futureToleranceMs: config.futureToleranceSeconds * 1000,
        pastToleranceMs: ((s) => (s === undefined ? undefined : s * 1000))(
          mapperSettings(config).pastToleranceSeconds,
        ),
      };
      const tty = process.stderr.isTTY === true;
      const reporter = new ProgressReporter({
        write: (line, final) =>
          process.stderr.write(tty ? `\r\u001b[K${line}${final ? "\n" : ""}` : `${line}\n`),
      });
      const label = `replay (${describeSelection(selection)})`;
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        const summary: ReplaySummary = await withDatabase(async (db) => {
          const normaliser = await openRawNormaliser({ config, db, logger });
          try {
            const run = (publisher?: Parameters<typeof replay>[0]["publisher"]) =>
              replay({ db, normaliser, publisher, route }, selection, {
                dryRun: opts.dryRun === true,
                batchSize: opts.batchSize,
                signal: stop.signal,
                onProgress: (done, total) => reporter.update(label, done, total),
              });
            return opts.dryRun ? await run() : await withLogicalPublisher((p) => run(p));
          } finally {
            await normaliser.close();
          }
        });
        printJson(summary);
        if (!summary.complete) {
          process.stderr.write(
            "replay stopped before the end: run the same command again to resume\n",
          );
          process.exitCode = 1;
        }
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
