import { z } from "zod";

import { instantInput, logicalDeviceOutput, physicalDeviceOutput, uidInput } from "./devices.js";

/** Bodies of the mapping endpoints, with IoTa's field names. */

/** A device given as its uid, or (IoTa's form) as an object carrying its uid. */
function deviceRef(what: string) {
  return z
    .union([uidInput, z.looseObject({ uid: uidInput })])
    .transform((v) => (typeof v === "number" ? v : v.uid))
    .meta({
      description: `The ${what} device: its uid, or a device object with its uid (other fields are ignored).`,
    });
}

/** POST /mappings/ (IoTa's PhysicalToLogicalMapping). */
export const mappingInput = z
  .object({
    pd: deviceRef("physical"),
    ld: deviceRef("logical"),
    start_time: instantInput
      .optional()
      .meta({ description: "When the mapping starts. Default now (IoTa required it)." }),
    end_time: instantInput.nullish().meta({ description: "Accepted and ignored, as by IoTa." }),
    is_active: z.boolean().optional().meta({ description: "Accepted and ignored, as by IoTa." }),
  })
  .meta({ id: "MappingInput" });

const dateTime = z.string().meta({ format: "date-time" });

export const mappingOutput = z
  .object({
    pd: physicalDeviceOutput,
    ld: logicalDeviceOutput,
    start_time: dateTime,
    end_time: dateTime.nullable(),
    is_active: z.boolean(),
  })
  .meta({ id: "Mapping" });

export const mappingUidsOutput = z
  .object({
    pd: z.number().int(),
    ld: z.number().int(),
    start_time: dateTime,
    end_time: dateTime.nullable(),
    is_active: z.boolean(),
  })
  .meta({ id: "MappingUids" });
