import { InvalidArgumentError, Option, type Command } from "commander";

import type { Db } from "../../db/database.js";
import { countHeld, listHeld, UNRECORDED_REASON } from "../../db/repositories/held-messages.js";
import {
  endMapping,
  listMappings,
  setMappingActive,
  startMapping,
  type DeviceSelector,
} from "../../db/repositories/mappings.js";
import { getLogicalDevice } from "../../db/repositories/logical-devices.js";
import { getPhysicalDevice } from "../../db/repositories/physical-devices.js";
import { RegistryError } from "../../db/repositories/registry-error.js";
import { cliActor, withActor } from "../../events/actor.js";
import { mappingJson } from "../../core/device-json.js";
import {
  DEFAULT_RELEASE_REASONS,
  releaseHeld,
  type ReleaseRequest,
  type ReleaseSummary,
} from "../../mapper/release.js";
import { HOLD_REASONS } from "../../mapper/route.js";
import { withLogicalPublisher } from "../bus.js";
import { notFoundNote, parseUid, printJson, UsageError, withDatabase } from "../context.js";
import { parseTime } from "../output.js";

interface SelectorOptions {
  puid?: number;
  luid?: number;
}

const puidOption = () =>
  new Option("--puid <uid>", "physical device uid").argParser(parseUid).conflicts("luid");
const luidOption = () => new Option("--luid <uid>", "logical device uid").argParser(parseUid);

function selector(opts: SelectorOptions): DeviceSelector {
  if (opts.puid !== undefined) {
    return { puid: opts.puid };
  }
  if (opts.luid !== undefined) {
    return { luid: opts.luid };
  }
  throw new UsageError("give one of --puid or --luid");
}

function describe(sel: DeviceSelector): string {
  return sel.puid !== undefined ? `physical device ${sel.puid}` : `logical device ${sel.luid}`;
}

/** The selected device must exist (our own commands, which IoTa did not have: one-line error). */
async function requireDevice(db: Db, sel: DeviceSelector): Promise<void> {
  const device =
    sel.puid !== undefined
      ? await getPhysicalDevice(db, sel.puid)
      : await getLogicalDevice(db, sel.luid!);
  if (!device) {
    throw new RegistryError("not_found", `${describe(sel)} not found`);
  }
}

/**
 * Whether the selected device exists. When it does not, IoTa did nothing and exited 0 (scripts
 * rely on that), so we say so on stderr only.
 */
async function deviceExists(db: Db, sel: DeviceSelector): Promise<boolean> {
  const device =
    sel.puid !== undefined
      ? await getPhysicalDevice(db, sel.puid)
      : await getLogicalDevice(db, sel.luid!);
  if (!device) {
    notFoundNote(describe(sel));
  }
  return device !== undefined;
}

const RELEASABLE = [...HOLD_REASONS, UNRECORDED_REASON];

/** commander argument parser for `--reason a,b`: hold reasons, repeatable. */
function parseReasons(value: string, previous: string[] | undefined): string[] {
  const reasons = value.split(",").map((r) => r.trim());
  const unknown = reasons.filter((r) => !RELEASABLE.includes(r));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(
      `unknown reason ${unknown[0]}; one of ${RELEASABLE.join(", ")}.`,
    );
  }
  return [...(previous ?? []), ...reasons];
}

/** "12 (no_mapping 10, paused 2)". */
function describeCounts(counts: Record<string, number>): string {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const parts = Object.entries(counts).map(([reason, n]) => `${reason} ${n}`);
  return parts.length > 0 ? `${total} (${parts.join(", ")})` : "0";
}

function describeRelease(summary: ReleaseSummary): string {
  const resumed =
    summary.resumed > 0 ? `, ${summary.resumed} of them resumed from an interrupted release` : "";
  return `released ${summary.released} held messages of physical device ${summary.puid}${resumed} (release ${summary.release_id}); ${summary.still_held} still held\n`;
}

/**
 * Releases with progress on stderr at most once a second for long releases: done, the most there
 * can be (held messages of the selection; some may have no mapping), rate and time left.
 */
async function releaseWithProgress(db: Db, request: ReleaseRequest): Promise<ReleaseSummary> {
  const selected = await countHeld(db, {
    ...request,
    reasons: request.reasons ?? DEFAULT_RELEASE_REASONS,
  });
  const most = Object.values(selected).reduce((a, b) => a + b, 0);
  const started = Date.now();
  let shown = started;
  return withLogicalPublisher((publisher) =>
    releaseHeld(db, publisher, request, {
      onProgress: (released) => {
        const now = Date.now();
        if (now - shown >= 1000) {
          shown = now;
          const rate = released / ((now - started) / 1000);
          const left = Math.max(0, most - released) / Math.max(rate, 1);
          process.stderr.write(
            `released ${released} of at most ${most} (${Math.round(rate)} msg/s, about ${Math.ceil(left)} s left)\n`,
          );
        }
      },
    }),
  );
}

