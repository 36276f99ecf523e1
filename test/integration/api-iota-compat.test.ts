import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ADMIN, basic, startApi, type ApiHarness } from "../helpers/api.js";

/**
 * Replays the requests IoTa's clients make (IoTa's test_restapi.py, its web app's calls) with the
 * bodies a pydantic client sends, and checks the answers field by field.
 */

let api: ApiHarness;
let admin: { token: string };
let reader: { token: string };

beforeAll(async () => {
  api = await startApi();
  admin = { token: api.adminToken };
  reader = { token: api.readerToken };
});

afterAll(async () => {
  await api?.close();
});

/** What pydantic's `.json()` of IoTa's PhysicalDevice looks like, uid not yet known. */
function iotaPd(name: string) {
  return {
    uid: null,
    name,
    location: { lat: -33.8688, long: 151.2093 },
    last_seen: "2024-03-04T05:06:07.123456+00:00",
    properties: { app_id: "x", nested: { level: 2 } },
    source_name: "ttn",
    source_ids: { dev_eui: `eui-${name}` },
  };
}

function iotaLd(name: string) {
  return {
    uid: null,
    name,
    location: { lat: -30.5, long: 150.1 },
    last_seen: "2024-03-04T05:06:07.123456+00:00",
    properties: { ubidots: { label: name } },
  };
}

async function body<T = Record<string, unknown>>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

