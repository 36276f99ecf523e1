import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { PermanentError } from "../../src/core/errors.js";
import {
  isSimulated,
  normaliseTtnUplink,
  parseUplink,
  ttnCorrelationId,
  ttnIds,
  ttnMessageType,
} from "../../src/sources/ttn/normalise.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const text = (name: string): string => readFileSync(new URL(name, fixtures), "utf8");
const json = (name: string): Record<string, unknown> =>
  JSON.parse(text(name)) as Record<string, unknown>;

const netvox = json("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json");
const derived = json("derived/ttn_netvox.physical_timeseries.json").result as Record<
  string,
  unknown
>;
const cid = "83d04e6f-db16-4280-8337-53f11b2335c6";
const arrived = "2024-01-01T00:00:00.000Z";

describe("TTN uplink normalisation (IoTa's AllMsgsWriter rules)", () => {
  it("matches IoTa's derived message for the Netvox uplink", () => {
    const n = normaliseTtnUplink(netvox, cid, arrived);
    const [message] = n.messages(42) as Record<string, unknown>[];
    expect(message).toEqual({ ...derived, broker_correlation_id: cid, p_uid: 42 });
    expect(Object.keys(message!)).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
    ]);
    // The nanosecond timestamp is kept verbatim, not rounded through a Date.
    expect(message!.timestamp).toBe("2022-12-16T01:09:57.515920941Z");
  });

  it("identifies the device by lower-cased DevEUI and describes it as IoTa does", () => {
    const n = normaliseTtnUplink(netvox, cid, arrived);
    expect(n.device.lookup).toEqual({ dev_eui: "00137a100000bbd2" });
    expect(n.device.create.name).toBe("eui-00137a100000bbd2");
    expect(n.device.create.source_ids).toEqual({
      app_id: "temphumid-netvox-r718a",
      dev_id: "eui-00137a100000bbd2",
      dev_eui: "00137a100000bbd2",
    });
    expect(n.device.create.properties).toMatchObject({
      creation_correlation_id: cid,
      last_msg: netvox,
    });
    expect(n.device.sighting.lastSeen).toBe("2022-12-16T01:09:57.515920941Z");
  });

  it("falls back to application and device id for a device without a DevEUI (IoTa crashed)", () => {
    const ids = netvox.end_device_ids as Record<string, unknown>;
    const { dev_eui: _d, ...rest } = ids;
    const n = normaliseTtnUplink({ ...netvox, end_device_ids: rest }, cid, arrived);
    expect(n.device.lookup).toEqual({
      app_id: "temphumid-netvox-r718a",
      dev_id: "eui-00137a100000bbd2",
    });
  });

  it("accepts The Things Stack's documentation example, which omits f_port", () => {
    const n = normaliseTtnUplink(json("ttn_v3_uplink_example.json"), cid, arrived);
    const [message] = n.messages(1) as { timeseries: unknown[]; timestamp: string }[];
    expect(message!.timeseries).toEqual([
      { name: "temperature", value: 1 },
      { name: "luminosity", value: 0.64 },
    ]);
    expect(message!.timestamp).toBe("2020-02-12T15:15:45.789585559Z");
  });

  it("publishes nothing for an uplink without decoded_payload, but still sees the device", () => {
    const simulated = json("ttn_webhook_simulated_uplink_2022-01-23.json");
    const n = normaliseTtnUplink(simulated, cid, arrived);
    expect(n.messages(1)).toEqual([]);
    expect(n.device.sighting.lastSeen).toBe("2022-01-23T20:37:58.107539052Z");
  });

  it("uses the arrival time when the uplink carries no received_at at all", () => {
    const { received_at: _r, ...body } = netvox;
    const um = { ...(body.uplink_message as object), received_at: undefined };
    const n = normaliseTtnUplink({ ...body, uplink_message: um }, cid, arrived);
    expect(n.device.sighting.lastSeen).toBe(arrived);
  });

  it.each([
    ["a join-accept", json("ttn_v3_join_accept_example.json"), /join_accept/],
    ["a downlink ack", json("ttn_v3_downlink_ack_example.json"), /downlink_ack/],
    ["an array", [1, 2], /not a JSON object/],
    ["an object without device ids", { uplink_message: {} }, /end_device_ids/],
    [
      "a bad DevEUI",
      { ...netvox, end_device_ids: { ...(netvox.end_device_ids as object), dev_eui: "zz" } },
      /dev_eui/,
    ],
  ])("rejects %s with a reason", (_what, body, message) => {
    expect(() => parseUplink(body)).toThrow(PermanentError);
    expect(() => parseUplink(body)).toThrow(message);
  });

  it("rejects a naive received_at", () => {
    const um = { ...(netvox.uplink_message as object), received_at: "2022-12-16T01:09:57" };
    expect(() => normaliseTtnUplink({ ...netvox, uplink_message: um }, cid, arrived)).toThrow(
      /offset/,
    );
  });
});

