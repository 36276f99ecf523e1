import type { JsonObject, LogicalDevice, PhysicalDevice } from "../../core/devices.js";

/**
 * The columns of a device and the mapping from a row to the domain object, as plain SQL text
 * and plain functions: the kysely repositories build their queries on them, and the CLI's
 * read-only device lookups (device-reads.ts) run them through pg alone, so a `broker pd get`
 * does not load kysely. Aliases and prefixes are constants in this code, never input.
 */

export type Row = Record<string, unknown>;

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/**
 * The columns every device has, read through table alias `alias` and named `${prefix}column`,
 * so one query can return a physical and a logical device side by side.
 */
export function deviceColumnsText(alias: string, prefix = ""): string {
  const col = (name: string) => `${ident(alias)}.${ident(name)}`;
  const as = (name: string) => ident(`${prefix}${name}`);
  return [
    `${col("uid")} as ${as("uid")}`,
    `${col("name")} as ${as("name")}`,
    `ST_Y(${col("location")}) as ${as("lat")}`,
    `ST_X(${col("location")}) as ${as("long")}`,
    `${col("last_seen")} as ${as("last_seen")}`,
    `${col("properties")} as ${as("properties")}`,
  ].join(", ");
}

/** {@link deviceColumnsText} plus a physical device's `source_name` and `source_ids`. */
export function physicalDeviceColumnsText(alias: string, prefix = ""): string {
  return [
    deviceColumnsText(alias, prefix),
    `${ident(alias)}."source_name" as ${ident(`${prefix}source_name`)}`,
    `${ident(alias)}."source_ids" as ${ident(`${prefix}source_ids`)}`,
  ].join(", ");
}

/**
 * A logical device from a row selected with {@link deviceColumnsText}. A missing location is
 * null here; src/core/device-json.ts writes it out as IoTa's `{"lat": null, "long": null}`.
 */
export function logicalDeviceFromRow(row: Row, prefix = ""): LogicalDevice {
  const lat = row[`${prefix}lat`];
  const long = row[`${prefix}long`];
  return {
    uid: row[`${prefix}uid`] as number,
    name: row[`${prefix}name`] as string,
    location: typeof lat === "number" && typeof long === "number" ? { lat, long } : null,
    last_seen: (row[`${prefix}last_seen`] as string | null | undefined) ?? null,
    properties: (row[`${prefix}properties`] as JsonObject | null | undefined) ?? {},
  };
}

/** A physical device from a row selected with {@link physicalDeviceColumnsText}. */
export function physicalDeviceFromRow(row: Row, prefix = ""): PhysicalDevice {
  return {
    ...logicalDeviceFromRow(row, prefix),
    source_name: row[`${prefix}source_name`] as string,
    // IoTa's column is nullable but its model defaults to {}: callers always get an object.
    source_ids: (row[`${prefix}source_ids`] as JsonObject | null | undefined) ?? {},
  };
}
