import type { UbidotsLogicalDevice, UbidotsPhysicalDevice } from "../../db/repositories/ubidots.js";

/**
 * The v2.0 PATCH IoTa sends once for a new device: the logical device's name; its location
 * (else the physical device's) as a manual fixed location; for a TTN device, the description
 * and the DPI QR-code uid (with the `_config` entry that makes Ubidots show it) from the device's
 * TTN metadata. Unlike IoTa, a device without any location gets no `_location_fixed` at all
 * (IoTa sent nulls).
 */
export function deviceMetadata(
  logical: UbidotsLogicalDevice,
  physical: UbidotsPhysicalDevice | undefined,
): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  const location = logical.location ?? physical?.location ?? null;
  if (location !== null) {
    properties._location_type = "manual";
    properties._location_fixed = { lat: location.lat, lng: location.long };
  }
  const patch: Record<string, unknown> = { name: logical.name, properties };
  if (physical?.sourceName === "ttn") {
    const ttn = physical.properties.ttn as Record<string, unknown> | undefined;
    const description = ttn?.description;
    if (typeof description === "string" && description !== "") {
      patch.description = description;
    }
    const attributes = ttn?.attributes as Record<string, unknown> | undefined;
    const uid = attributes?.uid;
    if (typeof uid === "string" && uid !== "") {
      properties._config = {
        "dpi-uid": {
          text: "DPI UID",
          type: "text",
          description: "The uid from the DPI QR code used to activate the device.",
        },
      };
      properties["dpi-uid"] = uid;
    }
  }
  return patch;
}
