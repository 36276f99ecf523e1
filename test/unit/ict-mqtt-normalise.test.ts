import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { ConfigError } from "../../src/core/config.js";
import type { PermanentError } from "../../src/core/errors.js";
import { parseMessage } from "../../src/core/message.js";
import { firstCsvRecord } from "../../src/sources/ict-mqtt/csv.js";
import {
  defaultIctConfigPath,
  loadIctConfig,
  parseIctConfig,
} from "../../src/sources/ict-mqtt/layouts.js";
import {
  ictNormaliser,
  ictRawTime,
  ictTimestamp,
  translateIctRow,
} from "../../src/sources/ict-mqtt/normalise.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const csv = readFileSync(new URL("ict_mqtt_mncm2l307_payload.csv", fixtures), "utf8");
const derived = JSON.parse(
  readFileSync(new URL("derived/ict_mqtt_mncm2l307.translated.json", fixtures), "utf8"),
) as {
  cache_file_row: string[];
  result: { broker_correlation_id: string; timestamp: string; timeseries: unknown[] };
};

const config = loadIctConfig(defaultIctConfigPath());
const cid = "00000000-0000-4000-8000-000000000000";
const arrival = (topic = "ict/data/mncm2l307") => ({
  topic,
  correlationId: cid,
  arrivedAt: "2026-08-15T10:50:00.000Z",
});
const normalise = ictNormaliser(config, (name) =>
  name === "mncm2l307" ? { uid: 17, location: { lat: -33.1, long: 148.2 } } : undefined,
);

function reasonOf(text: string, topic?: string): string {
  try {
    normalise(text, arrival(topic));
    return "accepted";
  } catch (err) {
    return (err as PermanentError).reason;
  }
}

/**
 * Where our translation of the mncm2l307 fixture may differ from IoTa's: nowhere (the placeholder
 * correlation id is passed in). The fixes (Z, dead letters, NaN) are tested on their own inputs.
 */
const INTENDED_DIFFERENCES: readonly string[] = [];

describe("ICT MQTT translation against IoTa's output", () => {
  it("matches derived/ict_mqtt_mncm2l307.translated.json field by field", () => {
    expect(INTENDED_DIFFERENCES).toEqual([]);
    const { fields } = firstCsvRecord(csv);
    // IoTa's cache row is cid, name, then the CSV with column 0 rewritten: positions shift by 2.
    expect(["x", "mncm2l307", ictTimestamp(fields[0]!), ...fields.slice(1)].slice(2)).toEqual(
      derived.cache_file_row.slice(2),
    );
    const { devices, notes } = normalise(csv, arrival());
    const [message] = devices[0]!.messages(5) as Record<string, unknown>[];
    expect(message!.broker_correlation_id).toBe(derived.result.broker_correlation_id);
    expect(message!.timestamp).toBe(derived.result.timestamp);
    expect(message!.timeseries).toEqual(derived.result.timeseries);
    // IoTa's key order for ict_mqtt; p_uid is added by the device worker, last.
    expect(Object.keys(message!)).toEqual([
      "broker_correlation_id",
      "timestamp",
      "timeseries",
      "p_uid",
    ]);
    expect(parseMessage(message)).toBeTruthy();
    expect(notes).toEqual([]);
  });

  it("creates the device with IoTa's source_ids and the EagleIO-era location; last_msg holds the bytes", () => {
    const { device } = normalise(csv, arrival()).devices[0]!;
    expect(device.lookup).toEqual({ topic: "ict/data/mncm2l307" });
    expect(device.create).toEqual({
      name: "mncm2l307",
      location: { lat: -33.1, long: 148.2 },
      source_ids: { topic: "ict/data/mncm2l307" },
      properties: { creation_correlation_id: cid, replaces_ict_eagleio_uid: 17 },
    });
    expect(device.sighting).toEqual({
      lastSeen: "2026-08-15T10:49:39+00:00",
      lastMsg: { timestamp: "2026-08-15T10:49:39+00:00", broker_correlation_id: cid, raw_msg: csv },
    });
    const other = normalise(csv, arrival("test-prefix/ict/data/mncm2l303")).devices[0]!.device;
    expect(other.lookup).toEqual({ topic: "ict/data/mncm2l303" });
    expect(other.create.location).toBeNull();
  });
});

