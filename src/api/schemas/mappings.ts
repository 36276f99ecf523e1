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

/** Reasons a message can be held for, and `unrecorded` for rows stored before reasons were kept. */
const holdReason = z
  .enum(["no_mapping", "paused", "future_timestamp", "past_timestamp", "unrecorded"])
  .meta({ id: "HoldReason" });

/** What is held for one physical device (GET /mappings/held/). */
export const heldOutput = z
  .object({
    puid: z.number().int(),
    count: z.number().int().meta({ description: "Held messages." }),
    oldest: dateTime.nullable().meta({ description: "Timestamp of the oldest held message." }),
    newest: dateTime.nullable().meta({ description: "Timestamp of the newest held message." }),
    reasons: z
      .record(z.string(), z.number().int())
      .meta({ description: "Held messages per reason." }),
    releasing: z.number().int().meta({
      description:
        "Messages claimed by a release that was interrupted; the next release of the device sends them.",
    }),
  })
  .meta({ id: "HeldMessages" });

/** POST /mappings/release/. */
export const releaseInput = z
  .strictObject({
    puid: uidInput.meta({ description: "The physical device whose held messages go." }),
    from: instantInput
      .optional()
      .meta({ description: "Only messages stamped at or after this instant." }),
    to: instantInput.optional().meta({ description: "Only messages stamped before this instant." }),
    reasons: z
      .array(holdReason)
      .min(1)
      .optional()
      .meta({
        description:
          "Only messages held for these reasons. Default no_mapping, paused and unrecorded: " +
          "messages held for their timestamp (future_timestamp, past_timestamp) go only when named.",
      }),
  })
  .meta({ id: "ReleaseInput" });

export const releaseOutput = z
  .object({
    puid: z.number().int(),
    release_id: z
      .uuid()
      .meta({ description: "As in the `x-broker-release` header of each message." }),
    released: z.number().int().meta({ description: "Messages sent and marked released." }),
    resumed: z.number().int().meta({
      description: "Of those, messages an interrupted release had claimed, sent again.",
    }),
    still_held: z.number().int().meta({
      description: "Messages of the selection still held: no mapping holds them, or it is paused.",
    }),
  })
  .meta({ id: "ReleaseSummary" });

/** POST /mappings/?release=true. */
export const mappingCreatedOutput = z
  .object({
    held_covered: z.number().int().meta({
      description: "Held messages of the physical device stamped within the new mapping.",
    }),
    release: releaseOutput,
  })
  .meta({ id: "MappingCreatedWithRelease" });
