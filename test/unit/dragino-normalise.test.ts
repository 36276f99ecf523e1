import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import type { PermanentError } from "../../src/core/errors.js";
import { messageKey, parseMessage } from "../../src/core/message.js";
import { decumulate, DRAGINO_MODELS } from "../../src/sources/dragino/models.js";
import {
  draginoRawTime,
  normaliseDragino,
  processDraginoData,
} from "../../src/sources/dragino/normalise.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const sample = JSON.parse(
  readFileSync(new URL("dragino_json_S31x-CB.json", fixtures), "utf8"),
) as Record<string, unknown>;
const derived = JSON.parse(
  readFileSync(new URL("derived/dragino_json_S31x-CB.process_data.json", fixtures), "utf8"),
) as { result: { timestamp: string; timeseries: { name: string; value: unknown }[] }[] };

const arrival = (cid: string) => ({
  topic: "dragino_up",
  correlationId: cid,
  arrivedAt: "2025-09-11T05:13:21.000Z",
});

/** A CPL03-CB uplink whose records count pulses (index 2). */
function cpl03(counts: number[], total: number): Record<string, unknown> {
  const msg: Record<string, unknown> = {
    IMEI: "861",
    IMSI: "505",
    Model: "CPL03-CB",
    battery: 3.6,
    signal: 20,
    "count time1": total,
    time: "2025-01-01T12:00:00Z",
  };
  counts.forEach((count, i) => {
    const minute = String(59 - i).padStart(2, "0");
    msg[String(i + 1)] = [0, 0, count, `2025-01-01T11:${minute}:00Z`];
  });
  return msg;
}

/**
 * Where our output for the S31x-CB fixture differs from IoTa's, and why. process_data's groups
 * are identical; what differs is outside them.
 */
const INTENDED_DIFFERENCES = [
  "each buffered record's message has a correlation id derived from IMEI + record time, not the uplink's",
] as const;

describe("Dragino process_data against IoTa's output", () => {
  it("matches derived/dragino_json_S31x-CB.process_data.json field by field", () => {
    const { groups, notes } = processDraginoData(sample, DRAGINO_MODELS["S31x-CB"]!);
    expect(groups).toHaveLength(derived.result.length);
    for (const [i, group] of groups.entries()) {
      const want = derived.result[i]!;
      expect(group.timestamp).toBe(want.timestamp);
      expect(group.timeseries).toEqual(want.timeseries);
      for (const point of group.timeseries) {
        expect(Object.keys(point)).toEqual(["name", "value"]);
      }
    }
    expect(notes).toEqual([]);
  });

  it("publishes one message per group, IoTa's key order, all valid at the gate", () => {
    const [entry] = normaliseDragino(
      sample,
      arrival("00000000-0000-4000-8000-000000000002"),
    ).devices;
    expect(entry!.device.lookup).toEqual({ IMEI: "866840078846294" });
    expect(entry!.device.create.name).toBe("dragino_866840078846294");
    expect(entry!.device.sighting.lastSeen).toBe("2025-09-11T05:13:20+00:00");
    const messages = entry!.messages(3).map(parseMessage);
    expect(messages).toHaveLength(9);
    for (const m of messages) {
      expect(Object.keys(m)).toEqual(["broker_correlation_id", "p_uid", "timestamp", "timeseries"]);
    }
    // INTENDED_DIFFERENCES[0]: record messages carry correlation ids of their own.
    expect(INTENDED_DIFFERENCES).toHaveLength(1);
    expect(messages[0]!.broker_correlation_id).toBe("00000000-0000-4000-8000-000000000002");
    expect(new Set(messages.map((m) => m.broker_correlation_id)).size).toBe(9);
  });

  it("gives a record the same message (and msg_key) in every uplink that re-sends it", () => {
    const later: Record<string, unknown> = { ...sample, time: "2025-09-11T05:28:20Z" };
    for (let n = 8; n >= 1; n--) {
      later[String(n + 1)] = sample[String(n)];
    }
    later["1"] = [21.0, 41.0, "2025-09-11T05:27:44Z"];
    const keysOf = (msg: Record<string, unknown>, cid: string) =>
      normaliseDragino(msg, arrival(cid))
        .devices[0]!.messages(3)
        .map((m) => messageKey(parseMessage(m)));
    const first = keysOf(sample, "00000000-0000-4000-8000-00000000000a");
    const second = keysOf(later, "00000000-0000-4000-8000-00000000000b");
    // The 8 records of the first uplink come again as records 2..9: same keys, so the mapper
    // stores and forwards each once. New: the uplink's own message and the new record 1.
    expect(second).toHaveLength(10);
    expect(second.filter((k) => first.includes(k))).toEqual(first.slice(1));
  });
});