describe("IoTa's test_restapi.py, replayed", () => {
  it("lists the seeded sources; 401 without or with an empty Authorization", async () => {
    const res = await api.call("GET", "/physical/sources/", reader);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([
      "dragino_json",
      "greenbrain",
      "ict_eagleio",
      "ict_mqtt",
      "ttn",
      "wombat",
      "ydoc",
    ]);
    expect((await api.call("GET", "/physical/sources/")).status).toBe(401);
    const empty = await api.call("GET", "/physical/sources/", { headers: { authorization: "" } });
    expect(empty.status).toBe(401);
  });

  it("creates, reads, updates and deletes a physical device", async () => {
    const input = iotaPd("pd-1");
    expect((await api.call("POST", "/physical/devices/", { ...reader, body: input })).status).toBe(
      403,
    );
    const res = await api.call("POST", "/physical/devices/", { ...admin, body: input });
    expect(res.status).toBe(201);
    const created = await body<Omit<typeof input, "uid"> & { uid: number }>(res);
    expect(Object.keys(created)).toEqual([
      "uid",
      "name",
      "location",
      "last_seen",
      "properties",
      "source_name",
      "source_ids",
    ]);
    expect(created).toEqual({ ...input, uid: created.uid });
    expect(res.headers.get("location")).toBe(`${api.base}/physical/devices/${created.uid}`);

    const missing = await api.call("GET", "/physical/devices/999999", reader);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ detail: "Physical device not found" });
    expect(await body(await api.call("GET", `/physical/devices/${created.uid}`, reader))).toEqual(
      created,
    );
    const bySource = await body<{ uid: number }[]>(
      await api.call("GET", "/physical/devices/?source_name=ttn", reader),
    );
    expect(bySource.map((d) => d.uid)).toContain(created.uid);
    const noProps = await body<{ properties: unknown }[]>(
      await api.call("GET", "/physical/devices/?include_properties=false", reader),
    );
    expect(noProps.every((d) => JSON.stringify(d.properties) === "{}")).toBe(true);

    const same = await api.call("PATCH", "/physical/devices/", { ...admin, body: created });
    expect(same.status).toBe(200);
    expect(await same.json()).toEqual(created);
    const renamed = { ...created, name: "pd-1 renamed" };
    expect(
      await body(await api.call("PATCH", "/physical/devices/", { ...admin, body: renamed })),
    ).toEqual(renamed);
    const nested = { ...renamed, properties: { app_id: "x", nested: { level: 3 } } };
    expect(
      await body(await api.call("PATCH", "/physical/devices/", { ...admin, body: nested })),
    ).toEqual(nested);
    const unknown = await api.call("PATCH", "/physical/devices/", {
      ...admin,
      body: { ...nested, uid: 999999 },
    });
    expect(unknown.status).toBe(404);

    const deleted = await api.call("DELETE", `/physical/devices/${created.uid}`, admin);
    expect(deleted.status).toBe(204);
    expect(await deleted.text()).toBe("");
    expect((await api.call("GET", `/physical/devices/${created.uid}`, admin)).status).toBe(404);
    const again = await api.call("DELETE", `/physical/devices/${created.uid}`, admin);
    expect(again.status).toBe(404);
    expect(await again.json()).toEqual({ detail: "Not Found" });
  });

  it("adds and lists notes", async () => {
    const pd = await body<{ uid: number }>(
      await api.call("POST", "/physical/devices/", { ...admin, body: iotaPd("pd-notes") }),
    );
    const note = { uid: null, ts: null, note: "Replaced battery" };
    expect(
      (await api.call("POST", `/physical/devices/notes/${pd.uid}`, { ...reader, body: note }))
        .status,
    ).toBe(403);
    const added = await api.call("POST", `/physical/devices/notes/${pd.uid}`, {
      ...admin,
      body: note,
    });
    expect(added.status).toBe(201);
    expect(await added.json()).toBeNull();
    await api.call("POST", `/physical/devices/notes/${pd.uid}`, {
      ...admin,
      body: { note: "Moved" },
    });
    expect(
      (await api.call("POST", "/physical/devices/notes/999999", { ...admin, body: note })).status,
    ).toBe(404);
    const notes = await body<{ uid: number; ts: string; note: string }[]>(
      await api.call("GET", `/physical/devices/notes/${pd.uid}`, reader),
    );
    expect(notes.map((n) => Object.keys(n))).toEqual([
      ["uid", "ts", "note"],
      ["uid", "ts", "note"],
    ]);
    expect(notes.map((n) => n.note)).toEqual(["Replaced battery", "Moved"]);
    expect(notes[0]!.ts <= notes[1]!.ts).toBe(true);
    expect(await body(await api.call("GET", "/physical/devices/notes/999999", reader))).toEqual([]);
  });

  it("creates, reads, updates and deletes a logical device", async () => {
    const input = iotaLd("ld-1");
    expect((await api.call("POST", "/logical/devices/", { ...reader, body: input })).status).toBe(
      403,
    );
    const res = await api.call("POST", "/logical/devices/", { ...admin, body: input });
    expect(res.status).toBe(201);
    const created = await body<Omit<typeof input, "uid"> & { uid: number }>(res);
    expect(Object.keys(created)).toEqual(["uid", "name", "location", "last_seen", "properties"]);
    expect(created).toEqual({ ...input, uid: created.uid });
    expect(res.headers.get("location")).toBe(`${api.base}/logical/devices/${created.uid}`);
    const missing = await api.call("GET", "/logical/devices/999999", reader);
    expect(await missing.json()).toEqual({ detail: "Logical device not found" });
    const list = await body<{ properties: object }[]>(
      await api.call("GET", "/logical/devices/?include_properties=false", reader),
    );
    expect(list.every((d) => Object.keys(d.properties).length === 0)).toBe(true);
    const renamed = { ...created, name: "ld-1 renamed" };
    expect(
      await body(await api.call("PATCH", "/logical/devices/", { ...admin, body: renamed })),
    ).toEqual(renamed);
    expect(
      (
        await api.call("PATCH", "/logical/devices/", {
          ...admin,
          body: { ...renamed, uid: 999999 },
        })
      ).status,
    ).toBe(404);
    expect((await api.call("DELETE", `/logical/devices/${created.uid}`, reader)).status).toBe(403);
    expect((await api.call("DELETE", `/logical/devices/${created.uid}`, admin)).status).toBe(204);
    expect((await api.call("GET", `/logical/devices/${created.uid}`, admin)).status).toBe(404);
    expect((await api.call("DELETE", `/logical/devices/${created.uid}`, admin)).status).toBe(404);
  });

  it("maps devices as IoTa does, with full device objects", async () => {
    const pd = await body<Record<string, unknown> & { uid: number }>(
      await api.call("POST", "/physical/devices/", { ...admin, body: iotaPd("pd-map") }),
    );
    const pd2 = await body<Record<string, unknown> & { uid: number }>(
      await api.call("POST", "/physical/devices/", { ...admin, body: iotaPd("pd-map-2") }),
    );
    const ld = await body<Record<string, unknown> & { uid: number }>(
      await api.call("POST", "/logical/devices/", { ...admin, body: iotaLd("ld-map") }),
    );
    const mapping = (p: object, start: string) => ({
      pd: p,
      ld,
      start_time: start,
      end_time: null,
      is_active: true,
    });
    const t1 = "2024-01-01T00:00:00.000001+00:00";
    const created = await api.call("POST", "/mappings/", { ...admin, body: mapping(pd, t1) });
    expect(created.status).toBe(201);
    expect(await created.json()).toBeNull();
    const twice = await api.call("POST", "/mappings/", { ...admin, body: mapping(pd, t1) });
    expect(twice.status).toBe(400);
    expect(
      (
        await api.call("POST", "/mappings/", {
          ...admin,
          body: mapping(pd, "2024-02-01T00:00:00+00:00"),
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await api.call("POST", "/mappings/", {
          ...admin,
          body: mapping({ ...pd, uid: 999999 }, t1),
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await api.call("POST", "/mappings/", {
          ...admin,
          body: { ...mapping(pd, t1), ld: { ...ld, uid: 999999 } },
        })
      ).status,
    ).toBe(404);

    const current = await body(
      await api.call("GET", `/mappings/physical/current/${pd.uid}`, reader),
    );
    expect(current).toEqual({ pd, ld, start_time: t1, end_time: null, is_active: true });
    expect(
      await body(await api.call("GET", `/mappings/logical/current/${ld.uid}`, reader)),
    ).toEqual(current);
    const currentUids = await body<unknown[]>(await api.call("GET", "/mappings/current/", reader));
    expect(currentUids).toContainEqual({
      pd: pd.uid,
      ld: ld.uid,
      start_time: t1,
      end_time: null,
      is_active: true,
    });
    const currentFull = await body<unknown[]>(
      await api.call("GET", "/mappings/current/?return_uids=false", reader),
    );
    expect(currentFull).toContainEqual(current);

    expect((await api.call("PATCH", `/mappings/physical/end/${pd.uid}`, admin)).status).toBe(204);
    const gone = await api.call("GET", `/mappings/physical/current/${pd.uid}`, reader);
    expect(gone.status).toBe(404);
    expect(await gone.json()).toEqual({
      detail: `Device mapping for physical device ${pd.uid} not found.`,
    });
    const latest = await body<{ end_time: string | null }>(
      await api.call("GET", `/mappings/physical/latest/${pd.uid}`, reader),
    );
    expect(latest).toMatchObject({ pd, ld, start_time: t1, is_active: true });
    expect(latest.end_time).not.toBeNull();
    const llatest = await api.call("GET", `/mappings/logical/latest/${ld.uid}`, reader);
    expect(await llatest.json()).toEqual(latest);
    const lgone = await api.call("GET", `/mappings/logical/current/${ld.uid}`, reader);
    expect(await lgone.json()).toEqual({
      detail: `Device mapping for logical device ${ld.uid} not found.`,
    });
    expect((await api.call("PATCH", `/mappings/physical/end/${pd.uid}`, admin)).status).toBe(404);

    const t2 = "2030-01-01T00:00:00+00:00";
    expect((await api.call("POST", "/mappings/", { ...admin, body: mapping(pd, t2) })).status).toBe(
      201,
    );
    // Mapping another physical device to the logical device ends the first mapping.
    const t3 = "2031-01-01T00:00:00+00:00";
    expect(
      (await api.call("POST", "/mappings/", { ...admin, body: mapping(pd2, t3) })).status,
    ).toBe(201);
    const history = await body<
      { pd: { uid: number }; start_time: string; end_time: string | null }[]
    >(await api.call("GET", `/mappings/logical/all/${ld.uid}`, reader));
    expect(history.map((m) => [m.pd.uid, m.start_time])).toEqual([
      [pd2.uid, t3],
      [pd.uid, t2],
      [pd.uid, t1],
    ]);
    expect(history[1]!.end_time).toBe(t3);
    expect(await body(await api.call("GET", "/mappings/physical/all/999999", reader))).toEqual([]);
    // The current mapping starts in the future, so it cannot end now (IoTa: a 500).
    const early = await api.call("PATCH", `/mappings/logical/end/${ld.uid}`, admin);
    expect(early.status).toBe(400);
    expect(await early.json()).toEqual({
      detail: "cannot end the mapping: a mapping must end after it starts",
    });
  });

  it("exchanges Basic credentials for a token that works as Bearer", async () => {
    const res = await api.call("GET", "/token", { headers: basic(ADMIN.username, ADMIN.password) });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const token = JSON.parse(await res.text()) as string;
    expect(typeof token).toBe("string");
    expect((await api.call("GET", "/physical/sources/", { token })).status).toBe(200);
  });
});

describe("answers an IoTa client depends on", () => {
  it("PATCH of a whole device whose uid is null or missing is 404, as IoTa", async () => {
    for (const [path, input, detail] of [
      ["/physical/devices/", iotaPd("never-created"), "Physical device not found"],
      ["/logical/devices/", iotaLd("never-created"), "Logical device not found"],
    ] as const) {
      const nullUid = await api.call("PATCH", path, { ...admin, body: input });
      expect(nullUid.status, path).toBe(404);
      expect(await nullUid.json()).toEqual({ detail });
      const { uid: _uid, ...withoutUid } = input;
      expect((await api.call("PATCH", path, { ...admin, body: withoutUid })).status, path).toBe(
        404,
      );
    }
    const note = await api.call("PATCH", "/physical/devices/notes/", {
      ...admin,
      body: { uid: null, note: "x" },
    });
    expect(note.status).toBe(404);
  });

  it("ignores body fields it does not know, as IoTa's pydantic models", async () => {
    const extra = { colour: "red", "fields from a newer client": [1] };
    const pdInput = {
      ...iotaPd("pd-extra"),
      ...extra,
      location: { lat: -33.5, long: 151.5, alt: 3 },
    };
    const made = await api.call("POST", "/physical/devices/", { ...admin, body: pdInput });
    expect(made.status).toBe(201);
    const pd = await body<{ uid: number; location: unknown; colour?: unknown }>(made);
    expect(pd.colour).toBeUndefined();
    expect(pd.location).toEqual({ lat: -33.5, long: 151.5 });
    const updated = await api.call("PATCH", "/physical/devices/", {
      ...admin,
      body: { ...pd, ...extra, name: "pd-extra 2" },
    });
    expect(updated.status).toBe(200);
    expect(await body(updated)).toMatchObject({ uid: pd.uid, name: "pd-extra 2" });
    const partial = await api.call("PATCH", `/physical/devices/${pd.uid}`, {
      ...admin,
      body: { name: "pd-extra 3", ...extra },
    });
    expect(partial.status).toBe(200);

    const ldRes = await api.call("POST", "/logical/devices/", {
      ...admin,
      body: { ...iotaLd("ld-extra"), ...extra },
    });
    expect(ldRes.status).toBe(201);
    const ld = await body<{ uid: number }>(ldRes);
    expect(
      (await api.call("PATCH", "/logical/devices/", { ...admin, body: { ...ld, ...extra } }))
        .status,
    ).toBe(200);
    expect(
      (
        await api.call("PATCH", `/logical/devices/${ld.uid}`, {
          ...admin,
          body: { source_name: "ttn" },
        })
      ).status,
    ).toBe(200);

    const mapped = await api.call("POST", "/mappings/", {
      ...admin,
      body: {
        pd: { ...pd, ...extra },
        ld: { ...ld, ...extra },
        start_time: "2024-01-01T00:00:00Z",
        ...extra,
      },
    });
    expect(mapped.status).toBe(201);
    expect(
      (
        await api.call("POST", `/physical/devices/notes/${pd.uid}`, {
          ...admin,
          body: { note: "n", ...extra },
        })
      ).status,
    ).toBe(201);
    expect(
      (
        await api.call("POST", "/sources", {
          ...admin,
          body: { source_name: "extra_src", ...extra },
        })
      ).status,
    ).toBe(201);
    expect(
      (
        await api.call("POST", "/users", {
          ...admin,
          body: { username: "extra-user", password: "pw", ...extra },
        })
      ).status,
    ).toBe(201);
  });
});

describe("IoTa's web app calls, replayed", () => {
  it("creates a logical device from a physical one, toggles and downloads", async () => {
    const pd = await body<{ uid: number; name: string; location: unknown }>(
      await api.call("POST", "/physical/devices/", {
        ...admin,
        body: { ...iotaPd("web"), location: { lat: null, long: null } },
      }),
    );
    // IoTa's web app indexes into it: d['location']['lat'].
    expect(pd.location).toEqual({ lat: null, long: null });
    const ld = await body<{ uid: number }>(
      await api.call("POST", "/logical/devices/", {
        ...admin,
        body: { uid: 0, name: pd.name, location: pd.location },
      }),
    );
    const start = new Date().toISOString().replace("Z", "+00:00");
    const mapped = await api.call("POST", "/mappings/", {
      ...admin,
      body: { pd, ld, start_time: start },
    });
    expect(mapped.status).toBe(201);
    for (const value of ["False", "True"]) {
      const res = await api.call(
        "PATCH",
        `/mappings/toggle-active/?puid=${pd.uid}&is_active=${value}`,
        admin,
      );
      expect(res.status).toBe(204);
    }
    const unmapped = await api.call("GET", "/physical/devices/unmapped", reader);
    expect(unmapped.status).toBe(200);
    expect((await body<{ uid: number }[]>(unmapped)).map((d) => d.uid)).not.toContain(pd.uid);
    // A note edited with the naive local time the web app sends.
    await api.call("POST", `/physical/devices/notes/${pd.uid}`, { ...admin, body: { note: "a" } });
    const [note] = await body<{ uid: number }[]>(
      await api.call("GET", `/physical/devices/notes/${pd.uid}`, reader),
    );
    const edit = await api.call("PATCH", "/physical/devices/notes/", {
      ...admin,
      body: { uid: note!.uid, ts: "2024-06-01T10:00:00.123456", note: "b" },
    });
    expect(edit.status).toBe(200);
    const download = await api.call(
      "GET",
      `/messages?l_uid=${ld.uid}&include_received_at=true&start=2024-01-01T00:00:00%2B10:00&end=2024-01-02T00:00:00%2B10:00`,
      reader,
    );
    expect(download.status).toBe(200);
    expect(await download.json()).toEqual([]);
    expect((await api.call("GET", "/messages/", reader)).status).toBe(404);
  });
});

describe("docs", () => {
  it("serves the OpenAPI document and the docs page without auth, at IoTa's paths too", async () => {
    for (const path of [`${api.base}/openapi.json`, `${api.origin}/openapi.json`]) {
      const res = await fetch(path);
      expect(res.status).toBe(200);
      const doc = (await res.json()) as {
        openapi: string;
        paths: Record<string, Record<string, unknown>>;
      };
      expect(doc.openapi).toBe("3.1.0");
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining([
          "/physical/devices/",
          "/physical/devices/{uid}",
          "/mappings/",
          "/messages",
          "/token",
          "/change-password",
        ]),
      );
      expect(Object.keys(doc.paths["/physical/devices/{uid}"]!)).toEqual(
        expect.arrayContaining(["get", "patch", "delete"]),
      );
    }
    for (const page of [`${api.base}/docs`, `${api.origin}/docs`]) {
      const html = await (await fetch(page)).text();
      expect(html).toContain("docs-assets/swagger-ui-bundle.js");
      expect(html).not.toMatch(/https?:\/\//);
    }
    for (const asset of ["swagger-ui-bundle.js", "swagger-ui.css", "init.js"]) {
      const res = await fetch(`${api.base}/docs-assets/${asset}`);
      expect(res.status).toBe(200);
      // Read it all: an unread body keeps the connection busy and the server from stopping.
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(0);
    }
    expect((await fetch(`${api.base}/docs-assets/package.json`)).status).toBe(404);
  });
});
