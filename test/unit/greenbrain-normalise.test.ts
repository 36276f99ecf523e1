import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { PermanentError } from "../../src/core/errors.js";
import { parseMessage } from "../../src/core/message.js";
import { greenBrainAccounts } from "../../src/sources/greenbrain/poller.js";
import {
  prepareLatest,
  sensorGroupsOf,
  type SensorGroupRef,
} from "../../src/sources/greenbrain/normalise.js";
import type { Normalised } from "../../src/sources/pipeline.js";
import { Environment } from "../../src/core/environment.js";

const recorded = new URL("../fixtures/recorded/", import.meta.url);
const own = new URL("../fixtures/pollers/", import.meta.url);
const read = (base: URL, name: string): string => readFileSync(new URL(name, base), "utf8");

const latestText = read(own, "greenbrain_sensor_group_19640_latest.json");
const bootstrap = JSON.parse(read(own, "greenbrain_bootstrap.json")) as unknown;
const cid = "f0200e8b-9250-4812-9742-13dda8d1afca";
const group: SensorGroupRef = {
  id: 19640,
  name: "A Chardonnay heavy Enviropo ",
  systemId: 1896,
  stationId: 9889,
  stationName: "A Chard heavy",
  latitude: -34.2868,
  longitude: 146.0453,
};

function normalised(text: string, g = group): Normalised {
  const n = prepareLatest(text, g, cid).normalise();
  if (!n) {
    throw new Error("nothing normalised");
  }
  return n;
}

function rejection(text: string, g = group): PermanentError {
  try {
    prepareLatest(text, g, cid).normalise();
  } catch (err) {
    return err as PermanentError;
  }
  throw new Error("not rejected");
}

describe("GreenBrain bootstrap", () => {
  it("lists every sensor group with its station's details", () => {
    expect(sensorGroupsOf(bootstrap)).toEqual([
      group,
      {
        id: 19641,
        name: "B Shiraz light Enviropro",
        systemId: 1896,
        stationId: 9890,
        stationName: "B Shiraz light",
        latitude: "-34.2901",
        longitude: "146.0512",
      },
      expect.objectContaining({ id: 19642, stationId: 9890 }),
    ]);
  });

  it("refuses a bootstrap without systems", () => {
    expect(() => sensorGroupsOf({ user: {} })).toThrow(PermanentError);
  });
});

describe("GreenBrain accounts", () => {
  it("zips GREENBRAIN_USERS with GREENBRAIN_PASSWORDS", () => {
    expect(
      greenBrainAccounts({
        env: new Environment({ GREENBRAIN_USERS: "a, b", GREENBRAIN_PASSWORDS: "x,y" }),
      }),
    ).toEqual([
      { username: "a", password: "x" },
      { username: "b", password: "y" },
    ]);
  });

  it("refuses missing users and a password list of another length (IoTa dropped the extra users)", () => {
    expect(() => greenBrainAccounts({ env: new Environment({}) })).toThrow(/GREENBRAIN_USERS/);
    expect(() =>
      greenBrainAccounts({
        env: new Environment({ GREENBRAIN_USERS: "a,b", GREENBRAIN_PASSWORDS: "x" }),
      }),
    ).toThrow(/one password per user/);
  });
});

describe("GreenBrain sensor group normalisation", () => {
  it("makes IoTa's message: newest reading as Python isoformat, older readings timestamped", () => {
    const n = normalised(latestText);
    const [message] = n.messages(232) as Record<string, unknown>[];
    expect(() => parseMessage(message)).not.toThrow();
    expect(message).toEqual({
      broker_correlation_id: cid,
      p_uid: 232,
      timestamp: "2022-02-09T22:00:00+00:00",
      timeseries: [
        { name: "Soil Moisture Content 10cm", value: 40.06 },
        { name: "Soil Moisture Content 20cm", value: 43.93 },
        { name: "30cm", value: 45.2 },
        { name: "40cm", value: 46.71 },
        { name: "Soil Temperature 10cm", value: 21.3 },
        { name: "Soil Temperature 20cm", value: 20.85 },
        { name: "Sum 10-40cm", value: 175.9 },
        { name: "Battery", value: 12.71, timestamp: "2022-02-09T21:00:00+00:00" },
      ],
    });
    // The key order of IoTa's docstring example (and of its code).
    const docstring = JSON.parse(
      read(recorded, "normalised_pts_message_greenbrain_docstring.json"),
    ) as object;
    expect(Object.keys(message!)).toEqual(Object.keys(docstring));
  });

  it("finds the device by integer sensor_group_id and creates it with IoTa's fields", () => {
    const n = normalised(latestText);
    expect(n.device.lookup).toEqual({ sensor_group_id: 19640 });
    expect(n.device.create).toEqual({
      name: "A Chardonnay heavy Enviropo ",
      location: { lat: -34.2868, long: 146.0453 },
      source_ids: {
        sensor_group_id: 19640,
        system_id: 1896,
        station_id: 9889,
        station_name: "A Chard heavy",
      },
      properties: { greenbrain: JSON.parse(latestText), creation_correlation_id: cid },
    });
    expect(n.device.sighting.lastSeen).toBe("2022-02-09T22:00:00+00:00");
    expect(prepareLatest(latestText, group, cid).newest).toBe("2022-02-09T22:00:00+00:00");
  });

  it("takes numeric-string coordinates, and no location when they are missing", () => {
    const n = normalised(latestText, { ...group, latitude: "-34.29", longitude: "146.05" });
    expect(n.device.create.location).toEqual({ lat: -34.29, long: 146.05 });
    expect(normalised(latestText, { id: 19640 }).device.create.location).toBeNull();
  });

  it("keeps a time that has an offset, and publishes nothing for a group without readings", () => {
    const latest = JSON.parse(latestText) as {
      sensorTypes: Record<string, { sensors: { time: string; value: unknown }[] }>;
    };
    latest.sensorTypes.batteryVoltage!.sensors[0]!.time = "2022-02-10T08:30:00.250+11:00";
    const [message] = normalised(JSON.stringify(latest)).messages(1) as {
      timeseries: { name: string; timestamp?: string }[];
    }[];
    expect(message!.timeseries.find((p) => p.name === "Battery")!.timestamp).toBe(
      "2022-02-10T08:30:00.250000+11:00",
    );
    const empty = { ...latest, sensorTypes: {} };
    expect(prepareLatest(JSON.stringify(empty), group, cid).normalise()).toBeUndefined();
  });

  it("rejects the truncated excerpt IoTa documented, keeping it raw as text", () => {
    const excerpt = read(recorded, "greenbrain_sensor_group_latest_excerpt.txt");
    const body = excerpt.slice(excerpt.indexOf("{"));
    const prepared = prepareLatest(body, group, cid);
    expect(prepared.raw).toEqual({ text: body });
    expect(rejection(body).reason).toBe("invalid_json");
  });

  it("rejects wrong types, another sensor group and unreadable times with a reason", () => {
    const latest = JSON.parse(latestText) as Record<string, unknown>;
    expect(rejection(JSON.stringify({ ...latest, sensorTypes: [1, 2] })).reason).toBe(
      "invalid_response",
    );
    expect(rejection(latestText, { ...group, id: 1 }).reason).toBe("wrong_sensor_group");
    const badTime = latestText.replace('"2022-02-09T21:00:00.000"', '"yesterday"');
    const err = rejection(badTime);
    expect(err.reason).toBe("invalid_timestamp");
    expect(err.message).toContain("Battery");
    expect(prepareLatest(badTime, group, cid).raw).toEqual({ json: JSON.parse(badTime) });
  });
});
