import { describe, expect, it } from "vitest";

import type { LogicalMessage } from "../../src/core/message.js";
import { deviceMetadata } from "../../src/delivery/ubidots/metadata.js";
import {
  greenBrainLabel,
  messageDots,
  numericValue,
  packBodies,
  readStatuses,
  type OwnedDot,
} from "../../src/delivery/ubidots/payload.js";
import { ubidotsSettings } from "../../src/delivery/ubidots/settings.js";
import { Environment } from "../../src/core/environment.js";

const cid = "3a0b6a1e-2d1c-4b8e-9f3a-0c1d2e3f4a5b";

function message(
  timeseries: LogicalMessage["timeseries"],
  timestamp = "2024-05-01T10:00:00.123456+10:00",
): LogicalMessage {
  return { broker_correlation_id: cid, p_uid: 1, l_uid: 2, timestamp, timeseries };
}

describe("numericValue (IoTa's float())", () => {
  it("takes numbers, booleans and numeric text, and nothing else", () => {
    expect(numericValue(4.16)).toBe(4.16);
    expect(numericValue(true)).toBe(1);
    expect(numericValue(false)).toBe(0);
    expect(numericValue(" 12.5 ")).toBe(12.5);
    expect(numericValue("1e3")).toBe(1000);
    expect(numericValue("abc")).toBeUndefined();
    expect(numericValue("")).toBeUndefined();
    expect(numericValue("nan")).toBeUndefined();
    expect(numericValue(null)).toBeUndefined();
    expect(numericValue({ v: 1 })).toBeUndefined();
    expect(numericValue([1])).toBeUndefined();
  });
});

describe("messageDots", () => {
  it("uses each point's own timestamp when valid, else the message's, in ms, with the correlation id", () => {
    const { dots, skipped } = messageDots(
      message([
        { name: "a", value: 1 },
        { name: "b", value: "2.5", timestamp: "2024-05-01T00:00:01Z" },
        { name: "c", value: "warm" },
        { name: "d", value: null },
      ]),
      7,
    );
    expect(dots).toEqual([
      {
        message: 7,
        variable: "a",
        dot: {
          value: 1,
          timestamp: Date.parse("2024-05-01T00:00:00.123Z"),
          context: { broker_correlation_id: cid },
        },
      },
      {
        message: 7,
        variable: "b",
        dot: {
          value: 2.5,
          timestamp: Date.parse("2024-05-01T00:00:01Z"),
          context: { broker_correlation_id: cid },
        },
      },
    ]);
    expect(skipped.map((s) => s.variable)).toEqual(["c", "d"]);
  });

  it("keeps the last value of a name given twice, as IoTa's dict did", () => {
    const { dots } = messageDots(
      message([
        { name: "a", value: 1 },
        { name: "a", value: 2 },
      ]),
      0,
    );
    expect(dots.map((d) => d.dot.value)).toEqual([2]);
  });
});

describe("packBodies", () => {
  const many: OwnedDot[] = Array.from({ length: 400 }, (_, i) => ({
    message: Math.floor(i / 3),
    variable: ["temperature", "humidity", "battery (v)"][i % 3]!,
    dot: {
      value: i * 1.000001,
      timestamp: 1_700_000_000_000 + i,
      context: { broker_correlation_id: cid },
    },
  }));

  it("fills bodies up to the limit, never over it, and loses or reorders no dot", () => {
    const bodies = packBodies(many, 9_999);
    expect(bodies.length).toBeGreaterThan(3);
    for (const b of bodies) {
      expect(Buffer.byteLength(b.text)).toBeLessThanOrEqual(9_999);
    }
    // Nearly full: no body but the last leaves room for another dot.
    for (const b of bodies.slice(0, -1)) {
      expect(Buffer.byteLength(b.text)).toBeGreaterThan(9_999 - 400);
    }
    const sent = bodies.flatMap((b) =>
      Object.entries(JSON.parse(b.text) as Record<string, { timestamp: number }[]>).flatMap(
        ([v, list]) => list.map((d) => `${v}@${d.timestamp}`),
      ),
    );
    expect(sent.sort()).toEqual(many.map((d) => `${d.variable}@${d.dot.timestamp}`).sort());
  });

  it("keeps each message's dots in one body, splitting only a message too big alone", () => {
    const bodies = packBodies(many, 1_500);
    const owners = bodies.flatMap((b) => [...b.messages]);
    expect(new Set(owners).size).toBe(134);
    expect(owners).toHaveLength(134);
    const huge = many.map((d) => ({ ...d, message: 0 }));
    const split = packBodies(huge, 1_500);
    expect(split.length).toBeGreaterThan(1);
    expect(split.every((b) => b.messages.has(0))).toBe(true);
  });

  it("measures multi-byte labels in bytes", () => {
    const dots: OwnedDot[] = Array.from({ length: 50 }, (_, i) => ({
      message: i,
      variable: `température ${i % 2}`,
      dot: { value: i, timestamp: i, context: { broker_correlation_id: cid } },
    }));
    for (const b of packBodies(dots, 500)) {
      expect(Buffer.byteLength(b.text)).toBeLessThanOrEqual(500);
    }
  });
});

