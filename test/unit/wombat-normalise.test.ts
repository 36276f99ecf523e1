import { describe, expect, it } from "vitest";

import type { PermanentError } from "../../src/core/errors.js";
import { parseMessage } from "../../src/core/message.js";
import { normaliseWombat, wombatRawTime } from "../../src/sources/wombat/normalise.js";

// IoTa has no recorded Wombat payload; this one follows the shape its code and its consumer read
// (reference §4.2): already a waist message, identified by source_ids.serial_no.
const sample = {
  timestamp: "2023-01-30T06:21:56Z",
  source_ids: { serial_no: "WOMBAT0042", "sdi-12": ["013DPIWQ  AQ100 00000000001"] },
  timeseries: [
    { name: "1_Temperature", value: 21.6 },
    { name: "battery (v)", value: 4.16 },
    { name: "pulse_count", value: 3 },
  ],
  site: "paddock 4",
};
const cid = "00000000-0000-4000-8000-000000000005";
const arrival = { topic: "wombat", correlationId: cid, arrivedAt: "2024-01-01T00:00:00.000Z" };

function reasonOf(value: unknown): string {
  try {
    normaliseWombat(value, arrival);
    return "accepted";
  } catch (err) {
    return (err as PermanentError).reason;
  }
}

describe("Wombat", () => {
  it("publishes the device's own object, its keys in received order, then cid and p_uid", () => {
    const { devices, notes } = normaliseWombat(sample, arrival);
    const [out] = devices[0]!.messages(11);
    expect(Object.keys(out as object)).toEqual([
      "timestamp",
      "source_ids",
      "timeseries",
      "site",
      "broker_correlation_id",
      "p_uid",
    ]);
    expect(parseMessage(out)).toEqual({ ...sample, broker_correlation_id: cid, p_uid: 11 });
    expect(notes).toEqual([]);
  });

  it("replaces broker_correlation_id and p_uid in place when the device sent them", () => {
    const sent = { broker_correlation_id: "x", p_uid: 1, ...sample };
    const [out] = normaliseWombat(sent, arrival).devices[0]!.messages(11);
    expect(Object.keys(out as object).slice(0, 2)).toEqual(["broker_correlation_id", "p_uid"]);
    expect(out).toMatchObject({ broker_correlation_id: cid, p_uid: 11 });
  });

  it("finds the device by serial_no only, and creates it as IoTa did", () => {
    const { device } = normaliseWombat(sample, arrival).devices[0]!;
    expect(device.lookup).toEqual({ serial_no: "WOMBAT0042" });
    expect(device.create).toEqual({
      name: "Wombat-WOMBAT0042",
      location: null,
      source_ids: sample.source_ids,
      properties: { creation_correlation_id: cid, last_msg: sample },
    });
    expect(device.sighting).toEqual({
      lastSeen: sample.timestamp,
      sourceIds: sample.source_ids,
      lastMsg: sample,
    });
  });

  it("removes a stray l_uid sent by the device, with a note (IoTa stored it as a mapping)", () => {
    const { devices, notes } = normaliseWombat({ ...sample, l_uid: 99 }, arrival);
    const [out] = devices[0]!.messages(11);
    expect(out).not.toHaveProperty("l_uid");
    expect(notes.map((n) => n.reason)).toEqual(["stray_l_uid"]);
  });

  it("dead-letters a timestamp without an offset (IoTa stored it in the session's time zone)", () => {
    expect(reasonOf({ ...sample, timestamp: "2023-01-30T06:21:56" })).toBe("naive_timestamp");
    expect(reasonOf({ ...sample, timestamp: "2023-01-30 06:21:56.5" })).toBe("naive_timestamp");
    expect(wombatRawTime({ ...sample, timestamp: "2023-01-30T06:21:56" })).toBeUndefined();
    expect(wombatRawTime(sample)).toBe(sample.timestamp);
  });

  it("dead-letters other content it cannot use, each with its own reason", () => {
    expect(reasonOf({ ...sample, timestamp: undefined })).toBe("missing_timestamp");
    expect(reasonOf({ ...sample, timestamp: 1675059716 })).toBe("invalid_timestamp");
    expect(reasonOf({ ...sample, timestamp: "2023-02-30T00:00:00Z" })).toBe("invalid_timestamp");
    expect(reasonOf({ ...sample, source_ids: { "sdi-12": [] } })).toBe("missing_serial_no");
    expect(reasonOf({ ...sample, source_ids: "WOMBAT0042" })).toBe("missing_serial_no");
    expect(reasonOf([sample])).toBe("invalid_payload");
    // Points are checked by the message gate when the pipeline builds the message.
    const bad = normaliseWombat({ ...sample, timeseries: [{ value: 1 }] }, arrival);
    expect(() => bad.devices[0]!.messages(1).map(parseMessage)).toThrow(/timeseries\.0\.name/);
  });
});
