import { describe, expect, it } from "vitest";

import { canonicalJson, diffRawMessage, TotalsAccumulator } from "../../src/replay/diff.js";
import { describeSelection, parseSelection, SelectionError } from "../../src/replay/selection.js";

const cid = "6f1c2a52-8c0e-4d7e-9f61-2b7f4d0e9a11";

function msg(p_uid: number, timestamp: string, points: Record<string, unknown>, extra = {}) {
  return {
    broker_correlation_id: cid,
    p_uid,
    timestamp,
    timeseries: Object.entries(points).map(([name, value]) => ({ name, value })),
    ...extra,
  };
}

describe("replay diff", () => {
  it("sees no change when only key order or l_uid differ", () => {
    const stored = [{ ...msg(1, "2025-01-01T00:00:00Z", { a: { x: 1, y: 2 } }), l_uid: 7 }];
    const replayed = [msg(1, "2025-01-01T00:00:00Z", { a: { y: 2, x: 1 } })];
    expect(diffRawMessage(stored, replayed)).toEqual({
      changed: false,
      messagesAdded: 0,
      messagesRemoved: 0,
      valuesChanged: 0,
      pointsAdded: 0,
      pointsRemoved: 0,
      devices: [],
    });
  });

  it("sees no change when only the order of the points differs (a TTN payload read from jsonb)", () => {
    const stored = [msg(1, "2025-01-01T00:00:00Z", { temperature: 21.5, battery: 3.6 })];
    const replayed = [msg(1, "2025-01-01T00:00:00Z", { battery: 3.6, temperature: 21.5 })];
    expect(diffRawMessage(stored, replayed).changed).toBe(false);
  });

  it("counts values changed, points added and removed, per device", () => {
    const stored = [
      msg(1, "2025-01-01T00:00:00Z", { t: 20, h: 50, old: 1 }),
      msg(2, "2025-01-01T00:00:00Z", { t: 1 }),
    ];
    const replayed = [
      msg(1, "2025-01-01T00:00:00Z", { t: 21.5, h: 50, battery: 3.6 }),
      msg(2, "2025-01-01T00:00:00Z", { t: 1 }),
    ];
    expect(diffRawMessage(stored, replayed)).toMatchObject({
      changed: true,
      valuesChanged: 1,
      pointsAdded: 1,
      pointsRemoved: 1,
      devices: [1],
    });
  });

  it("counts whole messages added and removed (a multi-device raw message)", () => {
    const stored = [
      msg(1, "2025-01-01T00:00:00Z", { t: 1 }),
      msg(2, "2025-01-01T00:00:00Z", { t: 1, u: 2 }),
    ];
    const replayed = [
      msg(1, "2025-01-01T00:00:00Z", { t: 1 }),
      msg(3, "2025-01-01T00:00:00Z", { t: 1 }),
    ];
    expect(diffRawMessage(stored, replayed)).toMatchObject({
      changed: true,
      messagesAdded: 1,
      messagesRemoved: 1,
      pointsAdded: 1,
      pointsRemoved: 2,
      devices: [2, 3],
    });
  });

  it("treats a changed message-level key (decoder warnings) as a change without point changes", () => {
    const stored = [msg(1, "2025-01-01T00:00:00Z", { t: 1 }, { decoder: { name: "d" } })];
    const replayed = [
      msg(1, "2025-01-01T00:00:00Z", { t: 1 }, { decoder: { name: "d", warnings: ["w"] } }),
    ];
    expect(diffRawMessage(stored, replayed)).toMatchObject({
      changed: true,
      valuesChanged: 0,
      devices: [1],
    });
  });

  it("treats two stored copies of one message as a change (the replay leaves one)", () => {
    const m = msg(1, "2025-01-01T00:00:00Z", { t: 1 });
    expect(diffRawMessage([m, m], [m]).changed).toBe(true);
  });

  it("matches points by name and own timestamp", () => {
    const at = (ts: string, value: number) => ({ name: "t", value, timestamp: ts });
    const stored = [
      {
        ...msg(1, "2025-01-01T00:00:00Z", {}),
        timeseries: [at("2025-01-01T00:00:00Z", 1), at("2025-01-01T00:01:00Z", 2)],
      },
    ];
    const replayed = [
      {
        ...msg(1, "2025-01-01T00:00:00Z", {}),
        timeseries: [at("2025-01-01T00:00:00Z", 1), at("2025-01-01T00:01:00Z", 3)],
      },
    ];
    expect(diffRawMessage(stored, replayed)).toMatchObject({
      valuesChanged: 1,
      pointsAdded: 0,
      pointsRemoved: 0,
    });
  });

  it("sums outcomes and failures", () => {
    const t = new TotalsAccumulator();
    t.add(
      diffRawMessage(
        [msg(1, "2025-01-01T00:00:00Z", { t: 1 })],
        [msg(1, "2025-01-01T00:00:00Z", { t: 2 })],
      ),
    );
    t.add(
      diffRawMessage(
        [msg(2, "2025-01-01T00:00:00Z", { t: 1 })],
        [msg(2, "2025-01-01T00:00:00Z", { t: 1 })],
      ),
    );
    t.add({ failed: "decoder_failed" });
    expect(t.totals()).toMatchObject({
      raw: 3,
      changed: 1,
      unchanged: 1,
      failed: 1,
      valuesChanged: 1,
      devices: [1],
      failures: { decoder_failed: 1 },
    });
  });

  it("writes canonical JSON with sorted keys at every level", () => {
    expect(canonicalJson({ b: [{ d: 1, c: null }], a: "x" })).toBe(
      '{"a":"x","b":[{"c":null,"d":1}]}',
    );
  });
});

describe("replay selection", () => {
  it("is canonical: sorted, without repeats, so a re-run finds its interrupted replay", () => {
    const a = parseSelection({
      sources: ["ttn"],
      puids: [3, 1, 3],
      correlationIds: [cid.toUpperCase()],
    });
    const b = parseSelection({ correlationIds: [cid], puids: [1, 3], sources: ["ttn", "ttn"] });
    expect(a).toEqual(b);
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(describeSelection(a)).toBe("source ttn, physical device 1,3, 1 correlation id(s)");
  });

  it("refuses an empty selection, all with criteria, bad values and a backwards range", () => {
    expect(() => parseSelection({})).toThrow(SelectionError);
    expect(() => parseSelection({ all: true, sources: ["ttn"] })).toThrow(/without other criteria/);
    expect(() => parseSelection({ correlationIds: ["nope"] })).toThrow(
      /correlationIds.0: must be a UUID/,
    );
    expect(() => parseSelection({ from: "2025-01-01" })).toThrow(/offset/);
    expect(() =>
      parseSelection({ from: "2025-02-01T00:00:00Z", to: "2025-01-01T00:00:00Z" }),
    ).toThrow(/from must be before to/);
    expect(parseSelection({ all: true })).toEqual({ all: true });
  });
});
