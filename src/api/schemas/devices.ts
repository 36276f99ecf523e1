import { z } from "zod";

import { dateTimeInput, locationInput as coreLocationInput } from "../../core/devices.js";
import { jsonObjectInput, text } from "../../core/storable.js";
import { instantParam } from "./params.js";

export { jsonObjectInput, text };

/**
 * Request and response bodies of devices and notes, with IoTa's field names. Request schemas
 * drop keys they do not know, as IoTa's pydantic models did (an IoTa client sending one field
 * more keeps working); the API logs the names it ignored.
 */

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
  // IoTa's pydantic also read a Unix time here (seconds, or milliseconds above 2e10).
  last_seen: dateTimeInput.nullish(),
  properties: jsonObjectInput.optional(),
};

const physicalFields = {
  ...logicalFields,
  source_name: text.min(1, "must not be empty"),
  source_ids: jsonObjectInput.optional(),
};

/** POST /logical/devices/ (and IoTa's full-object PATCH, where uid is required). */
export const logicalDeviceInput = z.object(logicalFields).meta({ id: "LogicalDeviceInput" });
export const physicalDeviceInput = z.object(physicalFields).meta({ id: "PhysicalDeviceInput" });

/** PATCH /…/devices/{uid} (extension): only the fields given change. */
export const logicalDevicePatchInput = z
  .object(logicalFields)
  .omit({ uid: true })
  .partial()
  .meta({ id: "LogicalDevicePatch" });
export const physicalDevicePatchInput = z
  .object(physicalFields)
  .omit({ uid: true })
  .partial()
  .meta({ id: "PhysicalDevicePatch" });

export const locationOutput = z
  .object({ lat: z.number().nullable(), long: z.number().nullable() })
  .meta({
    id: "Location",
    description: 'GDA94 degrees; {"lat": null, "long": null} when the device has none (as IoTa).',
  });

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
  .object({
    uid: uidInput.nullish(),
    ts: instantInput.nullish(),
    note: text,
  })
  .meta({ id: "DeviceNoteInput" });

export const noteOutput = z
  .object({ uid: z.number().int(), ts: dateTime, note: z.string() })
  .meta({ id: "DeviceNote" });
