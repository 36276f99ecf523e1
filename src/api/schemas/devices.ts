import { z } from "zod";

import { locationInput as coreLocationInput, type JsonObject } from "../../core/devices.js";
import { instantParam } from "./params.js";

/**
 * Request and response bodies of devices and notes, with IoTa's field names. Request schemas are
 * strict: an unknown key is a 422 naming it (IoTa ignored it on create and failed on update).
 */

const MAX_JSON_DEPTH = 64;

/** Why a JSON value cannot be stored, or undefined: NUL, an infinite number, too deep nesting. */
function jsonProblem(value: unknown, depth = 0): string | undefined {
  if (depth > MAX_JSON_DEPTH) {
    return `is nested more than ${MAX_JSON_DEPTH} levels deep`;
  }
  if (typeof value === "string") {
    return value.includes("\u0000") ? "contains a NUL character" : undefined;
  }
  if (typeof value === "number") {
    // JSON.parse reads 1e400 as Infinity, which would be stored as null without a word.
    return Number.isFinite(value) ? undefined : "contains a number too large to store";
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = jsonProblem(item, depth + 1);
      if (problem) {
        return problem;
      }
    }
    return undefined;
  }
  if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      const problem = key.includes("\u0000")
        ? "contains a NUL character"
        : jsonProblem(item, depth + 1);
      if (problem) {
        return problem;
      }
    }
  }
  return undefined;
}

/** A JSON object that PostgreSQL's jsonb can hold. */
export const jsonObjectInput = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  const problem = jsonProblem(value);
  if (problem) {
    ctx.addIssue({ code: "custom", message: problem });
  }
}) as z.ZodType<JsonObject, Record<string, unknown>>;

/** Text that PostgreSQL's `text` can hold. */
export const text = z.string().refine((v) => !v.includes("\u0000"), "contains a NUL character");

/** A date-time in a body (the server's zone when it has no offset, as IoTa). */
export const instantInput = instantParam;

/** A uid in a body: a PostgreSQL integer. */
export const uidInput = z.number().int().min(-2_147_483_648).max(2_147_483_647);

/**
 * IoTa's Location (the same schema the CLI and repositories use). `null`, and IoTa's own
 * `{"lat": null, "long": null}` for "no location", both mean none; a location needs both.
 */
export const locationInput = coreLocationInput.meta({ id: "LocationInput" });

const logicalFields = {
  uid: uidInput.nullish().meta({ description: "Ignored on create." }),
  name: text.min(1, "must not be empty"),
  location: locationInput.optional(),
  last_seen: instantInput.nullish(),
  properties: jsonObjectInput.optional(),
};

const physicalFields = {
  ...logicalFields,
  source_name: text.min(1, "must not be empty"),
  source_ids: jsonObjectInput.optional(),
};

/** POST /logical/devices/ (and IoTa's full-object PATCH, where uid is required). */
export const logicalDeviceInput = z.strictObject(logicalFields).meta({ id: "LogicalDeviceInput" });
export const physicalDeviceInput = z
  .strictObject(physicalFields)
  .meta({ id: "PhysicalDeviceInput" });

/** PATCH /…/devices/{uid} (extension): only the fields given change. */
export const logicalDevicePatchInput = z
  .strictObject(logicalFields)
  .omit({ uid: true })
  .partial()
  .meta({ id: "LogicalDevicePatch" });
export const physicalDevicePatchInput = z
  .strictObject(physicalFields)
  .omit({ uid: true })
  .partial()
  .meta({ id: "PhysicalDevicePatch" });

export const locationOutput = z
  .object({ lat: z.number(), long: z.number() })
  .nullable()
  .meta({ id: "Location", description: "GDA94 degrees; null when the device has none." });

const dateTime = z.string().meta({ format: "date-time" });

const logicalOutputFields = {
  uid: z.number().int(),
  name: z.string(),
  location: locationOutput,
  last_seen: dateTime.nullable(),
  properties: z.record(z.string(), z.unknown()),
};

export const logicalDeviceOutput = z.object(logicalOutputFields).meta({ id: "LogicalDevice" });
export const physicalDeviceOutput = z
  .object({
    ...logicalOutputFields,
    source_name: z.string(),
    source_ids: z.record(z.string(), z.unknown()),
  })
  .meta({ id: "PhysicalDevice" });

/** IoTa's DeviceNote. POST uses only `note`; PATCH needs `uid` and `note` (`ts` optional). */
export const noteInput = z
  .strictObject({
    uid: uidInput.nullish(),
    ts: instantInput.nullish(),
    note: text,
  })
  .meta({ id: "DeviceNoteInput" });

export const noteOutput = z
  .object({ uid: z.number().int(), ts: dateTime, note: z.string() })
  .meta({ id: "DeviceNote" });
