import { describe, expect, it } from "vitest";

import type { NormalisedMessage } from "../../src/core/message.js";
import { decideRoute, newestPerLogicalDevice, type DeviceRoute } from "../../src/mapper/route.js";

const now = Date.parse("2023-01-30T07:00:00Z");
const options = { now, futureToleranceMs: 3_600_000 };

function message(overrides: Partial<NormalisedMessage> = {}): NormalisedMessage {
  return {
    broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
    p_uid: 301,
    timestamp: "2023-01-30T06:21:56Z",
    timeseries: [{ name: "battery (v)", value: 4.16 }],
    ...overrides,
  };
}

const mapped: DeviceRoute = {
  physicalUid: 301,
  sourceName: "ttn",
  mapping: { logicalUid: 276, isActive: true },
};

describe("decideRoute: IoTa's decision table with its losses fixed", () => {
  it("dead-letters a message from an unknown physical device (IoTa acked and dropped it)", () => {
    const d = decideRoute(message(), undefined, options);
    expect(d).toMatchObject({ kind: "reject", reason: "unknown_device" });
  });

  it("stores an unmapped device's message without l_uid", () => {
    const d = decideRoute(
      message(),
      { physicalUid: 301, sourceName: "ttn", mapping: undefined },
      options,
    );
    expect(d.kind).toBe("store");
  });

  it("drops a stray upstream l_uid for unmapped devices (IoTa leaked it into logical_uid)", () => {
    const d = decideRoute(
      message({ l_uid: 99 }),
      { physicalUid: 301, sourceName: "wombat", mapping: undefined },
      options,
    );
    expect(d.kind === "store" && "l_uid" in d.stored).toBe(false);
  });

  it("stores a paused mapping's message without forwarding it", () => {
    const paused: DeviceRoute = { ...mapped, mapping: { logicalUid: 276, isActive: false } };
    const d = decideRoute(message(), paused, options);
    expect(d.kind).toBe("store");
  });

  it("forwards a mapped, active message with l_uid added last and key order kept", () => {
    const d = decideRoute(message(), mapped, options);
    expect(d.kind).toBe("forward");
    if (d.kind === "forward") {
      expect(Object.keys(d.stored)).toEqual([
        "broker_correlation_id",
        "p_uid",
        "timestamp",
        "timeseries",
        "l_uid",
      ]);
      expect(d.stored.l_uid).toBe(276);
      expect(d.lastSeen).toBe("2023-01-30T06:21:56Z");
    }
  });

  it("overwrites an upstream l_uid in place", () => {
    const upstream = {
      broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
      p_uid: 301,
      l_uid: 5,
      timestamp: "2023-01-30T06:21:56Z",
      timeseries: [],
    };
    const d = decideRoute(upstream, mapped, options);
    expect(d.kind === "forward" && Object.keys(d.stored).indexOf("l_uid")).toBe(2);
    expect(d.kind === "forward" && d.stored.l_uid).toBe(276);
  });

  it("forwards a slightly-future message and caps last_seen at now", () => {
    const d = decideRoute(message({ timestamp: "2023-01-30T07:30:00Z" }), mapped, options);
    expect(d.kind === "forward" && d.lastSeen).toBe("2023-01-30T07:00:00.000Z");
  });

  it("holds a message more than an hour ahead with a reason instead of dropping it", () => {
    const d = decideRoute(message({ timestamp: "2023-01-30T08:00:01Z" }), mapped, options);
    expect(d).toMatchObject({ kind: "hold", reason: "future_timestamp" });
  });

  it("treats exactly one hour ahead as still acceptable, as IoTa does", () => {
    const d = decideRoute(message({ timestamp: "2023-01-30T08:00:00Z" }), mapped, options);
    expect(d.kind).toBe("forward");
  });

  it("reads offsets correctly when comparing with now", () => {
    // 16:30 at +10:00 is 06:30Z: in the past.
    const d = decideRoute(message({ timestamp: "2023-01-30T16:30:00+10:00" }), mapped, options);
    expect(d.kind).toBe("forward");
  });
});

describe("newestPerLogicalDevice", () => {
  it("keeps one update per logical device, the newest message", () => {
    const a = decideRoute(message({ timestamp: "2023-01-30T05:00:00Z" }), mapped, options);
    const b = decideRoute(message({ timestamp: "2023-01-30T06:00:00Z" }), mapped, options);
    const c = decideRoute(message({ timestamp: "2023-01-30T04:00:00Z" }), mapped, options);
    const forwards = [a, b, c].filter((d) => d.kind === "forward");
    const updates = newestPerLogicalDevice(forwards);
    expect(updates).toHaveLength(1);
    expect(updates[0]!.lastSeen).toBe("2023-01-30T06:00:00Z");
  });
});
