import { z } from "zod";

import type { LogicalDevice, LogicalDevicePatch } from "../../core/devices.js";
import type { Db } from "../../db/database.js";
import {
  createLogicalDevice,
  deleteLogicalDevice,
  getLogicalDevice,
  queryLogicalDevices,
  updateLogicalDevice,
} from "../../db/repositories/logical-devices.js";
import { notFound } from "../errors.js";
import { created, NO_CONTENT, ok, route, type Route } from "../route.js";
import { failure, json, noContentResponse } from "../schemas/common.js";
import {
  logicalDeviceInput,
  logicalDeviceOutput,
  logicalDevicePatchInput,
} from "../schemas/devices.js";
import { boolParam, deviceFilterQuery, uidPath } from "../schemas/params.js";
import { deviceListQuery } from "./lists.js";
import { logicalDeviceBody } from "./output.js";
import { changedFields } from "./physical-devices.js";

const tags = ["logical devices"];
const NOT_FOUND = "Logical device not found";

async function applyUpdate(db: Db, uid: number, patch: LogicalDevicePatch): Promise<LogicalDevice> {
  const current = await getLogicalDevice(db, uid);
  if (!current) {
    throw notFound(NOT_FOUND);
  }
  const updated = await updateLogicalDevice(db, uid, changedFields(current, patch));
  if (!updated) {
    throw notFound(NOT_FOUND);
  }
  return updated;
}

/** IoTa's logical device endpoints, plus partial update and list filters. */
export function logicalDeviceRoutes(): Route[] {
  return [
    route({
      method: "post",
      path: "/logical/devices/",
      summary: "Create a logical device",
      description: "`uid` is ignored. Answers 201 with the device and its URL in `Location`.",
      tags,
      access: "admin",
      body: logicalDeviceInput,
      responses: { "201": json("The device as stored.", logicalDeviceOutput) },
      handler: async ({ db, body }) => {
        const { uid: _ignored, ...input } = body;
        const device = await createLogicalDevice(db, input);
        return created(device.uid, logicalDeviceBody(device));
      },
    }),
    route({
      method: "get",
      path: "/logical/devices/",
      summary: "Logical devices, uid ascending",
      tags,
      access: "read",
      query: z.object({ include_properties: boolParam(true), ...deviceFilterQuery }),
      responses: { "200": json("Devices.", z.array(logicalDeviceOutput)) },
      handler: async ({ db, query }) => {
        const devices = await queryLogicalDevices(db, deviceListQuery(query));
        return ok(devices.map((d) => logicalDeviceBody(d, query.include_properties)));
      },
    }),
    route({
      method: "get",
      path: "/logical/devices/{uid}",
      summary: "One logical device",
      tags,
      access: "read",
      params: uidPath,
      responses: { "200": json("The device.", logicalDeviceOutput), "404": failure(NOT_FOUND) },
      handler: async ({ db, params }) => {
        const device = await getLogicalDevice(db, params.uid);
        if (!device) {
          throw notFound(NOT_FOUND);
        }
        return ok(logicalDeviceBody(device));
      },
    }),
    route({
      method: "patch",
      path: "/logical/devices/",
      summary: "Update a logical device given whole, with its uid (IoTa's form)",
      description:
        "Fields the body leaves out are left unchanged; `last_seen` never moves backwards.",
      tags,
      access: "admin",
      body: logicalDeviceInput,
      responses: {
        "200": json("The device as stored.", logicalDeviceOutput),
        "404": failure(NOT_FOUND),
      },
      handler: async ({ db, body }) => {
        const { uid, ...patch } = body;
        if (uid === undefined || uid === null) {
          // IoTa looked the device up by its null uid and answered 404; its clients expect that.
          throw notFound(NOT_FOUND);
        }
        return ok(logicalDeviceBody(await applyUpdate(db, uid, patch)));
      },
    }),
    route({
      method: "patch",
      path: "/logical/devices/{uid}",
      summary: "Change some fields of a logical device (extension)",
      description: "Only the fields given change; `properties` is replaced whole.",
      tags,
      access: "admin",
      params: uidPath,
      body: logicalDevicePatchInput,
      responses: {
        "200": json("The device as stored.", logicalDeviceOutput),
        "404": failure(NOT_FOUND),
      },
      handler: async ({ db, params, body }) => {
        return ok(logicalDeviceBody(await applyUpdate(db, params.uid, body)));
      },
    }),
    route({
      method: "delete",
      path: "/logical/devices/{uid}",
      summary: "Delete a logical device",
      tags,
      access: "admin",
      params: uidPath,
      responses: {
        "204": noContentResponse,
        "404": failure("Not Found"),
        "409": failure("The device still has mappings."),
      },
      handler: async ({ db, params }) => {
        if (!(await deleteLogicalDevice(db, params.uid))) {
          throw notFound();
        }
        return NO_CONTENT;
      },
    }),
  ];
}
