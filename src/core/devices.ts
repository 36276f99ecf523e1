import { z } from "zod";

import { jsonObjectInput, text } from "./storable.js";
import { readDateTimeInput } from "./datetime-input.js";

/**
 * The registry's domain objects, with IoTa's JSON field names in IoTa's order (clients compare
 * them field for field). Repositories map database rows to these explicitly; nothing else
 * about a row leaks out. Datetimes are ISO-8601 strings at PostgreSQL's microsecond precision.
 */

/** A device position in GDA94 degrees. A device without one has `location: null`. */
export interface Location {
  lat: number;
  long: number;
}

export type JsonObject = Record<string, unknown>;

export interface PhysicalDevice {
  uid: number;
  name: string;
  location: Location | null;
  last_seen: string | null;
  properties: JsonObject;
  source_name: string;
  source_ids: JsonObject;
}

export interface LogicalDevice {
  uid: number;
  name: string;
  location: Location | null;
  last_seen: string | null;
  properties: JsonObject;
}

/** A physical → logical link. `end_time: null` means current; `is_active: false` means paused. */
export interface Mapping {
  pd: PhysicalDevice;
  ld: LogicalDevice;
  start_time: string;
  end_time: string | null;
  is_active: boolean;
}

export interface NewLogicalDevice {
  name: string;
  location?: Location | null;
  last_seen?: string | null;
  properties?: JsonObject;
}

export interface NewPhysicalDevice extends NewLogicalDevice {
  source_name: string;
  source_ids?: JsonObject;
}

/** Fields to change; absent fields are left alone, JSON fields are replaced whole (as IoTa does). */
export type LogicalDevicePatch = Partial<NewLogicalDevice>;
export type PhysicalDevicePatch = Partial<NewPhysicalDevice>;

/**
 * Accepts IoTa's location shapes. IoTa emits `{"lat": null, "long": null}` for "no location" and
 * stores NULL when either coordinate is null, so that shape (fed back by a client) means null.
 */
export const locationInput = z
  .object({
    lat: z.number().min(-90).max(90).nullish(),
    long: z.number().min(-180).max(180).nullish(),
  })
  .nullable()
  .transform((v): Location | null =>
    v && typeof v.lat === "number" && typeof v.long === "number"
      ? { lat: v.lat, long: v.long }
      : null,
  );

/**
 * A datetime given by a user (`last_seen`): ISO-8601 with an offset, without one (the server's
 * zone), or a Unix time in seconds or milliseconds, as IoTa's pydantic read it. The result is
 * ISO-8601 with an offset.
 */
export const dateTimeInput = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    const iso = readDateTimeInput(v);
    if (iso === undefined) {
      ctx.addIssue({
        code: "custom",
        message: "must be an ISO-8601 date-time or a Unix time in seconds or milliseconds",
      });
      return z.NEVER;
    }
    return iso;
  })
  .meta({
    override: {
      anyOf: [
        { type: "string", format: "date-time" },
        { type: "number", description: "Unix time: seconds, or milliseconds above 2e10" },
      ],
    },
  });

const logicalFields = {
  name: text.min(1, "must not be empty"),
  location: locationInput.optional(),
  last_seen: dateTimeInput.nullable().optional(),
  properties: jsonObjectInput.optional(),
};

/** Validates a logical device given by a user; unknown keys (including `uid`) are dropped. */
export const newLogicalDeviceSchema = z.object(logicalFields);
/** Validates a partial logical device: only the fields given are changed. */
export const logicalDevicePatchSchema = z.object(logicalFields).partial();

const physicalFields = {
  ...logicalFields,
  source_name: text.min(1, "must not be empty"),
  source_ids: jsonObjectInput.optional(),
};

/** Validates a physical device given by a user; unknown keys (including `uid`) are dropped. */
export const newPhysicalDeviceSchema = z.object(physicalFields);
/** Validates a partial physical device: only the fields given are changed. */
export const physicalDevicePatchSchema = z.object(physicalFields).partial();
