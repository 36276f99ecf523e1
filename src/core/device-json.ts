import type { LogicalDevice, Mapping, PhysicalDevice } from "./devices.js";

/**
 * Devices and mappings as we write them out, in the API and the CLI alike: IoTa's fields in
 * IoTa's order, built field by field so the output has exactly IoTa's fields whatever the domain
 * objects gain later. A device without a location has IoTa's `{"lat": null, "long": null}` (IoTa
 * read it with ST_Y/ST_X of NULL), never `null`: IoTa's clients index into it. Pure.
 */

/** IoTa's Location as written: both coordinates, or both null. */
export interface LocationJson {
  lat: number | null;
  long: number | null;
}

/**
 * What becomes of `properties`: `all` writes them, `empty` writes `{}` (the API's
 * `include_properties=false`), `omit` leaves the key out (the CLI without `--properties`).
 */
export type PropertiesShape = "all" | "empty" | "omit";

export function locationJson(location: LogicalDevice["location"]): LocationJson {
  return location ? { lat: location.lat, long: location.long } : { lat: null, long: null };
}

function withProperties<T extends object>(
  head: T,
  properties: PhysicalDevice["properties"],
  shape: PropertiesShape,
): T & { properties?: PhysicalDevice["properties"] } {
  if (shape === "omit") {
    return head;
  }
  return { ...head, properties: shape === "all" ? properties : {} };
}

export function logicalDeviceJson(device: LogicalDevice, properties: PropertiesShape = "all") {
  return withProperties(
    {
      uid: device.uid,
      name: device.name,
      location: locationJson(device.location),
      last_seen: device.last_seen,
    },
    device.properties,
    properties,
  );
}

export function physicalDeviceJson(device: PhysicalDevice, properties: PropertiesShape = "all") {
  return {
    ...logicalDeviceJson(device, properties),
    source_name: device.source_name,
    source_ids: device.source_ids,
  };
}

/** A mapping with full device objects (IoTa's PhysicalToLogicalMapping). */
export function mappingJson(mapping: Mapping) {
  return {
    pd: physicalDeviceJson(mapping.pd),
    ld: logicalDeviceJson(mapping.ld),
    start_time: mapping.start_time,
    end_time: mapping.end_time,
    is_active: mapping.is_active,
  };
}

/** A mapping with device uids only (the API's `return_uids=true`). */
export function mappingUidsJson(mapping: Mapping) {
  return {
    pd: mapping.pd.uid,
    ld: mapping.ld.uid,
    start_time: mapping.start_time,
    end_time: mapping.end_time,
    is_active: mapping.is_active,
  };
}