describe("TTN uplinks beyond IoTa: simulated, decoded locally, zero values omitted", () => {
  const simulated = json("ttn_webhook_simulated_uplink_2022-01-23.json");

  it("flags a simulated uplink on its message", () => {
    const decoding = {
      ok: true,
      name: "oai-test-devices",
      data: { v: 5 },
      warnings: [],
      errors: [],
    } as const;
    const [message] = normaliseTtnUplink(simulated, cid, arrived, { decoding }).messages(
      3,
    ) as Record<string, unknown>[];
    expect(Object.keys(message!)).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
      "simulated",
      "decoder",
    ]);
    expect(message!.simulated).toBe(true);
    expect(message!.decoder).toEqual({ name: "oai-test-devices" });
    expect(isSimulated(parseUplink(simulated))).toBe(true);
    expect(isSimulated(parseUplink(netvox))).toBe(false);
  });

  it("lets a local decoding replace TTN's decoded_payload and records its warnings", () => {
    const decoding = {
      ok: true,
      name: "temphumid-netvox-r718a",
      data: { temperature: 16.46 },
      warnings: ["low battery"],
      errors: [],
    } as const;
    const [message] = normaliseTtnUplink(netvox, cid, arrived, { decoding }).messages(3) as Record<
      string,
      unknown
    >[];
    expect(message!.timeseries).toEqual([{ name: "temperature", value: 16.46 }]);
    expect(message!.decoder).toEqual({ name: "temphumid-netvox-r718a", warnings: ["low battery"] });
    expect(message).not.toHaveProperty("simulated");
  });

  it("fails a failed local decoding with its reason, after the device is known", () => {
    const decoding = { ok: false, name: "x", reason: "decoder_timeout", error: "slow" } as const;
    const n = normaliseTtnUplink(netvox, cid, arrived, { decoding });
    expect(n.device.sighting.lastSeen).toBe("2022-12-16T01:09:57.515920941Z");
    expect(() => n.messages(1)).toThrow(PermanentError);
    expect(() => n.messages(1)).toThrow("decoder x: slow");
  });

  it("marks a new device for a metadata fetch, named by its device id until then", () => {
    const n = normaliseTtnUplink(netvox, cid, arrived);
    expect(n.device.create.properties).toMatchObject({
      ttn_metadata_pending: { name: "eui-00137a100000bbd2", since: arrived },
    });
  });

  it("treats an absent f_cnt as 0 (the first uplink after a join) in the uplink's identity", () => {
    const um = netvox.uplink_message as Record<string, unknown>;
    const { f_cnt: _c, f_port: _p, ...rest } = um;
    const omitted = { ...netvox, uplink_message: rest };
    const zero = { ...netvox, uplink_message: { ...rest, f_cnt: 0, f_port: 0 } };
    expect(normaliseTtnUplink(omitted, cid, arrived).messages(1)).toHaveLength(1);
    const bytes = Buffer.from("x");
    // One uplink (same key); as bodies they differ, so each has its own correlation id.
    expect(ttnIds(omitted, bytes).uplinkKey).toBe(ttnIds(zero, bytes).uplinkKey);
    expect(ttnIds(omitted, bytes).uplinkKey).toEqual(expect.any(String));
  });
});

describe("TTN message types and correlation ids", () => {
  it("tells message types apart by their top-level key", () => {
    expect(ttnMessageType(netvox)).toBe("uplink_message");
    expect(ttnMessageType(json("ttn_v3_join_accept_example.json"))).toBe("join_accept");
    expect(ttnMessageType({ hello: 1 })).toBeUndefined();
  });

  it("gives the same uplink the same id however often it is posted", () => {
    const bytes = Buffer.from(JSON.stringify(netvox));
    const again = Buffer.from(JSON.stringify(netvox, null, 2));
    expect(ttnCorrelationId(netvox, bytes)).toBe(ttnCorrelationId(netvox, again));
    const next = { ...netvox, uplink_message: { ...(netvox.uplink_message as object), f_cnt: 5 } };
    expect(ttnCorrelationId(next, bytes)).not.toBe(ttnCorrelationId(netvox, bytes));
  });

  it("keeps every id it ever gave: stored rows and retried posts are matched by them", () => {
    // Pinned values: a change here would store a retried uplink twice across an upgrade.
    const bytes = Buffer.from(text("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json"));
    expect(ttnIds(JSON.parse(bytes.toString()), bytes)).toEqual({
      correlationId: "3ba42caf-d337-5311-9f6a-32f3c21a8df6",
      uplinkKey: "a70c0cc8-c83f-5a25-8236-a48a78c91f37",
    });
    const join = Buffer.from(text("ttn_v3_join_accept_example.json"));
    expect(ttnIds(JSON.parse(join.toString()), join)).toEqual({
      correlationId: "11bfa421-0fa6-5f87-9369-e59f0d3c25c1",
    });
    // A lone surrogate in a device id (escaped in the body) is part of the ids too.
    const odd = Buffer.from(
      JSON.stringify({
        end_device_ids: { device_id: "d\ud800é", application_ids: { application_id: "a" } },
        uplink_message: { f_cnt: 1 },
        received_at: "2024-01-01T00:00:00Z",
      }),
    );
    expect(ttnIds(JSON.parse(odd.toString()), odd)).toEqual({
      correlationId: "deea5795-4dc1-53a4-a93e-7942c1277b3a",
      uplinkKey: "bc30f72c-54c1-5584-a1b6-a46e7865f600",
    });
  });

  it("derives other bodies' ids from their bytes", () => {
    const a = ttnCorrelationId(undefined, Buffer.from("not json"));
    expect(a).toBe(ttnCorrelationId(undefined, Buffer.from("not json")));
    expect(a).not.toBe(ttnCorrelationId(undefined, Buffer.from("not json!")));
  });
});
