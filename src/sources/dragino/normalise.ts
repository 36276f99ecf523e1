import { PermanentError } from "../../core/errors.js";
import { readTimestamp, requireTimestamp, type Timestamp } from "../../core/timestamps.js";
import { pythonIsoformat, reformatIso } from "../../mqtt/iso-time.js";
import { derivedCorrelationId } from "../../mqtt/payload.js";
import type { DropNote, MqttArrival, MqttNormalisation } from "../mqtt-source.js";
import { leftOut } from "../notes.js";
import type { Normalised } from "../pipeline.js";
import { decumulate, DRAGINO_MODELS, type DraginoModel } from "./models.js";

/**
 * IoTa's Dragino_JSON rules (reference §4.3), pure. An uplink carries the device's own values
 * (one message at `time`) and a buffer of up to 32 records (`"1"` newest … `"32"` oldest, each
 * an array ending with its timestamp), one message per record. Fixes: an unknown Model is
 * dead-lettered, records from an unsynchronised clock (year ≤ 1970) are left out with a note,
 * counters that wrap at their limit are de-accumulated through it, and each record's message has
 * a correlation id derived from the device and the record's time, so the same record re-sent in
 * the next 31 uplinks yields the same msg_key and is stored and delivered once.
 */

type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export interface DraginoPoint {
  readonly name: string;
  readonly value: unknown;
}

/** One message's worth of points: the uplink's own (system) or one buffered record's. */
export interface DraginoGroup {
  readonly timestamp: string;
  /** Microseconds since the epoch, for comparisons and the record's correlation id. */
  readonly epochMicros: bigint;
  readonly record: boolean;
  readonly timeseries: DraginoPoint[];
}

/** The buffer holds at most 32 records; `"32"` is the oldest. */
const BUFFER_SIZE = 32;

/** Device clocks that have not synchronised yet report 1970. */
const plausible = (year: number): boolean => year > 1970;

function messageTime(msg: JsonObject): Timestamp {
  return requireTimestamp("time", msg.time);
}

/**
 * IoTa's `process_data`: the system group first, then one group per usable record, oldest
 * first; records that only seed a counter and yield no point make no group. `msg.time` must
 * already be known valid (see {@link normaliseDragino}).
 */
export function processDraginoData(
  msg: JsonObject,
  model: DraginoModel,
): { groups: DraginoGroup[]; notes: DropNote[] } {
  const notes: DropNote[] = [];
  const time = messageTime(msg);
  const system: DraginoGroup = {
    timestamp: reformatIso(time),
    epochMicros: time.epochMicros,
    record: false,
    timeseries: [],
  };
  for (const name of model.systemVars) {
    if (name in msg) {
      system.timeseries.push({ name, value: msg[name] });
    } else {
      notes.push({ reason: "missing_field", detail: `${name} is missing` });
    }
  }

  const records: DraginoGroup[] = [];
  const previous = new Map<string, number>();
  for (let n = BUFFER_SIZE; n >= 1; n--) {
    const record = msg[String(n)];
    if (record === undefined) {
      continue;
    }
    const last = Array.isArray(record) ? record[record.length - 1] : undefined;
    const read = readTimestamp(last);
    const at = read.ok ? read.value : undefined;
    if (!Array.isArray(record) || at === undefined) {
      notes.push({ reason: "invalid_record", detail: `record ${n} does not end with a timestamp` });
      continue;
    }
    if (!plausible(at.year)) {
      notes.push({
        reason: "unsynchronised_clock",
        detail: `record ${n} is dated ${String(last)}`,
      });
      continue;
    }
    const group: DraginoGroup = {
      timestamp: reformatIso(at),
      epochMicros: at.epochMicros,
      record: true,
      timeseries: [],
    };
    for (const field of model.fields) {
      const value = field.index < record.length - 1 ? record[field.index] : undefined;
      if (value === undefined) {
        notes.push({ reason: "missing_value", detail: `record ${n} has no ${field.name}` });
        continue;
      }
      if (!field.accumulating) {
        group.timeseries.push({ name: field.name, value });
        continue;
      }
      if (typeof value !== "number") {
        notes.push({
          reason: "not_numeric",
          detail: `record ${n} ${field.name}: ${JSON.stringify(value)}`,
        });
        previous.delete(field.name);
        continue;
      }
      const prev = previous.get(field.name);
      previous.set(field.name, value);
      if (prev !== undefined) {
        group.timeseries.push({
          name: field.name,
          value: decumulate(value, prev, field.accumulating.limit),
        });
      }
    }
    if (group.timeseries.length > 0) {
      records.push(group);
    }
  }

  const newest = msg["1"];
  for (const field of model.fields) {
    const systemVar = field.accumulating?.systemVar;
    if (systemVar === undefined || !Array.isArray(newest)) {
      continue;
    }
    const cur = msg[systemVar];
    const prev: unknown = newest[field.index];
    if (typeof cur === "number" && typeof prev === "number") {
      system.timeseries.push({
        name: field.name,
        value: decumulate(cur, prev, field.accumulating?.limit),
      });
    } else {
      notes.push({ reason: "not_numeric", detail: `${systemVar} or record 1 ${field.name}` });
    }
  }

  if (!plausible(time.year)) {
    notes.push({ reason: "unsynchronised_clock", detail: `time is ${String(msg.time)}` });
    return { groups: records, notes };
  }
  return { groups: system.timeseries.length > 0 ? [system, ...records] : records, notes };
}

