import { z } from "zod";

import type { PhysicalDevice, PhysicalDevicePatch } from "../../core/devices.js";
import { parseInstant } from "../../core/time.js";
import type { Db } from "../../db/database.js";
import {
  createPhysicalDevice,
  deletePhysicalDevice,
  getPhysicalDevice,
  queryPhysicalDevices,
  updatePhysicalDevice,
} from "../../db/repositories/physical-devices.js";
import { listSources } from "../../db/repositories/sources.js";
import { notFound } from "../errors.js";
import { created, NO_CONTENT, ok, route, type Route } from "../route.js";
import { failure, json, noContentResponse } from "../schemas/common.js";
import {
  physicalDeviceInput,
  physicalDeviceOutput,
  physicalDevicePatchInput,
} from "../schemas/devices.js";
import { boolParam, deviceFilterQuery, textParam, uidPath } from "../schemas/params.js";
import { deviceListQuery } from "./lists.js";
import { physicalDeviceBody } from "./output.js";

const tags = ["physical devices"];
const NOT_FOUND = "Physical device not found";

const listQuery = z.object({
  source_name: textParam.optional(),
  include_properties: boolParam(true),
  ...deviceFilterQuery,
});

/**
 * The fields of a full-object update (IoTa's PATCH) that change something. Fields the body does
 * not mention stay as they are, and `last_seen` never moves backwards.
 */
export function changedFields<T extends { last_seen?: string | null }>(
  current: { last_seen: string | null },
  body: T,
): T {
  const patch = { ...body };
  const given = patch.last_seen;
  if (given !== undefined && given !== null && current.last_seen !== null) {
    if ((parseInstant(given) ?? 0) <= (parseInstant(current.last_seen) ?? 0)) {
      delete patch.last_seen;
    }
  } else if (given === null && current.last_seen !== null) {
    delete patch.last_seen;
  }
  return patch;
}

async function applyUpdate(
  db: Db,
  uid: number,
  patch: PhysicalDevicePatch,
): Promise<PhysicalDevice> {
  const current = await getPhysicalDevice(db, uid);
  if (!current) {
    throw notFound(NOT_FOUND);
  }
  const updated = await updatePhysicalDevice(db, uid, changedFields(current, patch));
  if (!updated) {
    throw notFound(NOT_FOUND);
  }
  return updated;
}

/** IoTa's physical device endpoints, plus partial update and list filters. */
export function physicalDeviceRoutes(): Route[] {
  return [
    route({
      method: "get",
      path: "/physical/sources/",
      summary: "All source names, alphabetical",
      tags,
      access: "read",
      responses: { "200": json("Source names.", z.array(z.string())) },
      handler: async ({ db }) => {
        return ok(await listSources(db));
      },
    }),
    route({
      method: "get",
      path: "/physical/devices/unmapped/",
      summary: "Physical devices without a current mapping (a paused mapping is current)",
      description: "Also answered without the trailing slash (IoTa answered that with a 422).",
      tags,
      access: "read",
      query: listQuery,
      responses: { "200": json("Devices, uid ascending.", z.array(physicalDeviceOutput)) },
      handler: async ({ db, query }) => {
        const devices = await queryPhysicalDevices(db, {
          ...deviceListQuery(query),
          ...(query.source_name !== undefined ? { source: query.source_name } : {}),
          unmapped: true,
        });
        return ok(devices.map((d) => physicalDeviceBody(d, query.include_properties)));
      },
    }),
    route({
      method: "get",
      path: "/physical/devices/",
      summary: "Physical devices, uid ascending",
      tags,
      access: "read",
      query: listQuery,
      responses: { "200": json("Devices.", z.array(physicalDeviceOutput)) },
      handler: async ({ db, query }) => {
        const devices = await queryPhysicalDevices(db, {
          ...deviceListQuery(query),
          ...(query.source_name !== undefined ? { source: query.source_name } : {}),
        });
        return ok(devices.map((d) => physicalDeviceBody(d, query.include_properties)));
      },
    }),
    route({
      method: "get",
      path: "/physical/devices/{uid}",
      summary: "One physical device",
      tags,
      access: "read",
      params: uidPath,
      responses: { "200": json("The device.", physicalDeviceOutput), "404": failure(NOT_FOUND) },
      handler: async ({ db, params }) => {
        const device = await getPhysicalDevice(db, params.uid);
        if (!device) {
          throw notFound(NOT_FOUND);
        }
        return ok(physicalDeviceBody(device));
      },
    }),
    route({
      method: "post",
      path: "/physical/devices/",
      summary: "Create a physical device",
      description: "`uid` is ignored. Answers 201 with the device and its URL in `Location`.",
      tags,
      access: "admin",
      body: physicalDeviceInput,
      responses: {
        "201": json("The device as stored.", physicalDeviceOutput),
        "400": failure("Unknown source_name."),
      },
      handler: async ({ db, body }) => {
        const { uid: _ignored, ...input } = body;
        const device = await createPhysicalDevice(db, input);
        return created(device.uid, physicalDeviceBody(device));
      },
    }),
    route({
      method: "patch",
      path: "/physical/devices/",
      summary: "Update a physical device given whole, with its uid (IoTa's form)",
      description:
        "Fields the body leaves out are left unchanged; `last_seen` never moves backwards.",
      tags,
      access: "admin",
      body: physicalDeviceInput,
      responses: {
        "200": json("The device as stored.", physicalDeviceOutput),
        "400": failure("Unknown source_name."),
        "404": failure(NOT_FOUND),
      },
      handler: async ({ db, body }) => {
        const { uid, ...patch } = body;
        if (uid === undefined || uid === null) {
          // IoTa looked the device up by its null uid and answered 404; its clients expect that.
          throw notFound(NOT_FOUND);
        }
        return ok(physicalDeviceBody(await applyUpdate(db, uid, patch)));
      },
    }),
    route({
      method: "patch",
      path: "/physical/devices/{uid}",
      summary: "Change some fields of a physical device (extension)",
      description:
        "Only the fields given change; `properties` and `source_ids` are replaced whole.",
      tags,
      access: "admin",
      params: uidPath,
      body: physicalDevicePatchInput,
      responses: {
        "200": json("The device as stored.", physicalDeviceOutput),
        "400": failure("Unknown source_name."),
        "404": failure(NOT_FOUND),
      },
      handler: async ({ db, params, body }) => {
        return ok(physicalDeviceBody(await applyUpdate(db, params.uid, body)));
      },
    }),
    route({
      method: "delete",
      path: "/physical/devices/{uid}",
      summary: "Delete a physical device",
      tags,
      access: "admin",
      params: uidPath,
      responses: {
        "204": noContentResponse,
        "404": failure("Not Found"),
        "409": failure("The device still has mappings, notes or messages."),
      },
      handler: async ({ db, params }) => {
        if (!(await deletePhysicalDevice(db, params.uid))) {
          throw notFound();
        }
        return NO_CONTENT;
      },
    }),
  ];
}
