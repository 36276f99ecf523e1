import type { LogicalDevice, Mapping, PhysicalDevice } from "../../core/devices.js";

/**
 * Response bodies built field by field in IoTa's order, so a response has exactly IoTa's fields
 * whatever the domain objects gain later.
 */

export function logicalDeviceBody(device: LogicalDevice, includeProperties = true) {
  return {
    uid: device.uid,
    name: device.name,
    location: device.location && { lat: device.location.lat, long: device.location.long },
    last_seen: device.last_seen,
    properties: includeProperties ? device.properties : {},
  };
}

export function physicalDeviceBody(device: PhysicalDevice, includeProperties = true) {
  return {
    ...logicalDeviceBody(device, includeProperties),
    source_name: device.source_name,
    source_ids: device.source_ids,
  };
}

/** A mapping with full device objects (IoTa's PhysicalToLogicalMapping). */
export function mappingBody(mapping: Mapping) {
  return {
    pd: physicalDeviceBody(mapping.pd),
    ld: logicalDeviceBody(mapping.ld),
    start_time: mapping.start_time,
    end_time: mapping.end_time,
    is_active: mapping.is_active,
  };
}

/** A mapping with device uids only (`return_uids=true`). */
export function mappingUidsBody(mapping: Mapping) {
  return {
    pd: mapping.pd.uid,
    ld: mapping.ld.uid,
    start_time: mapping.start_time,
    end_time: mapping.end_time,
    is_active: mapping.is_active,
  };
}
