import { describe, expect, it } from "vitest";

import type { NormalisedMessage } from "../../src/core/message.js";
import { parseInstantMicros } from "../../src/core/time.js";
import {
  coveringMapping,
  decideRoute,
  newestPerLogicalDevice,
  type DeviceRoute,
  type MappingPeriod,
} from "../../src/mapper/route.js";

const now = Date.parse("2023-01-30T07:00:00Z");
const TEN_YEARS_MS = 315_360_000_000;
const options = { now, futureToleranceMs: 3_600_000, pastToleranceMs: TEN_YEARS_MS };

function message(overrides: Partial<NormalisedMessage> = {}): NormalisedMessage {
  return {
    broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
    p_uid: 301,
    timestamp: "2023-01-30T06:21:56Z",
    timeseries: [{ name: "battery (v)", value: 4.16 }],
    ...overrides,
  };
}

function at(iso: string): number {
  return parseInstantMicros(iso)!;
}

function period(luid: number, start: string, end?: string, isActive = true): MappingPeriod {
  return {
    logicalUid: luid,
    startMicros: at(start),
    endMicros: end === undefined ? undefined : at(end),
    isActive,
  };
}

function device(...mappings: MappingPeriod[]): DeviceRoute {
  return { physicalUid: 301, sourceName: "ttn", mappings };
}

/** Mapped to 276 since 2020, the usual case. */
const mapped = device(period(276, "2020-01-01T00:00:00Z"));

/** Sensor 301 fed 100 until 2023-01-30T06:00Z, then 200 (a replacement elsewhere). */
const replaced = device(
  period(100, "2022-01-01T00:00:00Z", "2023-01-30T06:00:00Z"),
  period(200, "2023-01-30T06:00:00Z"),
);

