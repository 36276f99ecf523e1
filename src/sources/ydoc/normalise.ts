import { PermanentError } from "../../core/errors.js";
import { parseInstant } from "../../core/time.js";
import { pythonFloat } from "../../mqtt/python-values.js";
import type { DropNote, MqttArrival, MqttNormalisation } from "../mqtt-source.js";
import { leftOut } from "../notes.js";
import type { Normalised } from "../pipeline.js";
import { parseYdocTs } from "./values.js";

/**
 * IoTa's YDOC rules (reference §4.1), pure, with the fixes listed in doc/sources-mqtt.md: each
 * object's own `$ts` stamps all of its values wherever the key sits, the sensor prefix is
 * matched case-insensitively and stripped whole (`s10`, not two characters), NaN/Infinity are
 * left out with a note, and nothing is skipped without one.
 */

/** One point, in IoTa's key order for YDOC: timestamp, name, value. */
export interface YdocDot {
  readonly timestamp: string;
  readonly name: string;
  readonly value: number;
}

/** A device a YDOC message speaks for: the logger itself, or one sensor (`s1`, `s2`, …). */
export interface YdocDevice {
  readonly id: string;
  readonly name: string;
  readonly dots: YdocDot[];
}

type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Python's `re.sub(r"\W", "_", name)`. */
const wordsOnly = (name: string): string => name.replace(/[^\p{L}\p{N}_]/gu, "_");

function serialOf(device: unknown): string {
  const sn = isObject(device) ? device.sn : undefined;
  if (typeof sn === "number" && Number.isSafeInteger(sn)) {
    return String(sn);
  }
  if (typeof sn === "string" && sn.trim() !== "") {
    return sn.trim();
  }
  throw new PermanentError("invalid_payload", "device.sn is missing or not a serial number");
}

function label(deviceName: string, suffix: string): string {
  return deviceName === "" ? `(${suffix})` : `${deviceName} (${suffix})`;
}

/**
 * IoTa's `process_message`: the devices of one message (first seen first) with their points, and
 * notes on everything left out. Throws PermanentError for a shape it cannot read.
 */
export function processYdocMessage(msg: JsonObject): { devices: YdocDevice[]; notes: DropNote[] } {
  if (!Array.isArray(msg.data)) {
    throw new PermanentError("invalid_payload", "data is not an array");
  }
  if (!Array.isArray(msg.channels)) {
    throw new PermanentError("invalid_payload", "channels is missing or not an array");
  }
  const sn = serialOf(msg.device);
  const rawName = isObject(msg.device) ? msg.device.name : undefined;
  const deviceName = typeof rawName === "string" ? rawName.trim() : "";
  const channels = new Map<string, string>();
  for (const ch of msg.channels) {
    if (isObject(ch) && typeof ch.code === "string") {
      channels.set(ch.code.toLowerCase(), typeof ch.name === "string" ? ch.name : ch.code);
    }
  }

  const devices = new Map<string, YdocDevice>();
  const notes: DropNote[] = [];
  const device = (id: string, name: string): YdocDevice => {
    let d = devices.get(id);
    if (!d) {
      d = { id, name, dots: [] };
      devices.set(id, d);
    }
    return d;
  };

  let current: string | undefined;
  for (const [i, entry] of msg.data.entries()) {
    if (!isObject(entry)) {
      notes.push({ reason: "invalid_record", detail: `data[${i}] is not an object` });
      continue;
    }
    const keys = Object.keys(entry);
    const tsKey = keys.find((k) => k.toLowerCase() === "$ts");
    if (tsKey !== undefined) {
      current = parseYdocTs(entry[tsKey]);
      if (current === undefined) {
        throw new PermanentError("invalid_timestamp", `data[${i}].$ts is not a YYMMDDhhmmss time`);
      }
    }
    for (const key of keys) {
      const k = key.toLowerCase();
      if (k === "$ts") {
        continue;
      }
      if (k === "$msg") {
        break;
      }
      const channelName = channels.get(k);
      const where = `data[${i}].${key}`;
      if (channelName === undefined) {
        notes.push({ reason: "unknown_channel", detail: `${where}: no channel has this code` });
        continue;
      }
      if (current === undefined) {
        notes.push({ reason: "missing_timestamp", detail: `${where}: no $ts in or before it` });
        continue;
      }
      const value = pythonFloat(entry[key]);
      if (value === undefined) {
        notes.push({ reason: "not_numeric", detail: `${where}: ${JSON.stringify(entry[key])}` });
        continue;
      }
      if (!Number.isFinite(value)) {
        notes.push({ reason: "non_finite_value", detail: `${where}: ${String(entry[key])}` });
        continue;
      }
      const prefix = /^([a-z]\d+)[a-z]\d+/.exec(k)?.[1];
      if (prefix === undefined) {
        const d = device(`ydoc-${sn}`, label(deviceName, `ydoc-${sn}`));
        d.dots.push({ timestamp: current, name: wordsOnly(channelName), value });
        continue;
      }
      const stripped = channelName.toLowerCase().startsWith(prefix)
        ? channelName.slice(prefix.length)
        : "";
      const d = device(`${sn}-${prefix}`, label(deviceName, prefix));
      d.dots.push({ timestamp: current, name: stripped || wordsOnly(channelName), value });
    }
  }
  return { devices: [...devices.values()].filter((d) => d.dots.length > 0), notes };
}

