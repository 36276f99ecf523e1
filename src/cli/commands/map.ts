import { Option, type Command } from "commander";

import type { Db } from "../../db/database.js";
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
import { notFoundNote, parseUid, printJson, UsageError, withDatabase } from "../context.js";

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

/** `broker map …`: mapping commands with IoTa broker-cli's flags. */
export function registerMapCommands(program: Command): void {
  const map = program.command("map").description("mapping operations");

  map
    .command("start")
    .description("map a physical device to a logical device from now; prints the mapping")
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .requiredOption("--luid <uid>", "logical device uid", parseUid)
    .action(async (opts: { puid: number; luid: number }) => {
      const mapping = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => startMapping(trx, opts.puid, opts.luid)),
      );
      printJson(mappingJson(mapping));
    });

  map
    .command("end")
    .description("end the current mapping of a device")
    .addOption(puidOption())
    .addOption(luidOption())
    .action(async (opts: SelectorOptions) => {
      const sel = selector(opts);
      await withDatabase((db) =>
        withActor(db, cliActor(), async (trx) => {
          if (await deviceExists(trx, sel)) {
            await endMapping(trx, sel);
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
}
