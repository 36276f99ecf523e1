import type { LogicalDevice, PhysicalDevice } from "../../core/devices.js";
import {
  logicalDeviceJson,
  mappingJson,
  mappingUidsJson,
  physicalDeviceJson,
} from "../../core/device-json.js";

/**
 * Response bodies: the shared output form (src/core/device-json.ts, IoTa's fields and order,
 * `{"lat": null, "long": null}` for no location). Without properties they are `{}`, as IoTa.
 */

export function logicalDeviceBody(device: LogicalDevice, includeProperties = true) {
  return logicalDeviceJson(device, includeProperties ? "all" : "empty");
}

export function physicalDeviceBody(device: PhysicalDevice, includeProperties = true) {
  return physicalDeviceJson(device, includeProperties ? "all" : "empty");
}

export { mappingJson as mappingBody, mappingUidsJson as mappingUidsBody };