function instant(ts: string): number {
  return parseInstant(ts) ?? 0;
}

/** The newest `$ts` of a message: its device time for `raw_messages.ts`. */
export function ydocRawTime(value: unknown): string | undefined {
  if (!isObject(value) || !Array.isArray(value.data)) {
    return undefined;
  }
  let newest: string | undefined;
  for (const entry of value.data) {
    const key = isObject(entry)
      ? Object.keys(entry).find((k) => k.toLowerCase() === "$ts")
      : undefined;
    const ts = key === undefined ? undefined : parseYdocTs((entry as JsonObject)[key]);
    if (ts !== undefined && (newest === undefined || instant(ts) > instant(newest))) {
      newest = ts;
    }
  }
  return newest;
}

/**
 * One YDOC message → one pipeline entry per derived device. Each device is found by
 * `source_ids.id`; its message is stamped with its earliest point, and every point keeps its
 * own timestamp. A message without `data` is kept raw only (with a note), as IoTa does; one whose
 * `data` yields no reading (`[]`) is dead-lettered `no_readings`.
 */
export function normaliseYdoc(value: unknown, arrival: MqttArrival): MqttNormalisation {
  if (!isObject(value)) {
    throw new PermanentError("invalid_payload", "the payload is not a JSON object");
  }
  if (!("data" in value)) {
    return { devices: [], notes: [{ reason: "no_data", detail: "the message has no data" }] };
  }
  const { devices, notes } = processYdocMessage(value);
  if (devices.length === 0) {
    // `data: []`, or nothing usable in it: dead-lettered, never kept raw in silence.
    throw new PermanentError("no_readings", `data holds no readings${leftOut(notes)}`);
  }
  const cid = arrival.correlationId;
  const normalised = devices.map((d): Normalised => {
    const times = d.dots.map((dot) => dot.timestamp);
    const earliest = times.reduce((a, b) => (instant(b) < instant(a) ? b : a));
    const latest = times.reduce((a, b) => (instant(b) > instant(a) ? b : a));
    return {
      device: {
        lookup: { id: d.id },
        create: {
          name: d.name,
          location: null,
          source_ids: { id: d.id },
          properties: { ydoc: value, creation_correlation_id: cid, last_msg: value },
        },
        sighting: { lastSeen: latest, lastMsg: value },
      },
      messages: (pUid) => [
        { broker_correlation_id: cid, p_uid: pUid, timestamp: earliest, timeseries: d.dots },
      ],
    };
  });
  return { devices: normalised, notes };
}
