import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { PermanentError } from "../../src/core/errors.js";
import { parseMessage } from "../../src/core/message.js";
import { decodeJson, mqttCorrelationId } from "../../src/mqtt/payload.js";
import { hasLossyNumber } from "../../src/sources/raw-copy.js";
import { pythonFloat } from "../../src/mqtt/python-values.js";
import {
  normaliseYdoc,
  processYdocMessage,
  ydocRawTime,
} from "../../src/sources/ydoc/normalise.js";
import { jsonTooDeep } from "../../src/sources/json-depth.js";
import { parseYdocTs } from "../../src/sources/ydoc/values.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const text = readFileSync(new URL("ydoc_eg.json", fixtures), "utf8");
const sample = JSON.parse(text) as Record<string, unknown>;
const derived = JSON.parse(
  readFileSync(new URL("derived/ydoc_eg.process_message.json", fixtures), "utf8"),
) as { result: Record<string, { id: string; name: string; dots: unknown[] }> };

const cid = "00000000-0000-4000-8000-000000000001";
const arrival = {
  topic: "YDOC/108172923",
  correlationId: cid,
  arrivedAt: "2024-01-01T00:00:00.000Z",
};

function message(data: unknown[], channels: unknown[], device = { sn: 42, name: "Logger" }) {
  return { device, channels, data };
}

/**
 * Where our output for ydoc_eg.json may differ from IoTa's, and why. The fixture exercises none
 * of the fixes (its values follow `$ts`, no prefixed channels, no NaN), so the list is empty;
 * the fixes are tested on their own inputs below.
 */
const INTENDED_DIFFERENCES: readonly string[] = [];

describe("YDOC process_message against IoTa's output", () => {
  it("matches derived/ydoc_eg.process_message.json field by field", () => {
    expect(INTENDED_DIFFERENCES).toEqual([]);
    const { devices } = processYdocMessage(sample);
    const expected = Object.values(derived.result);
    expect(devices.map((d) => d.id)).toEqual(Object.keys(derived.result));
    for (const [i, device] of devices.entries()) {
      const want = expected[i]!;
      expect(device.id).toBe(want.id);
      expect(device.name).toBe(want.name);
      expect(device.dots).toHaveLength(want.dots.length);
      for (const [j, dot] of device.dots.entries()) {
        // Python writes 2.0 where JavaScript writes 2: the same JSON number.
        expect(dot).toEqual(want.dots[j]);
        expect(Object.keys(dot)).toEqual(["timestamp", "name", "value"]);
      }
    }
  });

  it("notes what IoTa skipped silently: non-numeric values", () => {
    const { notes } = processYdocMessage(sample);
    expect(notes.map((n) => n.reason)).toEqual(["not_numeric", "not_numeric"]);
    expect(notes[0]!.detail).toContain("P1");
  });

  it("publishes one message per device in IoTa's key order, stamped with its earliest point", () => {
    const { devices } = normaliseYdoc(sample, arrival);
    expect(devices).toHaveLength(1);
    const [messageOut] = devices[0]!.messages(7) as Record<string, unknown>[];
    expect(Object.keys(messageOut!)).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
    ]);
    expect(parseMessage(messageOut)).toMatchObject({
      broker_correlation_id: cid,
      p_uid: 7,
      timestamp: "2022-03-16T09:22:45+10:00",
    });
    expect(devices[0]!.device.lookup).toEqual({ id: "ydoc-108172923" });
    expect(devices[0]!.device.create.properties).toMatchObject({
      creation_correlation_id: cid,
      ydoc: sample,
      last_msg: sample,
    });
    expect(devices[0]!.device.sighting.lastSeen).toBe("2022-03-16T09:22:45+10:00");
  });
});

