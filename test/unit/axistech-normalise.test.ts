import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { PermanentError } from "../../src/core/errors.js";
import { parseMessage } from "../../src/core/message.js";
import {
  AXISTECH_COLUMNS,
  DEFAULT_STATION_ID,
  LOOKBACK_MS,
  prepareRecord,
  recordOf,
  weatherRecords,
  windowStart,
} from "../../src/sources/axistech/normalise.js";

const own = new URL("../fixtures/pollers/", import.meta.url);
const response = JSON.parse(readFileSync(new URL("axistech_weather.json", own), "utf8")) as Record<
  string,
  unknown
>;
const records = weatherRecords(response, DEFAULT_STATION_ID);
const cid = "5d7c0a8e-3b1f-4c2a-9e6d-8f0b1a2c3d4e";

describe("AxisTech response", () => {
  it("reads data[<station>].weather[]", () => {
    expect(records).toHaveLength(4);
    expect(weatherRecords({ data: {} }, DEFAULT_STATION_ID)).toEqual([]);
  });

  it("refuses an answer without the station, or of the wrong shape, with a reason", () => {
    expect(() => weatherRecords({ data: { other: { weather: [] } } }, DEFAULT_STATION_ID)).toThrow(
      expect.objectContaining({ reason: "unknown_station" }),
    );
    expect(() => weatherRecords([], DEFAULT_STATION_ID)).toThrow(PermanentError);
    expect(() =>
      weatherRecords({ data: { [DEFAULT_STATION_ID]: { weather: {} } } }, DEFAULT_STATION_ID),
    ).toThrow(expect.objectContaining({ reason: "invalid_response" }));
  });

  it("asks from the oldest station's progress, never more than five days back", () => {
    const now = Date.parse("2024-01-20T00:00:00Z");
    expect(windowStart(new Map(), now)).toBe(now - LOOKBACK_MS);
    const progress = new Map([
      ["1101", { lastHash: null, lastTs: "2024-01-18T00:15:00+00:00" }],
      ["1102", { lastHash: null, lastTs: "2024-01-17T12:00:00+00:00" }],
    ]);
    expect(windowStart(progress, now)).toBe(Date.parse("2024-01-17T12:00:00Z"));
    progress.set("1103", { lastHash: null, lastTs: "2023-12-01T00:00:00+00:00" });
    expect(windowStart(progress, now)).toBe(now - LOOKBACK_MS);
  });
});

describe("AxisTech record normalisation", () => {
  it("maps columns by name to IoTa's ATM-41 names, in IoTa's order, as IoTa's message", () => {
    const record = recordOf(records[0]);
    expect(record).toMatchObject({ code: "1101", key: "1101", timestamp: "2024-01-16T12:00:00Z" });
    const n = prepareRecord(record, cid).normalise()!;
    const [message] = n.messages(77) as Record<string, unknown>[];
    expect(() => parseMessage(message)).not.toThrow();
    expect(message).toEqual({
      timestamp: "2024-01-16T12:00:00Z",
      source_ids: { serial_no: "1101", "sdi-12": ["813AXSTECH AWS   0001101"] },
      timeseries: [
        { name: "8_Precipitation", value: 0.2 },
        { name: "8_AirTemperature", value: 24.3 },
        { name: "8_WindSpeed", value: 2.1 },
        { name: "8_WindSpeed_max", value: 4.6 },
        { name: "8_RH", value: 61.2 },
        { name: "8_AirPressure", value: 100.9 },
        { name: "8_DeltaT", value: 5.4 },
        { name: "8_DewPoint", value: 16.3 },
        { name: "8_Solar", value: 512.4 },
        { name: "8_WindDirection", value: 221 },
        { name: "8_WindSpeed_min", value: 0.4 },
      ],
      broker_correlation_id: cid,
      p_uid: 77,
    });
    expect(Object.keys(message!)).toEqual([
      "timestamp",
      "source_ids",
      "timeseries",
      "broker_correlation_id",
      "p_uid",
    ]);
    expect(AXISTECH_COLUMNS.map(([, name]) => name)).toEqual([
      "8_Precipitation",
      "8_AirTemperature",
      "8_WindSpeed",
      "8_WindSpeed_max",
      "8_RH",
      "8_AirPressure",
      "8_DeltaT",
      "8_DewPoint",
      "8_Solar",
      "8_WindDirection",
      "8_WindSpeed_min",
    ]);
  });

  it("does not depend on the vendor's key order", () => {
    const raw = records[0] as Record<string, unknown>;
    const reversed = Object.fromEntries(Object.entries(raw).reverse());
    const a = prepareRecord(recordOf(raw), cid).normalise()!.messages(1);
    const b = prepareRecord(recordOf(reversed), cid).normalise()!.messages(1);
    expect(b).toEqual(a);
  });

  it("reads numeric strings and leaves missing values out (IoTa produced NaN)", () => {
    const n = prepareRecord(recordOf(records[3]), cid).normalise()!;
    const [message] = n.messages(1) as { timeseries: { name: string; value: number }[] }[];
    expect(message!.timeseries.map((p) => p.name)).toEqual([
      "8_Precipitation",
      "8_AirTemperature",
      "8_RH",
      "8_AirPressure",
      "8_DeltaT",
      "8_DewPoint",
      "8_Solar",
    ]);
    const [strings] = prepareRecord(recordOf(records[2]), cid).normalise()!.messages(1) as {
      timeseries: { name: string; value: unknown }[];
    }[];
    expect(strings!.timeseries[1]).toEqual({ name: "8_AirTemperature", value: 24.8 });
  });

  it("creates the device named by its code with last_msg as an object (IoTa stored a string)", () => {
    const n = prepareRecord(recordOf(records[1]), cid).normalise()!;
    const sourceIds = { serial_no: "1102", "sdi-12": ["813AXSTECH AWS   0001102"] };
    expect(n.device.lookup).toEqual(sourceIds);
    expect(n.device.create).toMatchObject({ name: "1102", location: null, source_ids: sourceIds });
    const lastMsg = n.device.create.properties!.last_msg as Record<string, unknown>;
    expect(typeof lastMsg).toBe("object");
    expect(lastMsg.broker_correlation_id).toBe(cid);
    expect(n.device.sighting).toEqual({ lastSeen: "2024-01-16T12:00:00Z", lastMsg });
  });

  it("rejects records without identity or with a value that is not a number; keeps empty ones raw", () => {
    expect(() => recordOf({ time: "2024-01-16T12:00:00Z" })).toThrow(
      expect.objectContaining({ reason: "invalid_record" }),
    );
    expect(() => recordOf({ code: "1", time: "noon" })).toThrow(
      expect.objectContaining({ reason: "invalid_timestamp" }),
    );
    // Times without an offset are UTC.
    expect(recordOf({ code: 5, time: "2024-01-16 12:00:00" }).timestamp).toBe(
      "2024-01-16T12:00:00Z",
    );
    const bad = recordOf({ ...(records[0] as object), temperature_avg: "warm" });
    expect(() => prepareRecord(bad, cid).normalise()).toThrow(
      expect.objectContaining({ reason: "invalid_value" }),
    );
    const empty = recordOf({ code: "9", time: "2024-01-16T12:00:00Z", rainfall: null });
    expect(prepareRecord(empty, cid).normalise()).toBeUndefined();
  });
});