describe("Dragino fixes (doc/sources-mqtt.md)", () => {
  it("dead-letters an unknown Model instead of losing it", () => {
    expect(() =>
      normaliseDragino(
        { ...sample, Model: "LHT65" },
        arrival("00000000-0000-4000-8000-000000000003"),
      ),
    ).toThrow(expect.objectContaining({ reason: "unknown_model" }) as PermanentError);
  });

  it("leaves records and uplinks from an unsynchronised clock (year ≤ 1970) out with a note", () => {
    const msg = { ...sample, "8": [1, 2, "1970-01-01T00:00:10Z"] };
    const { groups, notes } = processDraginoData(msg, DRAGINO_MODELS["S31x-CB"]!);
    expect(groups).toHaveLength(8);
    expect(notes).toEqual([
      { reason: "unsynchronised_clock", detail: expect.stringContaining("record 8") },
    ]);
    const early = { ...sample, time: "1970-01-01T00:01:00Z" };
    const result = processDraginoData(early, DRAGINO_MODELS["S31x-CB"]!);
    expect(result.groups.every((g) => g.record)).toBe(true);
    expect(result.notes.map((n) => n.reason)).toContain("unsynchronised_clock");
    expect(draginoRawTime(early)).toBeUndefined();
    expect(draginoRawTime(sample)).toBe("2025-09-11T05:13:20+00:00");
  });

  it("de-accumulates counters like IoTa, and through the counter limit when it wraps", () => {
    const { groups } = processDraginoData(cpl03([130, 120, 100], 135), DRAGINO_MODELS["CPL03-CB"]!);
    expect(groups.map((g) => g.timeseries.find((p) => p.name === "pulse1")?.value)).toEqual([
      5, 20, 10,
    ]);
    expect(groups[0]!.record).toBe(false);
    expect(decumulate(5, 10)).toBe(5); // a reset: pulses since it
    expect(decumulate(5, 10, 16_777_215)).toBe(5);
    expect(decumulate(4, 16_777_210, 16_777_215)).toBe(10); // IoTa emitted 4
  });

  it("dead-letters uplinks without IMEI or with a time that names no instant", () => {
    const cid = "00000000-0000-4000-8000-000000000004";
    const reason = (msg: unknown) => {
      try {
        normaliseDragino(msg, arrival(cid));
        return "accepted";
      } catch (err) {
        return (err as PermanentError).reason;
      }
    };
    expect(reason({ ...sample, IMEI: "" })).toBe("missing_imei");
    expect(reason({ ...sample, time: "2025-09-11T05:13:20" })).toBe("naive_timestamp");
    expect(reason({ ...sample, time: "yesterday" })).toBe("invalid_timestamp");
    expect(reason([sample])).toBe("invalid_payload");
  });

  it("notes broken records instead of failing the uplink", () => {
    const { groups, notes } = processDraginoData(
      { ...sample, "2": "garbage", "3": [1] },
      DRAGINO_MODELS["S31x-CB"]!,
    );
    expect(groups).toHaveLength(7);
    expect(notes.map((n) => n.reason)).toEqual(["invalid_record", "invalid_record"]);
  });
});