describe("YDOC fixes (doc/sources-mqtt.md)", () => {
  const channels = [
    { code: "SB", name: "Signal" },
    { code: "S10M1", name: "S10Moisture1" },
    { code: "S2T4", name: "s2temp" },
  ];

  it("stamps values that come before $ts with their own object's $ts (IoTa skipped or mis-stamped them)", () => {
    const msg = message(
      [{ SB: 1, $ts: 220316090000 }, { SB: 2, $ts: "220316100000" }, { SB: 3 }],
      channels,
    );
    const [node] = processYdocMessage(msg).devices;
    expect(node!.dots).toEqual([
      { timestamp: "2022-03-16T09:00:00+10:00", name: "Signal", value: 1 },
      { timestamp: "2022-03-16T10:00:00+10:00", name: "Signal", value: 2 },
      // IoTa's carry-over is kept for objects without a $ts of their own.
      { timestamp: "2022-03-16T10:00:00+10:00", name: "Signal", value: 3 },
    ]);
    const { devices } = normaliseYdoc(msg, arrival);
    const [out] = devices[0]!.messages(1) as { timestamp: string }[];
    expect(out!.timestamp).toBe("2022-03-16T09:00:00+10:00");
    expect(devices[0]!.device.sighting.lastSeen).toBe("2022-03-16T10:00:00+10:00");
  });

  it("strips the whole matched prefix, case-insensitively (IoTa: two characters, case-sensitive)", () => {
    const { devices } = processYdocMessage(
      message([{ $ts: 220316090000, S10M1: 5, S2T4: 6 }], channels),
    );
    expect(devices.map((d) => [d.id, d.name, d.dots[0]!.name])).toEqual([
      ["42-s10", "Logger (s10)", "Moisture1"],
      ["42-s2", "Logger (s2)", "temp"],
    ]);
  });

  it("leaves NaN and Infinity out with a note; they are never published", () => {
    const { devices, notes } = processYdocMessage(
      message([{ $ts: 220316090000, SB: "nan", S2T4: "-inf", S10M1: "1_000.5" }], channels),
    );
    expect(devices.flatMap((d) => d.dots.map((p) => p.value))).toEqual([1000.5]);
    expect(notes.map((n) => n.reason)).toEqual(["non_finite_value", "non_finite_value"]);
  });

  it("notes values with no $ts anywhere before them", () => {
    const { devices, notes } = processYdocMessage(message([{ SB: 1 }], channels));
    expect(devices).toEqual([]);
    expect(notes).toEqual([{ reason: "missing_timestamp", detail: expect.stringContaining("SB") }]);
  });

  it("stops an object at $msg, as IoTa does", () => {
    const { devices } = processYdocMessage(
      message([{ $ts: 220316090000, SB: 1, $msg: "x", S2T4: 2 }], channels),
    );
    expect(devices.map((d) => d.dots.length)).toEqual([1]);
  });

  it("dead-letters a message whose $ts is not a time (IoTa lost it after storing it raw)", () => {
    expect(() => normaliseYdoc(message([{ $ts: 221399000000, SB: 1 }], channels), arrival)).toThrow(
      expect.objectContaining({ reason: "invalid_timestamp" }) as PermanentError,
    );
  });

  it("keeps a message without data raw only, and rejects shapes it cannot read", () => {
    expect(normaliseYdoc({ device: { sn: 1 } }, arrival).devices).toEqual([]);
    for (const bad of [
      [1, 2],
      "text",
      5,
      null,
      { data: 1, channels: [] },
      { data: [], channels: [] },
    ]) {
      expect(() => normaliseYdoc(bad, arrival)).toThrow(PermanentError);
    }
  });

  it("stores raw with the device time (newest $ts), not the receipt time", () => {
    expect(ydocRawTime(sample)).toBe("2022-03-16T09:22:45+10:00");
    expect(ydocRawTime({ data: [{ $ts: 220316090000 }, { $ts: 220317090000 }] })).toBe(
      "2022-03-17T09:00:00+10:00",
    );
    expect(ydocRawTime({ data: "x" })).toBeUndefined();
  });
});

