import { InvalidArgumentError, type Command } from "commander";

import { backfill, BACKFILL_WRITERS } from "../../delivery/backfill.js";
import { printJson, withDatabase } from "../context.js";
import { parseTime, parseUid } from "../output.js";
import { stderrProgress, withInterrupt } from "../progress-output.js";

function writerName(value: string): string {
  if (!(BACKFILL_WRITERS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`must be one of ${BACKFILL_WRITERS.join(", ")}.`);
  }
  return value;
}

function collectUid(value: string, previous: number[] = []): number[] {
  return [...previous, parseUid(value)];
}

/** `broker backfill <writer>`: the history of logical messages for one (new) destination. */
export function registerBackfillCommand(program: Command): void {
  program
    .command("backfill")
    .description(
      "send stored logical messages stamped in [--from, --to) to ONE writer only (its delivery queue), e.g. a destination added later; resumable, prints a summary as JSON",
    )
    .argument("<writer>", `the writer: ${BACKFILL_WRITERS.join(", ")}`, writerName)
    .requiredOption("--from <time>", "messages stamped at or after this instant", parseTime)
    .requiredOption("--to <time>", "messages stamped before this instant", parseTime)
    .option("--luid <uid>", "only this logical device (repeatable)", collectUid)
    .option(
      "--restart",
      "start from the beginning even if this backfill ran before (messages the writer still remembers are skipped)",
    )
    .action(
      async (
        writer: string,
        opts: { from: string; to: string; luid?: number[]; restart?: boolean },
      ) => {
        const progress = stderrProgress();
        const summary = await withInterrupt((signal) =>
          withDatabase((db) =>
            backfill(db, {
              writer,
              from: opts.from,
              to: opts.to,
              luids: opts.luid ?? [],
              restart: opts.restart ?? false,
              signal,
              onProgress: (done, total) => progress(`backfill ${writer}`, done, total),
            }),
          ),
        );
        printJson(summary);
        if (!summary.finished) {
          process.stderr.write("interrupted: run the same command again to resume\n");
          process.exitCode = 130;
        } else if (summary.selected === 0 && summary.resumed) {
          process.stderr.write(
            "this backfill finished earlier; nothing sent (--restart sends it again)\n",
          );
        }
        if (summary.invalid > 0) {
          process.stderr.write(
            `${summary.invalid} stored messages are not valid messages and were not sent\n`,
          );
        }
      },
    );
}