describe("ICT MQTT fixes and policies (doc/sources-mqtt.md)", () => {
  it("accepts Z (IoTa's Python 3.10 refused it) and reads a naive time as UTC (IoTa's rule)", () => {
    expect(ictTimestamp("2026-08-15T10:49:39Z")).toBe("2026-08-15T10:49:39+00:00");
    expect(ictTimestamp("2026-08-15 10:49:39")).toBe("2026-08-15T10:49:39+00:00");
    expect(ictTimestamp("2026-08-15T20:49:39.5+10:00")).toBe("2026-08-15T10:49:39.500000+00:00");
    expect(ictRawTime(csv)).toBe("2026-08-15T10:49:39+00:00");
    expect(ictRawTime("garbage")).toBeUndefined();
  });

  it("dead-letters unknown loggers and malformed rows with a reason (IoTa dropped them unrecorded)", () => {
    expect(reasonOf(csv, "ict/data/mncm9z999")).toBe("unknown_device");
    expect(reasonOf(csv, "ict/data/mncm2l30b")).toBe("no_field_mapping");
    expect(reasonOf("not a time,1,2")).toBe("invalid_timestamp");
    expect(reasonOf('2026-08-15 10:49:39,"41"61')).toBe("malformed_csv");
    expect(reasonOf('2026-08-15 10:49:39,"4161')).toBe("malformed_csv");
    expect(reasonOf("\n2026-08-15 10:49:39,4161")).toBe("malformed_csv");
    expect(reasonOf("2026-08-15 10:49:39,41.5,0")).toBe("conversion_error");
    expect(reasonOf("2026-08-15 10:49:39")).toBe("no_readings");
  });

  it("leaves out truncated blocks and NaN readings with a note, and notes extra records", () => {
    const { timeseries, notes } = translateIctRow(
      ["2026-08-15 10:49:39", "4161", "0", ...Array(9).fill("0"), "nan"],
      config.devices.get("mncm2l307")!,
    );
    expect(timeseries).toEqual([
      { name: "battV", value: 4.161 },
      { name: "solV", value: 0 },
    ]);
    expect(notes.map((n) => n.reason)).toEqual(["non_finite_value", "missing_column"]);
    const twice = normalise(`${csv}\r\n${csv}\r\n`, arrival());
    expect(twice.notes.map((n) => n.reason)).toEqual(["extra_records"]);
  });

  it("reads CSV like Python's strict csv reader", () => {
    expect(firstCsvRecord('a,"b,""c""",\r\nnext')).toEqual({
      fields: ["a", 'b,"c"', ""],
      rest: "next",
    });
    expect(firstCsvRecord("")).toEqual({ fields: [], rest: "" });
    expect(firstCsvRecord('a"b,c')).toEqual({ fields: ['a"b', "c"], rest: "" });
  });

  it("validates the configuration file and names what is wrong", () => {
    expect(config.devices.size).toBe(25);
    expect(config.devices.get("mncm2l301")!.map((f) => f.name)).toContain("awq-ph");
    expect(() => parseIctConfig({ devices: { a: "missing" }, layouts: {} })).toThrow(ConfigError);
    expect(() =>
      parseIctConfig({
        devices: {},
        layouts: { l: [{ name: "x", column: 0, convert: "float" }] },
      }),
    ).toThrow(/layouts\.l\.0\.column/);
    expect(() => loadIctConfig("/nonexistent/ict.json")).toThrow(/ICT_MQTT_CONFIG/);
  });
});
