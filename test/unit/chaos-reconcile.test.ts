import { describe, expect, it } from "vitest";

import {
  allAccountedFor,
  describeFailures,
  dotsByMessage,
  reconcileDestination,
  recoveryTimes,
  type AcceptedInput,
} from "../../bench/chaos/reconcile.js";

const accepted: AcceptedInput[] = [
  { correlationId: "a0", device: "a", seq: 0 },
  { correlationId: "a1", device: "a", seq: 1 },
  { correlationId: "a2", device: "a", seq: 2 },
  { correlationId: "b0", device: "b", seq: 0 },
];

describe("chaos reconciliation", () => {
  it("passes a destination holding every accepted input once, in order", () => {
    const r = reconcileDestination(accepted, {
      name: "d",
      correlationIds: ["a0", "b0", "a1", "a2"],
    });
    expect(r).toEqual({
      name: "d",
      lost: [],
      duplicated: [],
      unexpected: [],
      devicesOutOfOrder: 0,
      inversions: 0,
    });
    expect(allAccountedFor([r])).toBe(true);
  });

  it("names the lost, duplicated and unexpected ids, and fails", () => {
    const r = reconcileDestination(accepted, {
      name: "files",
      correlationIds: ["a0", "a1", "a1", "zz", "b0"],
    });
    expect(r.lost).toEqual(["a2"]);
    expect(r.duplicated).toEqual(["a1"]);
    expect(r.unexpected).toEqual(["zz"]);
    expect(allAccountedFor([r])).toBe(false);
    expect(describeFailures([r])).toEqual([
      "files: lost 1: a2; duplicated 1: a1; unexpected 1: zz;",
    ]);
  });

  it("tolerates an input that was never accepted, once, but not twice", () => {
    const once = reconcileDestination(
      accepted,
      { name: "d", correlationIds: ["a0", "a1", "a2", "b0", "x"] },
      new Set(["x"]),
    );
    expect(allAccountedFor([once])).toBe(true);
    const twice = reconcileDestination(
      accepted,
      { name: "d", correlationIds: ["a0", "a1", "a2", "b0", "x", "x"] },
      new Set(["x"]),
    );
    expect(twice.duplicated).toEqual(["x"]);
  });

  it("counts per-device order inversions without failing on them", () => {
    const r = reconcileDestination(accepted, {
      name: "d",
      correlationIds: ["a2", "a0", "a1", "b0"],
    });
    expect(r.inversions).toBe(2);
    expect(r.devicesOutOfOrder).toBe(1);
    expect(allAccountedFor([r])).toBe(true);
  });

  it("measures recovery from a fault's end to the first later input delivered", () => {
    const acceptedAt = new Map([
      ["a0", 100],
      ["a1", 900],
      ["a2", 1200],
    ]);
    const arrivedAt = new Map([
      ["a0", 150],
      ["a1", 2500],
      ["a2", 1900],
    ]);
    expect(
      recoveryTimes(
        [
          { name: "f", startedAt: 500, endedAt: 800 },
          { name: "late", startedAt: 2000, endedAt: 3000 },
        ],
        acceptedAt,
        arrivedAt,
      ),
    ).toEqual([
      { name: "f", recoveryMs: 1100 },
      { name: "late", recoveryMs: undefined },
    ]);
  });
});

describe("Ubidots dots by message", () => {
  const dot = (cid: string, variable: string, value: number, timestamp = 1) => ({
    label: "dev",
    variable,
    timestamp,
    value,
    correlationId: cid,
  });

  it("counts a message once whatever its variables, and a verbatim repeat as a rewrite", () => {
    const r = dotsByMessage([
      dot("a", "seq", 1),
      dot("a", "rssi", -80),
      dot("b", "seq", 2, 2),
      dot("a", "seq", 1),
    ]);
    expect(r).toEqual({ correlationIds: ["a", "b"], rewrites: 1 });
  });

  it("counts a variable received again with another value or timestamp as a duplicate", () => {
    const r = dotsByMessage([dot("a", "seq", 1), dot("a", "seq", 1, 5), dot("a", "seq", 7)]);
    expect(r.correlationIds).toEqual(["a", "a", "a"]);
    expect(r.rewrites).toBe(0);
  });
});
