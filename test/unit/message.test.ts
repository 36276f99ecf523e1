import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { PermanentError } from "../../src/core/errors.js";
import { decodeMessage, messageKey, parseMessage } from "../../src/core/message.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const readFixture = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(name, fixtures), "utf8"));

describe("the normalised message gate", () => {
  it("accepts IoTa's README LTS example and the GreenBrain docstring message", () => {
    expect(() =>
      parseMessage(readFixture("normalised_lts_message_readme_example.json")),
    ).not.toThrow();
    expect(() =>
      parseMessage(readFixture("normalised_pts_message_greenbrain_docstring.json")),
    ).not.toThrow();
  });

  it("accepts IoTa's derived TTN message", () => {
    const derived = readFixture("derived/ttn_netvox.physical_timeseries.json") as {
      result: object;
    };
    // The fixture holds placeholders for the two values a live system assigns.
    const message = {
      ...derived.result,
      broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
      p_uid: 1,
    };
    expect(() => parseMessage(message)).not.toThrow();
  });

  it("returns the input object itself, so key order and unknown keys pass through", () => {
    const input = {
      timestamp: "2023-01-30T06:21:56Z",
      extra: { a: 1 },
      broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
      p_uid: 1,
      timeseries: [],
    };
    expect(parseMessage(input)).toBe(input);
  });

  it.each([
    ["a naive timestamp", { timestamp: "2023-01-30T06:21:56" }, "timestamp"],
    ["an impossible date", { timestamp: "2023-02-30T06:21:56Z" }, "timestamp"],
    ["a missing p_uid", { p_uid: undefined }, "p_uid"],
    ["a non-integer p_uid", { p_uid: 1.5 }, "p_uid"],
    ["a bad correlation id", { broker_correlation_id: "nope" }, "broker_correlation_id"],
    ["a point without a name", { timeseries: [{ value: 1 }] }, "timeseries.0.name"],
    ["a non-array timeseries", { timeseries: {} }, "timeseries"],
  ])("rejects %s and names the field", (_what, change, field) => {
    const base = {
      broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
      p_uid: 1,
      timestamp: "2023-01-30T06:21:56Z",
      timeseries: [],
    };
    try {
      parseMessage({ ...base, ...change });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as PermanentError).reason).toBe("invalid_message");
      expect((err as Error).message).toContain(field);
    }
  });

  it("rejects bytes that are not JSON, and NaN", () => {
    expect(() => decodeMessage("{not json")).toThrow(/not JSON/);
    expect(() => decodeMessage('{"value": NaN}')).toThrow(PermanentError);
  });

  it("accepts strings, booleans, null and nested values as point values", () => {
    const m = {
      broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
      p_uid: 1,
      timestamp: "2023-01-30T06:21:56.123456789+10:00",
      timeseries: [
        { name: "Model", value: "S31x-CB" },
        { name: "ok", value: true },
        { name: "n", value: null },
        { name: "o", value: { a: [1] } },
      ],
    };
    expect(() => parseMessage(m)).not.toThrow();
  });
});

describe("messageKey", () => {
  const m = {
    broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
    p_uid: 1,
    timestamp: "2023-01-30T06:21:56Z",
    timeseries: [{ name: "a", value: 1 }],
  };
  it("is the same before and after the mapper adds l_uid", () => {
    expect(messageKey({ ...m, l_uid: 7 })).toBe(messageKey(m));
  });
  it("differs for different content under one correlation id", () => {
    expect(messageKey({ ...m, timestamp: "2023-01-30T06:21:57Z" })).not.toBe(messageKey(m));
    expect(messageKey({ ...m, p_uid: 2 })).not.toBe(messageKey(m));
  });
  it("is UUID-shaped (stored in a uuid column)", () => {
    expect(messageKey(m)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });
});