describe("YDOC value and payload helpers", () => {
  it("reads values like Python float()", () => {
    expect(pythonFloat(2)).toBe(2);
    expect(pythonFloat(true)).toBe(1);
    expect(pythonFloat(" 3.5 ")).toBe(3.5);
    expect(pythonFloat("1e3")).toBe(1000);
    expect(pythonFloat(".5")).toBe(0.5);
    expect(pythonFloat("Infinity")).toBe(Infinity);
    for (const bad of ["0*T", "", "1__0", null, {}, [], "0x10"]) {
      expect(pythonFloat(bad)).toBeUndefined();
    }
  });

  it("reads $ts as YYMMDDhhmmss at +10:00, padding numbers that lost a leading zero", () => {
    expect(parseYdocTs(220316092245)).toBe("2022-03-16T09:22:45+10:00");
    expect(parseYdocTs(90316092245)).toBe("2009-03-16T09:22:45+10:00");
    expect(parseYdocTs("2203160922")).toBeUndefined();
    expect(parseYdocTs(220230000000)).toBeUndefined();
  });

  it("keeps the received text beside the JSON when a number does not survive parsing (device.sim)", () => {
    const decoded = decodeJson(Buffer.from(text), 262_144);
    expect(decoded.ok).toBe(true);
    expect(decoded.raw.text).toBe(text);
    expect(hasLossyNumber('{"a": 3.31, "b": -84, "c": 1e21, "s": "89882280666027703515"}')).toBe(
      false,
    );
    expect(hasLossyNumber('{"sim": 89882280666027703515}')).toBe(true);
    expect(decodeJson(Buffer.from('{"a": 1}'), 100).raw).toEqual({ json: { a: 1 } });
  });

  it("derives the correlation id from source, topic and bytes, so a redelivery is recognised", () => {
    const bytes = Buffer.from(text);
    const id = mqttCorrelationId("ydoc", "YDOC/1", bytes);
    expect(mqttCorrelationId("ydoc", "YDOC/1", Buffer.from(text))).toBe(id);
    expect(mqttCorrelationId("ydoc", "YDOC/2", bytes)).not.toBe(id);
    expect(mqttCorrelationId("wombat", "YDOC/1", bytes)).not.toBe(id);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("turns hostile payloads into reasons, keeping storable text", () => {
    const reasonOf = (b: Buffer, max = 100) => {
      const d = decodeJson(b, max);
      return d.ok ? "ok" : d.reason;
    };
    expect(reasonOf(Buffer.alloc(0))).toBe("empty_payload");
    expect(reasonOf(Buffer.from('{"a":'))).toBe("invalid_json");
    expect(reasonOf(Buffer.from([0x7b, 0xff, 0x7d]))).toBe("invalid_utf8");
    expect(reasonOf(Buffer.from('{"a":"\\u0000"}'))).toBe("nul_character");
    expect(reasonOf(Buffer.from("a\u0000b"))).toBe("nul_character");
    expect(reasonOf(Buffer.from("x".repeat(101)))).toBe("payload_too_large");
    const big = decodeJson(Buffer.from("x".repeat(101)), 100);
    expect(big.raw.text).toHaveLength(100);
    const nul = decodeJson(Buffer.from("a\u0000b"), 100);
    expect(nul.raw.text).toBe("a\uFFFDb");
  });

  it("keeps a hostile, deeply nested payload as text instead of overflowing the stack later", () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const d = decodeJson(Buffer.from(deep), 1_000_000);
    expect(d.ok ? "ok" : d.reason).toBe("too_deeply_nested");
    expect(d.raw).toEqual({ text: deep });
    expect(jsonTooDeep('{"a": [[1]], "s": "[[[[[[[["}', 3)).toBe(false);
    expect(jsonTooDeep('{"a": [[[1]]]}', 3)).toBe(true);
    expect(decodeJson(Buffer.from('{"a": [[[{"b": 1}]]]}'), 100).ok).toBe(true);
  });
});

describe("YDOC messages that yield nothing (issue 13)", () => {
  it('dead-letters "data": [] as no_readings instead of keeping it raw in silence', () => {
    const arrival = {
      topic: "ydoc/1",
      correlationId: "00000000-0000-4000-8000-000000000013",
      arrivedAt: "2024-01-01T00:00:00.000Z",
    };
    const msg = { device: { sn: 5 }, channels: [{ code: "SB", name: "Signal" }], data: [] };
    expect(() => normaliseYdoc(msg, arrival)).toThrow(/data holds no readings/);
    const unknown = { ...msg, data: [{ XX: 1, $ts: 240101120000 }] };
    expect(() => normaliseYdoc(unknown, arrival)).toThrow(/1 left out \(unknown_channel\)/);
  });
});
