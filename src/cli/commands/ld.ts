import { Option, type Command } from "commander";

import { logicalDeviceJson, mappingJson } from "../../core/device-json.js";
import { UsageError } from "../errors.js";
import { notFoundNote, parseTime, parseUid, printJson, withPool } from "../output.js";
import { plainDevice } from "./pd.js";

/** What the commands that change or list devices use, loaded by them only (as in pd.ts). */
const heavy = () => import("./ld-heavy.js");

interface JsonInput {
  json?: string;
  file?: string;
}

const jsonOption = () => new Option("--json <json>", "logical device JSON").conflicts("file");
const fileOption = () => new Option("--file <file>", "read the JSON from a file, - for stdin");

/** `broker ld …`: logical device commands with IoTa broker-cli's flags. */
export function registerLdCommands(program: Command): void {
  const ld = program.command("ld").description("logical device operations");

  ld.command("ls")
    .description("list logical devices")
    .option("--plain", "plain output, not JSON")
    .option("--properties", "include the properties field in the output")
    .action(async (opts: { plain?: boolean; properties?: boolean }) => {
      const { withDatabase, listLogicalDevices } = await heavy();
      const devices = await withDatabase((db) => listLogicalDevices(db));
      if (opts.plain) {
        devices.forEach((d) => process.stdout.write(`${plainDevice(d)}\n`));
        return;
      }
      printJson(devices.map((d) => logicalDeviceJson(d, opts.properties ? "all" : "omit")));
    });

  ld.command("create")
    .description("create a logical device; prints it as JSON")
    .addOption(jsonOption())
    .addOption(fileOption())
    .action(async (opts: JsonInput) => {
      const {
        validate,
        newLogicalDeviceSchema,
        readJsonObject,
        withDatabase,
        withActor,
        cliActor,
        createLogicalDevice,
      } = await heavy();
      const input = validate(newLogicalDeviceSchema, await readJsonObject(opts), "logical device");
      const device = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => createLogicalDevice(trx, input)),
      );
      printJson(logicalDeviceJson(device));
    });

  ld.command("get")
    .description("get a logical device")
    .requiredOption("--luid <uid>", "logical device uid", parseUid)
    .option("--properties", "include the properties field in the output")
    .action(async (opts: { luid: number; properties?: boolean }) => {
      const { readLogicalDevice } = await import("../../db/repositories/device-reads.js");
      const device = await withPool((pool) => readLogicalDevice(pool, opts.luid));
      if (!device) {
        notFoundNote(`logical device ${opts.luid}`);
      }
      printJson(device && logicalDeviceJson(device, opts.properties ? "all" : "omit"));
    });

  ld.command("up")
    .description("update a logical device with the top-level fields given")
    .requiredOption("--luid <uid>", "logical device uid", parseUid)
    .addOption(jsonOption())
    .addOption(fileOption())
    .action(async (opts: JsonInput & { luid: number }) => {
      const {
        validate,
        logicalDevicePatchSchema,
        readJsonObject,
        withDatabase,
        withActor,
        cliActor,
        updateLogicalDevice,
        RegistryError,
      } = await heavy();
      const patch = validate(
        logicalDevicePatchSchema,
        await readJsonObject(opts),
        "logical device",
      );
      const device = await withDatabase((db) =>
        withActor(db, cliActor(), (trx) => updateLogicalDevice(trx, opts.luid, patch)),
      );
      if (!device) {
        // IoTa failed here too: an error, not IoTa's traceback.
        throw new RegistryError("not_found", `logical device ${opts.luid} not found`);
      }
      printJson(logicalDeviceJson(device));
    });

  ld.command("rm")
    .description("delete a logical device and its mapping history")
    .requiredOption("--luid <uid>", "logical device uid", parseUid)
    .action(async (opts: { luid: number }) => {
      const { withDatabase, withActor, cliActor, deleteMappings, deleteLogicalDevice } =
        await heavy();
      const device = await withDatabase((db) =>
        withActor(db, cliActor(), async (trx) => {
          await deleteMappings(trx, { luid: opts.luid });
          return deleteLogicalDevice(trx, opts.luid);
        }),
      );
      if (!device) {
        notFoundNote(`logical device ${opts.luid}`);
      }
      printJson(device && logicalDeviceJson(device));
    });

  ld.command("cpd")
    .description("create a logical device from a physical device's name, location and last seen")
    .requiredOption("--puid <uid>", "physical device uid", parseUid)
    .option("--map", "also map the physical device to the new logical device")
    .option(
      "--from <time>",
      "with --map: start the mapping at this instant (ISO-8601 with offset) instead of now",
      parseTime,
    )
    .action(async (opts: { puid: number; map?: boolean; from?: string }) => {
      if (opts.from !== undefined && !opts.map) {
        throw new UsageError("--from needs --map");
      }
      const {
        withDatabase,
        withActor,
        cliActor,
        getPhysicalDevice,
        RegistryError,
        createLogicalDevice,
        startMapping,
      } = await heavy();
      const result = await withDatabase((db) =>
        // One transaction: with --map, either both the device and the mapping exist or neither.
        withActor(db, cliActor(), async (trx) => {
          const pd = await getPhysicalDevice(trx, opts.puid);
          if (!pd) {
            throw new RegistryError("not_found", `physical device ${opts.puid} not found`);
          }
          const { name, location, last_seen } = pd;
          const created = await createLogicalDevice(trx, { name, location, last_seen });
          return opts.map ? startMapping(trx, pd.uid, created.uid, opts.from) : undefined;
        }),
      );
      // IoTa printed the new mapping with --map, and nothing without it.
      if (result) {
        printJson(mappingJson(result));
      }
    });
}