/** `broker map …`: mapping commands with IoTa broker-cli's flags. */
export function registerMapCommands(program: Command): void {
  const map = program.command("map").description("mapping operations");

  map
    .command("start")
    .description(
      "map a physical device to a logical device from now (or --from); prints the mapping, and on stderr how many held messages it covers",
    )
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .requiredOption("--luid <uid>", "logical device uid", parseUid)
    .option(
      "--from <time>",
      "start the mapping at this instant (ISO-8601 with offset), e.g. when the device was installed",
      parseTime,
    )
    .option("--release", "release the held messages the new mapping covers")
    .action(async (opts: { puid: number; luid: number; from?: string; release?: boolean }) => {
      await withDatabase(async (db) => {
        const mapping = await withActor(db, cliActor(), (trx) =>
          startMapping(trx, opts.puid, opts.luid, opts.from),
        );
        printJson(mappingJson(mapping));
        const covered = await countHeld(db, { puid: opts.puid, from: mapping.start_time });
        // Said only when there is something to say: IoTa's `map start` printed the mapping alone.
        if (Object.keys(covered).length > 0) {
          process.stderr.write(
            `held messages of physical device ${opts.puid} within this mapping: ${describeCounts(covered)}\n`,
          );
        }
        if (opts.release) {
          const summary = await releaseWithProgress(db, {
            puid: opts.puid,
            from: mapping.start_time,
          });
          process.stderr.write(describeRelease(summary));
        } else if (Object.keys(covered).length > 0) {
          process.stderr.write(
            `send them with: broker map release --puid ${opts.puid} --from ${mapping.start_time}\n`,
          );
        }
      });
    });

  map
    .command("end")
    .description("end the current mapping of a device now (or --at)")
    .addOption(puidOption())
    .addOption(luidOption())
    .option(
      "--at <time>",
      "end it at this instant (ISO-8601 with offset; after its start, not in the future), e.g. when the device was removed",
      parseTime,
    )
    .action(async (opts: SelectorOptions & { at?: string }) => {
      const sel = selector(opts);
      await withDatabase((db) =>
        withActor(db, cliActor(), async (trx) => {
          if (await deviceExists(trx, sel)) {
            await endMapping(trx, sel, opts.at);
          }
        }),
      );
    });

  map
    .command("ls")
    .description("mapping history of a device, newest first")
    .addOption(puidOption())
    .addOption(luidOption())
    .action(async (opts: SelectorOptions) => {
      const sel = selector(opts);
      const mappings = await withDatabase(async (db) =>
        (await deviceExists(db, sel)) ? listMappings(db, sel) : [],
      );
      printJson(mappings.map(mappingJson));
    });

  map
    .command("toggle")
    .description("pause or resume the current mapping of a device")
    .addOption(puidOption())
    .addOption(luidOption())
    .addOption(new Option("--enable", "forward messages again").conflicts("disable"))
    .addOption(new Option("--disable", "stop forwarding messages"))
    .action(async (opts: SelectorOptions & { enable?: boolean; disable?: boolean }) => {
      const sel = selector(opts);
      if (!opts.enable && !opts.disable) {
        throw new UsageError("give one of --enable or --disable");
      }
      const changed = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => setMappingActive(trx, sel, opts.enable === true)),
      );
      if (!changed) {
        throw new RegistryError("not_found", `${describe(sel)} has no current mapping`);
      }
    });

  map
    .command("held")
    .description(
      "held messages per physical device (count, oldest, newest, reasons), as a JSON array",
    )
    .option("--puid <uid>", "only this physical device", parseUid)
    .action(async (opts: { puid?: number }) => {
      printJson(
        await withDatabase(async (db) => {
          if (opts.puid === undefined) {
            return listHeld(db);
          }
          await requireDevice(db, { puid: opts.puid });
          return listHeld(db, { puid: opts.puid });
        }),
      );
    });

  map
    .command("release")
    .description(
      "send a physical device's held messages to the logical device of the mapping that holds each one's timestamp; prints what was released as JSON",
    )
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .option("--from <time>", "only messages stamped at or after this instant", parseTime)
    .option("--to <time>", "only messages stamped before this instant", parseTime)
    .option(
      "--reason <reasons>",
      `only messages held for these reasons, comma-separated (${RELEASABLE.join(", ")}); default no_mapping,paused,unrecorded`,
      parseReasons,
    )
    .action(async (opts: { puid: number; from?: string; to?: string; reason?: string[] }) => {
      const summary = await withDatabase(async (db) => {
        await requireDevice(db, { puid: opts.puid });
        return releaseWithProgress(db, {
          puid: opts.puid,
          ...(opts.from !== undefined ? { from: opts.from } : {}),
          ...(opts.to !== undefined ? { to: opts.to } : {}),
          ...(opts.reason !== undefined ? { reasons: opts.reason } : {}),
        });
      });
      printJson(summary);
    });
}
