import type { JsonObject } from "../../core/devices.js";
import { PermanentError } from "../../core/errors.js";
import type { TimeseriesPoint } from "../../core/message.js";
import type { Progress } from "../pollers/progress.js";
import { rawBody, type Prepared } from "../pollers/prepared.js";
import { instantOf, withOffset, zuluSeconds } from "../pollers/times.js";

/** The station whose records IoTa read (AXISTECH_STATION_ID overrides it). */
export const DEFAULT_STATION_ID = "bb5d4f86-6eaa-494d-abcc-8f2e9b66b214";

/** How far back a poll asks when no device has progress, or the oldest progress is older. */
export const LOOKBACK_MS = 5 * 24 * 3600 * 1000;

/**
 * AxisTech weather columns and the SCMN ATM-41 names IoTa published them under (it imitated a
 * Wombat ATM-41 message). IoTa renamed the columns by their position in the vendor's JSON, after
 * dropping `wind_dir_var_avg` and `uv_index_avg`; this table pairs them by meaning, in the order
 * of IoTa's output names, which is also the order of the points.
 */
export const AXISTECH_COLUMNS: readonly (readonly [column: string, name: string])[] = [
  ["rainfall", "8_Precipitation"],
  ["temperature_avg", "8_AirTemperature"],
  ["wind_speed_avg", "8_WindSpeed"],
  ["wind_speed_max", "8_WindSpeed_max"],
  ["humidity_avg", "8_RH"],
  ["atmos_pressure_avg", "8_AirPressure"],
  ["deltat_avg", "8_DeltaT"],
  ["dewpoint_avg", "8_DewPoint"],
  ["solar_rad_avg", "8_Solar"],
  ["wind_dir_deg_avg", "8_WindDirection"],
  ["wind_speed_min", "8_WindSpeed_min"],
];

/** One weather record, checked. */
export interface AxisRecord {
  /** The station code as the vendor sent it (`source_ids.serial_no`). */
  readonly code: string | number;
  /** The code as text: the device's key in poller_state. */
  readonly key: string;
  /** Record time, `YYYY-MM-DDThh:mm:ssZ`. */
  readonly timestamp: string;
  readonly raw: JsonObject;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The records of a response (`data[<station id>].weather[]`). An empty `data` means no records
 * in the window; a `data` without the station means the wrong station or account, which is
 * PermanentError `unknown_station` (IoTa logged it and carried on).
 */
export function weatherRecords(json: unknown, stationId: string): unknown[] {
  if (!isObject(json) || !isObject(json.data)) {
    throw new PermanentError("invalid_response", "expected an object with a data object");
  }
  const stations = Object.keys(json.data);
  if (stations.length === 0) {
    return [];
  }
  const station = json.data[stationId];
  if (station === undefined) {
    throw new PermanentError(
      "unknown_station",
      `no station ${stationId} in the answer (it has ${stations.slice(0, 10).join(", ")}); set AXISTECH_STATION_ID`,
    );
  }
  if (!isObject(station) || !Array.isArray(station.weather ?? [])) {
    throw new PermanentError("invalid_response", `data.${stationId}.weather is not an array`);
  }
  return (station.weather as unknown[] | undefined) ?? [];
}

/** Checks one record's identity; PermanentError `invalid_record` when it has none. */
export function recordOf(value: unknown): AxisRecord {
  if (!isObject(value)) {
    throw new PermanentError("invalid_record", "a weather record is not a JSON object");
  }
  const code = value.code;
  if (!((typeof code === "string" && code.trim() !== "") || typeof code === "number")) {
    throw new PermanentError("invalid_record", `record code ${JSON.stringify(code)} is not a code`);
  }
  const time = typeof value.time === "string" ? withOffset(value.time) : undefined;
  if (time === undefined) {
    throw new PermanentError(
      "invalid_timestamp",
      `record time ${JSON.stringify(value.time)} is not an ISO-8601 date-time`,
    );
  }
  return { code, key: String(code), timestamp: zuluSeconds(instantOf(time)), raw: value };
}

/** A column value as a number; undefined when missing (IoTa's NaN); throws when not a number. */
function numberOf(column: string, value: unknown): number | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value === "number" && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === "string") {
    const text = value.trim();
    if (text === "" || /^[-+]?nan$/i.test(text)) {
      return undefined;
    }
    const n = Number(text);
    if (Number.isFinite(n)) {
      return n;
    }
  }
  throw new PermanentError("invalid_value", `${column} is ${JSON.stringify(value)}, not a number`);
}

/**
 * The window a poll asks for: from the oldest per-device progress, but never more than
 * {@link LOOKBACK_MS} back (IoTa's rule, so an offline station cannot grow the window forever).
 */
export function windowStart(progress: ReadonlyMap<string, Progress>, now: number): number {
  let oldest: number | undefined;
  for (const p of progress.values()) {
    if (p.lastTs !== null) {
      const at = instantOf(p.lastTs);
      oldest = oldest === undefined ? at : Math.min(oldest, at);
    }
  }
  return Math.max(now - LOOKBACK_MS, oldest ?? 0);
}

/**
 * IoTa's AxisTech rules for one record, pure: one message per record, `timestamp` the record
 * time in `Z` form, `source_ids` imitating a Wombat's SDI-12 ATM-41, points named by
 * {@link AXISTECH_COLUMNS}. Missing values are left out (IoTa produced NaN, which PostgreSQL
 * refused, killing the poller); a record with no value at all is kept raw only. Other columns are
 * kept in the raw record and not published. The device's `last_msg` is the message (an object;
 * IoTa stored it as a JSON string).
 */
export function prepareRecord(record: AxisRecord, correlationId: string): Prepared {
  const raw = rawBody(JSON.stringify(record.raw), record.raw);
  const timeseries: TimeseriesPoint[] = [];
  try {
    for (const [column, name] of AXISTECH_COLUMNS) {
      const value = numberOf(column, record.raw[column]);
      if (value !== undefined) {
        timeseries.push({ name, value });
      }
    }
  } catch (err) {
    return {
      newest: record.timestamp,
      raw,
      normalise: () => {
        throw err;
      },
    };
  }
  if (timeseries.length === 0) {
    return { newest: record.timestamp, raw, normalise: () => undefined };
  }
  const sourceIds = { serial_no: record.code, "sdi-12": [`813AXSTECH AWS   000${record.code}`] };
  const message = {
    timestamp: record.timestamp,
    source_ids: sourceIds,
    timeseries,
    broker_correlation_id: correlationId,
  };
  return {
    newest: record.timestamp,
    raw,
    normalise: () => ({
      device: {
        lookup: sourceIds,
        create: {
          name: record.key,
          location: null,
          source_ids: sourceIds,
          properties: { creation_correlation_id: correlationId, last_msg: message },
        },
        sighting: { lastSeen: record.timestamp, lastMsg: message },
      },
      messages: (pUid) => [{ ...message, p_uid: pUid }],
    }),
  };
}