describe("readStatuses", () => {
  it("fails exactly the messages whose dots Ubidots did not save", () => {
    const dots: OwnedDot[] = [
      {
        message: 0,
        variable: "a",
        dot: { value: 1, timestamp: 1, context: { broker_correlation_id: cid } },
      },
      {
        message: 1,
        variable: "a",
        dot: { value: 2, timestamp: 2, context: { broker_correlation_id: cid } },
      },
      {
        message: 1,
        variable: "b",
        dot: { value: 3, timestamp: 2, context: { broker_correlation_id: cid } },
      },
      {
        message: 2,
        variable: "b",
        dot: { value: 4, timestamp: 3, context: { broker_correlation_id: cid } },
      },
    ];
    const [body] = packBodies(dots, 10_000);
    const statuses = readStatuses(body!, {
      a: [{ status_code: 201 }, { status_code: 201 }],
      b: [{ status_code: 400 }, { status_code: 200 }],
    });
    expect(statuses.get(0)).toEqual({ ok: true });
    expect(statuses.get(1)).toEqual({ ok: false, code: 400 });
    expect(statuses.get(2)).toEqual({ ok: true });
    // 204 is not a success; a variable without an answer is not either.
    const missing = readStatuses(body!, { a: [{ status_code: 204 }, { status_code: 201 }] });
    expect(missing.get(0)).toEqual({ ok: false, code: 204 });
    expect(missing.get(2)).toEqual({ ok: false, code: undefined });
  });
});

describe("device identity and description", () => {
  it("labels a GreenBrain sensor group as IoTa does, and nothing else", () => {
    expect(
      greenBrainLabel("greenbrain", { system_id: 12, station_id: 34, sensor_group_id: 56 }),
    ).toBe("12-34-56");
    expect(greenBrainLabel("greenbrain", { sensor_group_id: 56 })).toBeUndefined();
    expect(
      greenBrainLabel("ttn", { system_id: 1, station_id: 2, sensor_group_id: 3 }),
    ).toBeUndefined();
  });

  it("PATCHes name, location (logical first, else physical), TTN description and DPI uid", () => {
    const ld = { uid: 1, name: "Paddock 3", location: null, ubidots: undefined };
    const pd = {
      uid: 9,
      sourceName: "ttn",
      location: { lat: -33.1, long: 148.2 },
      sourceIds: {},
      properties: { ttn: { description: "soil probe", attributes: { uid: "DPI-77" } } },
    };
    expect(deviceMetadata(ld, pd)).toEqual({
      name: "Paddock 3",
      description: "soil probe",
      properties: {
        _location_type: "manual",
        _location_fixed: { lat: -33.1, lng: 148.2 },
        _config: {
          "dpi-uid": {
            text: "DPI UID",
            type: "text",
            description: "The uid from the DPI QR code used to activate the device.",
          },
        },
        "dpi-uid": "DPI-77",
      },
    });
    expect(
      deviceMetadata({ ...ld, location: { lat: 1, long: 2 } }, { ...pd, sourceName: "wombat" }),
    ).toEqual({
      name: "Paddock 3",
      properties: { _location_type: "manual", _location_fixed: { lat: 1, lng: 2 } },
    });
    expect(deviceMetadata(ld, undefined)).toEqual({ name: "Paddock 3", properties: {} });
  });
});

describe("ubidotsSettings", () => {
  it("takes scheme and host only, needs a token, and defaults to IoTa's host at 4 requests/s", () => {
    const s = ubidotsSettings({ env: new Environment({ UBIDOTS_API_TOKEN: "t" }) });
    expect(s.baseUrl).toBe("https://industrial.api.ubidots.com.au");
    expect(s.requestsPerSecond).toBe(4);
    expect(s.budgetName).not.toContain("t:");
    expect(() => ubidotsSettings({ env: new Environment({}) })).toThrow(/UBIDOTS_API_TOKEN/);
    expect(() =>
      ubidotsSettings({
        env: new Environment({ UBIDOTS_API_TOKEN: "t", UBIDOTS_URL: "https://x.example/api/v1.6" }),
      }),
    ).toThrow(/scheme and host only/);
  });
});