describe("decideRoute: the decision table in route.ts, row by row", () => {
  it("row 1: dead-letters a message from an unknown physical device (IoTa acked and dropped it)", () => {
    const d = decideRoute(message(), undefined, options);
    expect(d).toMatchObject({ kind: "reject", reason: "unknown_device" });
  });

  it("row 2: holds a message more than the tolerance ahead, even on a mapped device", () => {
    const d = decideRoute(message({ timestamp: "2023-01-30T08:00:01Z" }), mapped, options);
    expect(d).toMatchObject({ kind: "hold", reason: "future_timestamp" });
    expect(d.kind === "hold" && "l_uid" in d.stored).toBe(false);
  });

  it("row 2: exactly one hour ahead is still forwarded, as IoTa does", () => {
    const d = decideRoute(message({ timestamp: "2023-01-30T08:00:00Z" }), mapped, options);
    expect(d.kind).toBe("forward");
  });

  it("row 3: holds a reset clock's 1970 and 2000 stamps, even where a mapping covers them", () => {
    const always = device(period(276, "1960-01-01T00:00:00Z"));
    for (const timestamp of ["1970-01-01T00:00:00Z", "2000-01-01T00:00:00Z"]) {
      const d = decideRoute(message({ timestamp }), always, options);
      expect(d).toMatchObject({ kind: "hold", reason: "past_timestamp" });
    }
  });

  it("row 3: the past rule can be turned off", () => {
    const always = device(period(276, "1960-01-01T00:00:00Z"));
    const d = decideRoute(message({ timestamp: "1970-01-01T00:00:00Z" }), always, {
      ...options,
      pastToleranceMs: undefined,
    });
    expect(d).toMatchObject({ kind: "forward", logicalUid: 276 });
  });

  it("row 4: holds an unmapped device's message, without a stray upstream l_uid", () => {
    const d = decideRoute(message({ l_uid: 99 }), device(), options);
    expect(d).toMatchObject({ kind: "hold", reason: "no_mapping" });
    expect(d.kind === "hold" && "l_uid" in d.stored).toBe(false);
  });

  it("row 4: holds a reading stamped before the current mapping started (IoTa forwarded it)", () => {
    const mappedNow = device(period(276, "2023-01-30T06:50:00Z"));
    const d = decideRoute(message({ timestamp: "2021-05-01T00:00:00Z" }), mappedNow, options);
    expect(d).toMatchObject({ kind: "hold", reason: "no_mapping" });
  });

  it("row 4: holds a reading stamped after its mapping ended", () => {
    const ended = device(period(276, "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z"));
    const d = decideRoute(message({ timestamp: "2023-01-01T00:00:00Z" }), ended, options);
    expect(d).toMatchObject({ kind: "hold", reason: "no_mapping" });
  });

  it("row 5: holds a message whose mapping is paused", () => {
    const paused = device(period(276, "2020-01-01T00:00:00Z", undefined, false));
    const d = decideRoute(message(), paused, options);
    expect(d).toMatchObject({ kind: "hold", reason: "paused" });
  });

  it("row 5: a paused ended mapping holds its own period; the active one after it forwards", () => {
    const history = device(
      period(1, "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z", false),
      period(2, "2023-01-01T00:00:00Z"),
    );
    const before = decideRoute(message({ timestamp: "2022-06-01T00:00:00Z" }), history, options);
    const after = decideRoute(message({ timestamp: "2023-01-02T00:00:00Z" }), history, options);
    expect(before).toMatchObject({ kind: "hold", reason: "paused" });
    expect(after).toMatchObject({ kind: "forward", logicalUid: 2 });
  });

  it("row 6: routes by the mapping that holds the timestamp, whatever arrives first", () => {
    const late = decideRoute(
      message({ timestamp: "2023-01-30T05:59:59.999999Z" }),
      replaced,
      options,
    );
    const onTheEdge = decideRoute(
      message({ timestamp: "2023-01-30T06:00:00Z" }),
      replaced,
      options,
    );
    const offset = decideRoute(
      message({ timestamp: "2023-01-30T15:59:00+10:00" }),
      replaced,
      options,
    );
    expect(late).toMatchObject({ kind: "forward", logicalUid: 100 });
    expect(onTheEdge).toMatchObject({ kind: "forward", logicalUid: 200 });
    // 15:59 at +10:00 is 05:59Z: before the change.
    expect(offset).toMatchObject({ kind: "forward", logicalUid: 100 });
  });

  it("row 6: compares at PostgreSQL's microseconds, not JavaScript's milliseconds", () => {
    const sharp = device(period(7, "2023-01-30T06:00:00.000500Z"));
    const justBefore = decideRoute(
      message({ timestamp: "2023-01-30T06:00:00.0004Z" }),
      sharp,
      options,
    );
    const justAfter = decideRoute(
      message({ timestamp: "2023-01-30T06:00:00.000500001Z" }),
      sharp,
      options,
    );
    expect(justBefore).toMatchObject({ kind: "hold", reason: "no_mapping" });
    expect(justAfter).toMatchObject({ kind: "forward", logicalUid: 7 });
  });

  it("row 6: adds l_uid last and keeps the producer's key order", () => {
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

  it("row 6: overwrites an upstream l_uid in place", () => {
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

  it("row 6: forwards a slightly-future message and caps last_seen at now", () => {
    const d = decideRoute(message({ timestamp: "2023-01-30T07:30:00Z" }), mapped, options);
    expect(d.kind === "forward" && d.lastSeen).toBe("2023-01-30T07:00:00.000Z");
  });
});

describe("coveringMapping", () => {
  it("takes start inclusive and end exclusive, and an open end as current", () => {
    const periods = replaced.mappings;
    expect(coveringMapping(periods, at("2022-01-01T00:00:00Z"))?.logicalUid).toBe(100);
    expect(coveringMapping(periods, at("2021-12-31T23:59:59.999999Z"))).toBeUndefined();
    expect(coveringMapping(periods, at("2030-01-01T00:00:00Z"))?.logicalUid).toBe(200);
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

describe("parseInstantMicros", () => {
  it("reads microseconds and rounds finer digits half to even, as PostgreSQL stores them", () => {
    const base = Date.parse("2023-01-30T06:00:00Z") * 1000;
    expect(parseInstantMicros("2023-01-30T06:00:00.123456Z")).toBe(base + 123_456);
    expect(parseInstantMicros("2023-01-30T06:00:00.1234565Z")).toBe(base + 123_456);
    expect(parseInstantMicros("2023-01-30T06:00:00.1234575Z")).toBe(base + 123_458);
    expect(parseInstantMicros("2023-01-30T06:00:00.123456501Z")).toBe(base + 123_457);
    expect(parseInstantMicros("2023-01-30T16:00:00+10:00")).toBe(base);
    expect(parseInstantMicros("1969-12-31T23:59:59.5Z")).toBe(-500_000);
    expect(parseInstantMicros("2023-01-30T06:00:00")).toBeUndefined();
  });
});
