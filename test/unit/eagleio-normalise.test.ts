import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { PermanentError } from "../../src/core/errors.js";
import { parseMessage } from "../../src/core/message.js";
import {
  groupNumberPoints,
  NUMBER_POINT,
  prepareGroup,
  type EagleGroup,
} from "../../src/sources/eagleio/normalise.js";

const recorded = new URL("../fixtures/recorded/", import.meta.url);
const own = new URL("../fixtures/pollers/", import.meta.url);
const read = (base: URL, name: string): unknown =>
  JSON.parse(readFileSync(new URL(name, base), "utf8")) as unknown;

const nodes = read(own, "eagleio_nodes.json") as Record<string, unknown>[];
const pdMap = read(recorded, "ict_eagleio_pd_map.json") as {
  physical_name: string;
  physical_uid: number;
  physical_source_ids: Record<string, unknown>;
  logical_last_msg: Record<string, unknown> | null;
}[];

function groupOf(key: string): EagleGroup {
  const group = groupNumberPoints(nodes).groups.find((g) => g.key === key);
  if (!group) {
    throw new Error(`no group ${key}`);
  }
  return group;
}

describe("EagleIO grouping", () => {
  it("groups NumberPoints by the exact first word of their name, in order of appearance", () => {
    const { groups, unusable } = groupNumberPoints(nodes);
    expect(groups.map((g) => [g.key, g.nodes.length])).toEqual([
      ["mncm1k703", 14],
      ["mncm1k70", 3],
    ]);
    expect(unusable).toEqual([]);
    // IoTa's substring test would have put all 14 mncm1k703 points into mncm1k70 as well.
    expect(groupOf("mncm1k70").nodes.every((n) => String(n.name).startsWith("mncm1k70 "))).toBe(
      true,
    );
    expect(groupOf("mncm1k703").nodes.every((n) => n._class === NUMBER_POINT)).toBe(true);
  });

  it("refuses an answer that is not an array, and sets aside points it cannot attribute", () => {
    expect(() => groupNumberPoints({ nodes })).toThrow(PermanentError);
    const { groups, unusable } = groupNumberPoints([
      7,
      { _class: NUMBER_POINT, name: " leading space" },
      { _class: NUMBER_POINT },
    ]);
    expect(groups).toEqual([]);
    expect(unusable.map((u) => u.node)).toEqual([
      7,
      { _class: NUMBER_POINT, name: " leading space" },
      { _class: NUMBER_POINT },
    ]);
  });
});

describe("EagleIO normalisation", () => {
  it("reproduces the message IoTa published for mncm1k703 (fixtures/ict_eagleio_pd_map.json)", () => {
    const entry = pdMap.find((e) => e.physical_name === "mncm1k703")!;
    const { l_uid: _lUid, ...expected } = entry.logical_last_msg!;
    const cid = expected.broker_correlation_id as string;
    const n = prepareGroup(groupOf("mncm1k703"), cid).normalise()!;
    const [message] = n.messages(entry.physical_uid) as Record<string, unknown>[];
    expect(() => parseMessage(message)).not.toThrow();
    expect(message).toEqual(expected);
    expect(Object.keys(message!)).toEqual([
      "broker_correlation_id",
      "p_uid",
      "timestamp",
      "timeseries",
    ]);
    expect(n.device.lookup).toEqual(entry.physical_source_ids);
  });

  it("creates the device as IoTa did, named by the key, with the node list in its properties", () => {
    const group = groupOf("mncm1k703");
    const cid = "ef043d8d-447c-4f28-bc55-2d9248049a14";
    const prepared = prepareGroup(group, cid);
    expect(prepared.newest).toBe("2026-08-17T02:04:07+00:00");
    expect(prepared.raw).toEqual({ json: group.nodes });
    const n = prepared.normalise()!;
    expect(n.device.create).toEqual({
      name: "mncm1k703",
      location: null,
      source_ids: { sensor_group_id: "mncm1k703" },
      properties: { ict_eagleio: group.nodes, creation_correlation_id: cid },
    });
    expect(n.device.sighting.lastSeen).toBe("2026-08-17T02:04:07+00:00");
  });

  it("leaves out points that never reported", () => {
    const n = prepareGroup(
      groupOf("mncm1k70"),
      "ef043d8d-447c-4f28-bc55-2d9248049a14",
    ).normalise()!;
    const [message] = n.messages(1) as { timestamp: string; timeseries: unknown[] }[];
    expect(message).toMatchObject({
      timestamp: "2026-08-17T01:58:10+00:00",
      timeseries: [
        { name: "battV", value: 4.01 },
        { name: "solV", value: 0.008 },
      ],
    });
  });

  it("rejects a point whose currentTime is not a date-time, keeping the nodes raw", () => {
    const group: EagleGroup = {
      key: "x1",
      nodes: [{ _class: NUMBER_POINT, name: "x1 battV", currentValue: 4, currentTime: 17 }],
    };
    const prepared = prepareGroup(group, "ef043d8d-447c-4f28-bc55-2d9248049a14");
    expect(prepared.raw).toEqual({ json: group.nodes });
    expect(() => prepared.normalise()).toThrow(
      expect.objectContaining({ reason: "invalid_timestamp" }),
    );
  });
});
