import { z } from "zod";

import { classifyError } from "../../core/errors.js";
import { listPhysicalDevicesWithCurrentLogical } from "../../db/repositories/mappings.js";
import {
  WOMBAT_ACTIONS,
  WOMBAT_SCRIPTS,
  isTopicLevel,
  sourceIdText,
  wombatSerial,
} from "../../sources/wombat/config-scripts.js";
import { ApiError, badRequest } from "../errors.js";
import { ok, route, type Route } from "../route.js";
import { failure, json } from "../schemas/common.js";

/**
 * IoTa's Wombat panel as endpoints (extension of the API; IoTa's web app did this itself over
 * MQTT): the Wombats with the configuration script pending for each, and sending or clearing
 * scripts. A script is a retained QoS 1 message on `<root>/<serial_no>`, which a Wombat reads
 * when it next connects. Unlike IoTa, sending is for admins only.
 */

/** What the routes need from MQTT: the retained messages under one topic root. */
export interface RetainedScripts {
  /** Serial number → pending script, for every non-empty retained message. */
  list(): Promise<ReadonlyMap<string, string>>;
  /** Retains `script` for `serial`; "" clears it. Resolves once the broker has it. */
  set(serial: string, script: string): Promise<void>;
}

const tags = ["wombats"];

const wombatOutput = z
  .object({
    uid: z.number().int(),
    name: z.string(),
    last_seen: z.string().nullable(),
    serial_no: z.string().nullable(),
    ccid: z.string().nullable(),
    firmware: z.string().nullable(),
    ld: z.object({ uid: z.number().int(), name: z.string() }).nullable(),
    pending_script: z.string().nullable(),
  })
  .meta({ id: "Wombat" });

const configInput = z
  .object({
    action: z.enum(WOMBAT_ACTIONS),
    uids: z.array(z.number().int().positive()).max(1000).optional(),
    serial_nos: z
      .array(z.string().min(1).max(100))
      .max(1000)
      .optional()
      .meta({ description: "Serial numbers (for `clear` only: scripts of unknown devices)." }),
  })
  .strict()
  .refine((b) => (b.uids?.length ?? 0) + (b.serial_nos?.length ?? 0) > 0, {
    message: "give uids or serial_nos",
  })
  .refine((b) => b.serial_nos === undefined || b.action === "clear", {
    message: "serial_nos is for the clear action only",
  });

const unavailable = () =>
  new ApiError(503, "the MQTT broker is unavailable; retry later", { "Retry-After": "5" });

async function viaMqtt<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (classifyError(err).kind === "transient") {
      throw unavailable();
    }
    throw err;
  }
}

export function wombatRoutes(scripts: RetainedScripts): Route[] {
  return [
    route({
      method: "get",
      path: "/wombats",
      summary: "Wombats with the configuration script pending for each (extension)",
      tags,
      access: "read",
      responses: {
        "200": json(
          "Every physical device of source wombat, uid ascending; `mqtt` false when the " +
            "broker could not be asked (pending scripts unknown), and scripts pending for " +
            "serial numbers no device has.",
          z.object({
            mqtt: z.boolean(),
            wombats: z.array(wombatOutput),
            other_scripts: z.record(z.string(), z.string()),
          }),
        ),
      },
      handler: async ({ db }) => {
        const devices = await listPhysicalDevicesWithCurrentLogical(db, { source: "wombat" });
        let pending: ReadonlyMap<string, string> | undefined;
        try {
          pending = await scripts.list();
        } catch (err) {
          if (classifyError(err).kind !== "transient") {
            throw err;
          }
        }
        const serials = new Set<string>();
        const wombats = devices.map(({ device, current }) => {
          const serial = wombatSerial(device.source_ids) ?? null;
          if (serial !== null) {
            serials.add(serial);
          }
          return {
            uid: device.uid,
            name: device.name,
            last_seen: device.last_seen,
            serial_no: serial,
            ccid: sourceIdText(device.source_ids, "ccid"),
            firmware: sourceIdText(device.source_ids, "firmware"),
            ld: current ? { uid: current.uid, name: current.name } : null,
            pending_script: (serial !== null ? pending?.get(serial) : undefined) ?? null,
          };
        });
        const others = [...(pending ?? new Map<string, string>())].filter(
          ([sn]) => !serials.has(sn),
        );
        return ok({
          mqtt: pending !== undefined,
          wombats,
          other_scripts: Object.fromEntries(others),
        });
      },
    }),
    route({
      method: "post",
      path: "/wombats/config",
      summary: "Send (or clear) a configuration script for Wombats (extension)",
      description:
        "`logs` and `data` ask for the log or data file by FTP, `ota` for a firmware update and " +
        "reboot, `clear` removes the pending script. Answers once the MQTT broker has every script.",
      tags,
      access: "admin",
      body: configInput,
      responses: {
        "200": json(
          "The serial numbers the script was retained for.",
          z.object({ action: z.string(), serial_nos: z.array(z.string()) }),
        ),
        "400": failure("A uid is not a Wombat with a serial number."),
        "503": failure("The MQTT broker is unavailable; nothing more was sent."),
      },
      handler: async ({ db, body }) => {
        const serials = [...(body.serial_nos ?? [])];
        if (body.uids !== undefined) {
          const wanted = new Set(body.uids);
          const devices = await listPhysicalDevicesWithCurrentLogical(db, { source: "wombat" });
          const bySerial = new Map(
            devices
              .filter(({ device }) => wanted.has(device.uid))
              .map(({ device }) => [device.uid, wombatSerial(device.source_ids)]),
          );
          const bad = body.uids.filter((uid) => bySerial.get(uid) === undefined);
          if (bad.length > 0) {
            throw badRequest(`not a Wombat with a serial number: ${bad.join(", ")}`);
          }
          serials.push(...body.uids.map((uid) => bySerial.get(uid)!));
        }
        const unique = [...new Set(serials)];
        for (const serial of unique) {
          if (!isTopicLevel(serial)) {
            throw badRequest("a serial number may not contain +, #, / or NUL");
          }
        }
        await viaMqtt(async () => {
          for (const serial of unique) {
            await scripts.set(serial, WOMBAT_SCRIPTS[body.action]);
          }
        });
        return ok({ action: body.action, serial_nos: unique });
      },
    }),
  ];
}
