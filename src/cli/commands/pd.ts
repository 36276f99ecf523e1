import { Option, type Command } from "commander";

import { physicalDeviceJson } from "../../core/device-json.js";
import type { LogicalDevice, PhysicalDevice } from "../../core/devices.js";
import { notFoundNote, parseUid, printJson, withPool } from "../output.js";

/**
 * What the commands that change or list devices use (kysely, zod schemas, pino), loaded by
 * them only: `pd get`, run in loops by operators, needs none of it.
 */
const heavy = () => import("./pd-heavy.js");

/** IoTa's plain last-seen column: ISO-8601 to the minute with offset, or `Never` padded alike. */
function lastSeenMinutes(lastSeen: string | null): string {
  if (lastSeen === null) {
    return "Never".padEnd(22);
  }
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.exec(
    lastSeen,
  );
  if (!m) {
    return lastSeen;
  }
  return `${m[1]}${m[2] === "Z" ? "+00:00" : m[2]}`;
}

/** One device in IoTa's `--plain` layout: uid (width 5), name (width 48), last seen. */
export function plainDevice(device: PhysicalDevice | LogicalDevice): string {
  return `${String(device.uid).padStart(5)}   ${device.name.padEnd(48)}   ${lastSeenMinutes(device.last_seen)}`;
}

/** A plain line for a physical device, followed by ` --> ` and its current logical device. */
export function plainLine(device: PhysicalDevice, current: LogicalDevice | undefined): string {
  return current ? `${plainDevice(device)} --> ${plainDevice(current)}` : plainDevice(device);
}

interface ListOptions {
  source?: string;
  plain?: boolean;
  properties?: boolean;
}

interface JsonInput {
  json?: string;
  file?: string;
}

const jsonOption = () => new Option("--json <json>", "physical device JSON").conflicts("file");
const fileOption = () => new Option("--file <file>", "read the JSON from a file, - for stdin");

/** `broker pd …`: physical device commands with IoTa broker-cli's flags. */
export function registerPdCommands(program: Command): void {
  const pd = program.command("pd").description("physical device operations");

  pd.command("get")
    .description("get a physical device")
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .option("--properties", "include the properties field in the output")
    .action(async (opts: { puid: number; properties?: boolean }) => {
      const { readPhysicalDevice } = await import("../../db/repositories/device-reads.js");
      const device = await withPool((pool) => readPhysicalDevice(pool, opts.puid));
      if (!device) {
        notFoundNote(`physical device ${opts.puid}`);
      }
      printJson(device && physicalDeviceJson(device, opts.properties ? "all" : "omit"));
    });

  pd.command("ls")
    .description("list physical devices")
    .option("--source <name>", "physical device source name")
    .option("--plain", "plain output, not JSON")
    .option("--properties", "include the properties field in the output")
    .action(async (opts: ListOptions) => {
      const { withDatabase, listPhysicalDevicesWithCurrentLogical, listPhysicalDevices } =
        await heavy();
      if (opts.plain) {
        const rows = await withDatabase((db) =>
          listPhysicalDevicesWithCurrentLogical(db, { source: opts.source }),
        );
        for (const { device, current } of rows) {
          process.stdout.write(`${plainLine(device, current)}\n`);
        }
        return;
      }
      const devices = await withDatabase((db) => listPhysicalDevices(db, { source: opts.source }));
      printJson(devices.map((d) => physicalDeviceJson(d, opts.properties ? "all" : "omit")));
    });

  pd.command("lum")
    .description("list unmapped physical devices")
    .option("--source <name>", "physical device source name")
    .option("--plain", "plain output, not JSON")
    .option("--properties", "include the properties field in the output")
    .action(async (opts: ListOptions) => {
      const { withDatabase, listUnmappedPhysicalDevices } = await heavy();
      const devices = await withDatabase((db) =>
        listUnmappedPhysicalDevices(db, { source: opts.source }),
      );
      if (opts.plain) {
        devices.forEach((d) => process.stdout.write(`${plainDevice(d)}\n`));
        return;
      }
      printJson(devices.map((d) => physicalDeviceJson(d, opts.properties ? "all" : "omit")));
    });

  pd.command("create")
    .description("create a physical device")
    .addOption(jsonOption())
    .addOption(fileOption())
    .action(async (opts: JsonInput) => {
      const {
        validate,
        newPhysicalDeviceSchema,
        readJsonObject,
        withDatabase,
        withActor,
        cliActor,
        createPhysicalDevice,
      } = await heavy();
      const input = validate(
        newPhysicalDeviceSchema,
        await readJsonObject(opts),
        "physical device",
      );
      const device = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => createPhysicalDevice(trx, input)),
      );
      printJson(physicalDeviceJson(device));
    });

  pd.command("up")
    .description("update a physical device with the top-level fields given")
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .addOption(jsonOption())
    .addOption(fileOption())
    .action(async (opts: JsonInput & { puid: number }) => {
      const {
        validate,
        physicalDevicePatchSchema,
        readJsonObject,
        withDatabase,
        withActor,
        cliActor,
        updatePhysicalDevice,
        RegistryError,
      } = await heavy();
      const patch = validate(
        physicalDevicePatchSchema,
        await readJsonObject(opts),
        "physical device",
      );
      const device = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => updatePhysicalDevice(trx, opts.puid, patch)),
      );
      if (!device) {
        // IoTa failed here too: an error, not IoTa's traceback.
        throw new RegistryError("not_found", `physical device ${opts.puid} not found`);
      }
      printJson(physicalDeviceJson(device));
    });

  pd.command("rm")
    .description("delete a physical device and its mapping history")
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .action(async (opts: { puid: number }) => {
      const { withDatabase, withActor, cliActor, deleteMappings, deletePhysicalDevice } =
        await heavy();
      const device = await withDatabase((db) =>
        withActor(db, cliActor(), async (trx) => {
          await deleteMappings(trx, { puid: opts.puid });
          return deletePhysicalDevice(trx, opts.puid);
        }),
      );
      if (!device) {
        notFoundNote(`physical device ${opts.puid}`);
      }
      printJson(device && physicalDeviceJson(device));
    });
}