function imeiOf(msg: JsonObject): string | number {
  const imei = msg.IMEI;
  if ((typeof imei === "string" && imei.trim() !== "") || Number.isSafeInteger(imei)) {
    return imei as string | number;
  }
  throw new PermanentError("missing_imei", "IMEI is missing or empty");
}

/** The uplink's time when the device clock is set: its device time for `raw_messages.ts`. */
export function draginoRawTime(value: unknown): string | undefined {
  const read = readTimestamp(isObject(value) ? value.time : undefined);
  return read.ok && plausible(read.value.year) ? reformatIso(read.value) : undefined;
}

/** One uplink → one device (found by `source_ids.IMEI`) and one message per group. */
export function normaliseDragino(value: unknown, arrival: MqttArrival): MqttNormalisation {
  if (!isObject(value)) {
    throw new PermanentError("invalid_payload", "the payload is not a JSON object");
  }
  const imei = imeiOf(value);
  messageTime(value);
  const modelName = value.Model;
  const model =
    typeof modelName === "string" && Object.hasOwn(DRAGINO_MODELS, modelName)
      ? DRAGINO_MODELS[modelName]
      : undefined;
  if (!model) {
    throw new PermanentError(
      "unknown_model",
      `Model ${JSON.stringify(modelName)} is not one of ${Object.keys(DRAGINO_MODELS).join(", ")}`,
    );
  }
  const { groups, notes } = processDraginoData(value, model);
  if (groups.length === 0) {
    // Nothing to publish (an unsynchronised clock, no usable record): dead-lettered, not silent.
    throw new PermanentError("no_readings", `the uplink holds no readings${leftOut(notes)}`);
  }
  const cid = arrival.correlationId;
  const newest = groups.reduce<DraginoGroup | undefined>(
    (a, g) => (a === undefined || g.epochMicros > a.epochMicros ? g : a),
    undefined,
  );
  const device: Normalised["device"] = {
    lookup: { IMEI: imei },
    create: {
      name: `dragino_${imei}`,
      location: null,
      source_ids: { IMEI: imei },
      properties: { dragino_json: value, creation_correlation_id: cid, last_msg: value },
    },
    sighting: { lastSeen: newest?.timestamp ?? arrival.arrivedAt, lastMsg: value },
  };
  return {
    devices: [
      {
        device,
        messages: (pUid) =>
          groups.map((g) => ({
            broker_correlation_id: g.record
              ? derivedCorrelationId("dragino_json", String(imei), pythonIsoformat(g.epochMicros))
              : cid,
            p_uid: pUid,
            timestamp: g.timestamp,
            timeseries: g.timeseries,
          })),
      },
    ],
    notes,
  };
}
