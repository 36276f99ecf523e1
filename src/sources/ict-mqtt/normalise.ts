import { PermanentError } from "../../core/errors.js";
import { requireTimestamp } from "../../core/timestamps.js";
import { pythonIsoformat } from "../../mqtt/iso-time.js";
import { pythonFloat, pythonInt } from "../../mqtt/python-values.js";
import { lastTopicLevel } from "../../mqtt/settings.js";
import type { Location } from "../../core/devices.js";
import type { DropNote, MqttArrival, MqttNormalisation } from "../mqtt-source.js";
import { firstCsvRecord } from "./csv.js";
import type { IctConfig, IctLayout } from "./layouts.js";

/**
 * IoTa's ict_mqtt rules (reference §5), pure: a CSV row from an allowed logger, column 0 its
 * time, becomes one message with the readings its layout names. Fixes: a `Z` suffix is accepted;
 * unknown loggers and malformed payloads are dead-lettered with a reason (their raw text kept)
 * instead of dropped; NaN/Infinity readings are left out with a note. Kept: a time without an
 * offset is UTC (IoTa's rule).
 */

export interface IctReading {
  readonly name: string;
  readonly value: number;
}

/** The EagleIO-era device of the same logger, whose place a new ict_mqtt device takes. */
export interface LegacyDevice {
  readonly uid: number;
  readonly location: Location | null;
}

/** Column 0 as IoTa rewrites it: UTC, Python's `isoformat()`. A naive time is UTC. */
export function ictTimestamp(text: string): string {
  return pythonIsoformat(requireTimestamp("column 0 (time)", text.trim(), "utc").epochMicros, 0);
}

/** IoTa's translation of one CSV row (fields after column 0) by a layout. */
export function translateIctRow(
  fields: readonly string[],
  layout: IctLayout,
): { timeseries: IctReading[]; notes: DropNote[] } {
  const timeseries: IctReading[] = [];
  const notes: DropNote[] = [];
  for (const f of layout) {
    const text = fields[f.column];
    if (text === undefined) {
      notes.push({
        reason: "missing_column",
        detail: `${f.name}: the row has no column ${f.column}`,
      });
      continue;
    }
    const n = f.convert === "milli" ? pythonInt(text) : pythonFloat(text);
    if (n === undefined) {
      throw new PermanentError(
        "conversion_error",
        `column ${f.column} (${f.name}) ${JSON.stringify(text)} is not ${f.convert === "milli" ? "an integer" : "a number"}`,
      );
    }
    if (!Number.isFinite(n)) {
      notes.push({ reason: "non_finite_value", detail: `${f.name}: ${text}` });
      continue;
    }
    timeseries.push({ name: f.name, value: f.convert === "milli" ? n / 1000 : n });
  }
  return { timeseries, notes };
}

/** The row's time for `raw_messages.ts`, when it has a readable one. */
export function ictRawTime(text: string): string | undefined {
  try {
    const [first] = firstCsvRecord(text).fields;
    return first === undefined ? undefined : ictTimestamp(first);
  } catch {
    return undefined;
  }
}

/**
 * The normaliser for one configuration. The device is the logger named by the topic's last
 * level, found by IoTa's `source_ids` (`{"topic": "ict/data/<name>"}`) whatever filter is
 * subscribed; a new one takes the location of the EagleIO-era device of the same name.
 */
export function ictNormaliser(
  config: IctConfig,
  legacy: (name: string) => LegacyDevice | undefined,
): (text: string, arrival: MqttArrival) => MqttNormalisation {
  return (text, arrival) => {
    const name = lastTopicLevel(arrival.topic);
    const layout = config.devices.get(name);
    if (layout === undefined) {
      throw new PermanentError(
        "unknown_device",
        `${JSON.stringify(name)} (topic ${arrival.topic}) is not in the ICT allowlist`,
      );
    }
    const { fields, rest } = firstCsvRecord(text);
    if (fields.length === 0) {
      throw new PermanentError("malformed_csv", "the payload has no CSV record");
    }
    const timestamp = ictTimestamp(fields[0]!);
    if (layout === null) {
      throw new PermanentError("no_field_mapping", `No field mapping for ${name}.`);
    }
    const { timeseries, notes } = translateIctRow(fields, layout);
    if (rest.trim() !== "") {
      notes.push({ reason: "extra_records", detail: "only the first CSV record is read" });
    }
    if (timeseries.length === 0) {
      throw new PermanentError("no_readings", `the layout for ${name} yields no readings`);
    }
    const cid = arrival.correlationId;
    const topic = `ict/data/${name}`;
    const previous = legacy(name);
    const lastMsg = { timestamp, broker_correlation_id: cid, raw_msg: text };
    return {
      devices: [
        {
          device: {
            lookup: { topic },
            create: {
              name,
              location: previous?.location ?? null,
              source_ids: { topic },
              properties: {
                creation_correlation_id: cid,
                ...(previous ? { replaces_ict_eagleio_uid: previous.uid } : {}),
              },
            },
            sighting: { lastSeen: timestamp, lastMsg },
          },
          messages: (pUid) => [{ broker_correlation_id: cid, timestamp, timeseries, p_uid: pUid }],
        },
      ],
      notes,
    };
  };
}
