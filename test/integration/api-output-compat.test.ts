import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { assumeServerZone } from "../../src/core/datetime-input.js";
import { parseInstant } from "../../src/core/time.js";
import { startApi, type ApiHarness } from "../helpers/api.js";
import { datetimeStrings, python310FromIsoformatAccepts } from "../helpers/python-iso.js";

/**
 * What IoTa's clients read from every endpoint that returns devices, IoTa's and ours alike:
 * `location['lat']` works (no location is `{"lat": null, "long": null}`), and every datetime
 * parses with Python 3.10's fromisoformat. And `last_seen` is accepted in pydantic's forms.
 */

let api: ApiHarness;
let admin: { token: string };

beforeAll(async () => {
  api = await startApi();
  admin = { token: api.adminToken };
});

afterAll(async () => {
  await api?.close();
});

async function ok(method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await api.call(method, path, { ...admin, body });
  expect(res.status, `${method} ${path}: ${await res.clone().text()}`).toBeLessThan(300);
  return res.status === 204 ? undefined : res.json();
}

/** Every object in `value` that is a device (it has uid, name and a location key). */
function devices(value: unknown, found: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (Array.isArray(value)) {
    value.forEach((v) => devices(v, found));
  } else if (value !== null && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    if ("uid" in obj && "name" in obj && "location" in obj) {
      found.push(obj);
    }
    Object.values(obj).forEach((v) => devices(v, found));
  }
  return found;
}

describe("devices and datetimes as IoTa's clients read them", () => {
  it("take last_seen as a Unix time or without an offset, as IoTa's pydantic did", async () => {
    const ms = (await ok("POST", "/physical/devices/", {
      name: "unix ms",
      source_name: "ttn",
      last_seen: 1651833000123,
    })) as { uid: number; last_seen: string; location: unknown };
    expect(ms.last_seen).toBe("2022-05-06T10:30:00.123000+00:00");
    expect(ms.location).toEqual({ lat: null, long: null });
    const seconds = (await ok("POST", "/logical/devices/", {
      name: "unix s",
      last_seen: 1651833000.5,
    })) as { last_seen: string };
    expect(seconds.last_seen).toBe("2022-05-06T10:30:00.500000+00:00");
    const naive = (await ok("POST", "/logical/devices/", {
      name: "naive",
      last_seen: "2022-05-06 10:30",
    })) as { last_seen: string };
    expect(parseInstant(naive.last_seen)).toBe(parseInstant(assumeServerZone("2022-05-06 10:30")));
    const refused = await api.call("POST", "/logical/devices/", {
      ...admin,
      body: { name: "bad", last_seen: "soon" },
    });
    expect(refused.status).toBe(422);
  });

  it("return IoTa's location shape and Python 3.10 datetimes from every device endpoint", async () => {
    const pd = (await ok("POST", "/physical/devices/", {
      name: "no location",
      source_name: "ttn",
      last_seen: "2024-01-01T00:00:00.1Z",
    })) as { uid: number };
    const located = (await ok("POST", "/physical/devices/", {
      name: "located",
      source_name: "ttn",
      location: { lat: -33.5, long: 151.25 },
    })) as { uid: number };
    const ld = (await ok("POST", "/logical/devices/", { name: "site" })) as { uid: number };
    await ok("POST", "/mappings/", {
      pd: pd.uid,
      ld: ld.uid,
      start_time: "2024-01-02T00:00:00.5Z",
    });
    const bodies = await Promise.all(
      [
        "/physical/devices/",
        `/physical/devices/${pd.uid}`,
        `/physical/devices/${located.uid}`,
        "/physical/devices/unmapped/",
        "/logical/devices/",
        `/logical/devices/${ld.uid}`,
        "/mappings/current/?return_uids=false",
        "/mappings/current/",
        `/mappings/physical/current/${pd.uid}`,
        `/mappings/physical/latest/${pd.uid}`,
        `/mappings/logical/all/${ld.uid}`,
        "/events?limit=1000",
      ].map((path) => ok("GET", path)),
    );
    const found = devices(bodies);
    expect(found.length).toBeGreaterThan(20);
    for (const device of found) {
      const location = device.location as Record<string, unknown>;
      // d['location']['lat'] must work: an object with exactly IoTa's two keys.
      expect(typeof location, JSON.stringify(device)).toBe("object");
      expect(Object.keys(location ?? {}).sort(), JSON.stringify(device)).toEqual(["lat", "long"]);
    }
    expect(found.some((d) => (d.location as { lat: unknown }).lat === null)).toBe(true);
    const times = datetimeStrings(bodies);
    expect(times).toContain("2024-01-01T00:00:00.100000+00:00");
    expect(times).toContain("2024-01-02T00:00:00.500000+00:00");
    expect(times.filter((t) => !python310FromIsoformatAccepts(t))).toEqual([]);
  });
});
