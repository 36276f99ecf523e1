import { PermanentError } from "../../core/errors.js";
import { requireTimestamp } from "../../core/timestamps.js";
import type { DropNote, MqttArrival, MqttNormalisation } from "../mqtt-source.js";

/**
 * IoTa's Wombat rules (reference §4.2), pure. The logger already speaks the waist format: its
 * object is published as it came, with `broker_correlation_id` and `p_uid` added (or replaced in
 * place). Fixes: a timestamp without an offset is dead-lettered (`naive_timestamp`) instead of
 * being stored in the database session's time zone, and a stray `l_uid` from the device is
 * removed so it cannot pose as a mapping.
 */

type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The message's `timestamp`, verbatim, when it is an instant with an offset (core/timestamps.ts). */
export function wombatTimestamp(value: unknown): string {
  const ts = isObject(value) ? value.timestamp : undefined;
  requireTimestamp("timestamp", ts);
  return ts as string;
}

/** The device time for `raw_messages.ts`, when the message has a usable one. */
export function wombatRawTime(value: unknown): string | undefined {
  try {
    return wombatTimestamp(value);
  } catch {
    return undefined;
  }
}

function serialOf(sourceIds: unknown): string | number {
  const sn = isObject(sourceIds) ? sourceIds.serial_no : undefined;
  if (
    (typeof sn === "string" && sn.trim() !== "") ||
    (typeof sn === "number" && Number.isFinite(sn))
  ) {
    return sn;
  }
  throw new PermanentError("missing_serial_no", "source_ids.serial_no is missing or empty");
}

/**
 * One Wombat message → one device (found by `source_ids.serial_no` only, so a changed SDI-12
 * list is the same logger) and its message, the device's own keys in received order.
 */
export function normaliseWombat(value: unknown, arrival: MqttArrival): MqttNormalisation {
  if (!isObject(value)) {
    throw new PermanentError("invalid_payload", "the payload is not a JSON object");
  }
  const timestamp = wombatTimestamp(value);
  const serial = serialOf(value.source_ids);
  const sourceIds = value.source_ids as JsonObject;
  const notes: DropNote[] = [];
  const { l_uid: stray, ...passed } = value;
  if (stray !== undefined) {
    notes.push({
      reason: "stray_l_uid",
      detail: `l_uid ${JSON.stringify(stray)} sent by the device was removed`,
    });
  }
  const cid = arrival.correlationId;
  return {
    devices: [
      {
        device: {
          lookup: { serial_no: serial },
          create: {
            name: `Wombat-${serial}`,
            location: null,
            source_ids: sourceIds,
            properties: { creation_correlation_id: cid, last_msg: value },
          },
          sighting: { lastSeen: timestamp, sourceIds, lastMsg: value },
        },
        messages: (pUid) => {
          const message: JsonObject = { ...passed };
          message.broker_correlation_id = cid;
          message.p_uid = pUid;
          return [message];
        },
      },
    ],
    notes,
  };
}
