import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startApi, type ApiHarness } from "../helpers/api.js";

/**
 * Devices, notes, mappings and sources through the REST API: every endpoint, the extensions,
 * and hostile input answered with a 4xx that names the problem.
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

async function json<T = unknown>(res: Response | Promise<Response>): Promise<T> {
  return (await (await res).json()) as T;
}

async function createPd(body: Record<string, unknown>): Promise<{ uid: number }> {
  const res = await api.call("POST", "/physical/devices/", { ...admin, body });
  expect(res.status).toBe(201);
  return json(res);
}

async function createLd(body: Record<string, unknown>): Promise<{ uid: number }> {
  const res = await api.call("POST", "/logical/devices/", { ...admin, body });
  expect(res.status).toBe(201);
  return json(res);
}

describe("physical devices", () => {
  it("filters and pages lists on request, IoTa's whole list otherwise", async () => {
    const made = [];
    for (const [name, source, site] of [
      ["Alpha sensor", "ttn", "north"],
      ["beta SENSOR", "ttn", "south"],
      ["gamma", "ydoc", "north"],
    ] as const) {
      made.push(await createPd({ name, source_name: source, properties: { site } }));
    }
    const uids = made.map((d) => d.uid);
    const list = async (query: string) =>
      (await json<{ uid: number }[]>(api.call("GET", `/physical/devices/${query}`, admin))).map(
        (d) => d.uid,
      );
    expect(await list("")).toEqual(uids);
    expect(await list("?source_name=ttn")).toEqual(uids.slice(0, 2));
    expect(await list("?name=SENSOR")).toEqual(uids.slice(0, 2));
    expect(await list("?prop_name=site&prop_value=north")).toEqual([uids[0], uids[2]]);
    expect(await list("?limit=2&offset=1")).toEqual(uids.slice(1, 3));
    expect(await list("?prop_name=x%27%3B%20drop%20table%20users%3B--&prop_value=1")).toEqual([]);
    expect((await api.call("GET", "/physical/devices/?prop_name=site", admin)).status).toBe(422);
    const noProps = await json<{ properties: object }[]>(
      api.call("GET", "/physical/devices/?include_properties=false", admin),
    );
    expect(noProps.every((d) => Object.keys(d.properties).length === 0)).toBe(true);
    expect(await list("unmapped")).toEqual(uids);
    expect(await list("unmapped/?source_name=ydoc")).toEqual([uids[2]]);
  });

  it("updates partially with PATCH /physical/devices/{uid}; last_seen never moves backwards", async () => {
    const { uid } = await createPd({
      name: "patchy",
      source_name: "ttn",
      last_seen: "2024-05-01T00:00:00.123456Z",
      properties: { a: 1 },
    });
    const patched = await json(
      api.call("PATCH", `/physical/devices/${uid}`, {
        ...admin,
        body: { location: { lat: -33.5, long: 151.25 }, last_seen: "2024-01-01T00:00:00Z" },
      }),
    );
    expect(patched).toEqual({
      uid,
      name: "patchy",
      location: { lat: -33.5, long: 151.25 },
      last_seen: "2024-05-01T00:00:00.123456+00:00",
      properties: { a: 1 },
      source_name: "ttn",
      source_ids: {},
    });
    const cleared = await json<{ location: unknown }>(
      api.call("PATCH", `/physical/devices/${uid}`, {
        ...admin,
        body: { location: { lat: null, long: null } },
      }),
    );
    expect(cleared.location).toEqual({ lat: null, long: null });
    const missing = await api.call("PATCH", "/physical/devices/999999", { ...admin, body: {} });
    expect(missing.status).toBe(404);
    const badSource = await api.call("PATCH", `/physical/devices/${uid}`, {
      ...admin,
      body: { source_name: "nope" },
    });
    expect(badSource.status).toBe(400);
    expect(await badSource.json()).toEqual({ detail: "unknown source" });
  });

  it("refuses to delete a device with history (409), then deletes it once free", async () => {
    const { uid } = await createPd({ name: "noted", source_name: "ttn" });
    expect(
      (await api.call("POST", `/physical/devices/notes/${uid}`, { ...admin, body: { note: "n" } }))
        .status,
    ).toBe(201);
    const refused = await api.call("DELETE", `/physical/devices/${uid}`, admin);
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { detail: string }).detail).not.toMatch(
      /violat|constraint|sql/i,
    );
    const [note] = await json<{ uid: number }[]>(
      api.call("GET", `/physical/devices/notes/${uid}`, admin),
    );
    expect((await api.call("DELETE", `/physical/devices/notes/${note!.uid}`, admin)).status).toBe(
      204,
    );
    expect((await api.call("DELETE", `/physical/devices/${uid}`, admin)).status).toBe(204);
  });
});

describe("notes", () => {
  it("changes text and, when given, time; 404 for unknown notes", async () => {
    const { uid } = await createPd({ name: "with notes", source_name: "ttn" });
    await api.call("POST", `/physical/devices/notes/${uid}`, { ...admin, body: { note: "first" } });
    await api.call("POST", `/physical/devices/notes/${uid}`, {
      ...admin,
      body: { note: "second" },
    });
    const notes = await json<{ uid: number; ts: string; note: string }[]>(
      api.call("GET", `/physical/devices/notes/${uid}`, admin),
    );
    expect(notes.map((n) => n.note)).toEqual(["first", "second"]);
    const keepTime = await api.call("PATCH", "/physical/devices/notes/", {
      ...admin,
      body: { uid: notes[0]!.uid, note: "first, edited" },
    });
    expect(keepTime.status).toBe(200);
    expect(await keepTime.json()).toBeNull();
    await api.call("PATCH", "/physical/devices/notes/", {
      ...admin,
      body: { uid: notes[1]!.uid, note: "second, moved", ts: "2020-01-01T00:00:00.5Z" },
    });
    const after = await json<{ ts: string; note: string }[]>(
      api.call("GET", `/physical/devices/notes/${uid}?limit=1`, admin),
    );
    expect(after).toEqual([
      { uid: notes[1]!.uid, ts: "2020-01-01T00:00:00.500000+00:00", note: "second, moved" },
    ]);
    const unknown = await api.call("PATCH", "/physical/devices/notes/", {
      ...admin,
      body: { uid: 999999, note: "x" },
    });
    expect(unknown.status).toBe(404);
    expect((await api.call("DELETE", "/physical/devices/notes/999999", admin)).status).toBe(204);
  });
});

describe("logical devices", () => {
  it("filter, page and update partially", async () => {
    const a = await createLd({ name: "Site A", properties: { kind: "soil" } });
    const b = await createLd({ name: "Site B", properties: { kind: "water" } });
    const page = await json<{ uid: number }[]>(
      api.call("GET", "/logical/devices/?prop_name=kind&prop_value=water", admin),
    );
    expect(page.map((d) => d.uid)).toEqual([b.uid]);
    const patched = await json(
      api.call("PATCH", `/logical/devices/${a.uid}`, { ...admin, body: { name: "Site A2" } }),
    );
    expect(patched).toEqual({
      uid: a.uid,
      name: "Site A2",
      location: { lat: null, long: null },
      last_seen: null,
      properties: { kind: "soil" },
    });
    // A field logical devices do not have is ignored, as by IoTa's models.
    const extra = await api.call("PATCH", `/logical/devices/${a.uid}`, {
      ...admin,
      body: { source_name: "ttn" },
    });
    expect(extra.status).toBe(200);
    expect(await extra.json()).toEqual(patched);
  });
});

describe("mappings", () => {
  it("accept plain uids, toggle only the current mapping, and page lists", async () => {
    const pd = await createPd({ name: "mapped pd", source_name: "ttn" });
    const ld = await createLd({ name: "mapped ld" });
    const first = await api.call("POST", "/mappings/", {
      ...admin,
      body: { pd: pd.uid, ld: ld.uid, start_time: "2024-01-01T00:00:00Z" },
    });
    expect(first.status).toBe(201);
    expect(await first.json()).toBeNull();
    expect((await api.call("PATCH", `/mappings/physical/end/${pd.uid}`, admin)).status).toBe(204);
    expect(
      (await api.call("POST", "/mappings/", { ...admin, body: { pd: pd.uid, ld: ld.uid } })).status,
    ).toBe(201);
    const toggle = await api.call(
      "PATCH",
      `/mappings/toggle-active/?luid=${ld.uid}&is_active=False`,
      admin,
    );
    expect(toggle.status).toBe(204);
    const history = await json<{ is_active: boolean; end_time: string | null }[]>(
      api.call("GET", `/mappings/logical/all/${ld.uid}`, admin),
    );
    expect(history.map((m) => [m.is_active, m.end_time === null])).toEqual([
      [false, true],
      [true, false],
    ]);
    const paged = await json<unknown[]>(
      api.call("GET", `/mappings/logical/all/${ld.uid}?limit=1&offset=1`, admin),
    );
    expect(paged).toEqual([history[1]]);
    const paused = await json<{ pd: number }[]>(
      api.call("GET", "/mappings/current/?is_active=false", admin),
    );
    expect(paused.map((m) => m.pd)).toEqual([pd.uid]);
    const toggleErrors = [
      [
        `?is_active=true&puid=${pd.uid}&luid=${ld.uid}`,
        400,
        "Both physical and logical uid were provided. Only give one",
      ],
      ["?is_active=true", 400, "A uid must be provided"],
      ["?is_active=true&puid=999999", 404, "Device with uid provided could not be found"],
    ] as const;
    for (const [query, status, detail] of toggleErrors) {
      const res = await api.call("PATCH", `/mappings/toggle-active/${query}`, admin);
      expect(res.status).toBe(status);
      expect(await res.json()).toEqual({ detail });
    }
    expect((await api.call("PATCH", "/mappings/toggle-active/?puid=1", admin)).status).toBe(422);
  });
});

describe("sources", () => {
  it("lists, reads and adds sources", async () => {
    const added = await api.call("POST", "/sources", {
      ...admin,
      body: { source_name: "axistech" },
    });
    expect(added.status).toBe(201);
    expect(added.headers.get("location")).toBe(`${api.base}/sources/axistech`);
    expect(
      (await api.call("POST", "/sources", { ...admin, body: { source_name: "axistech" } })).status,
    ).toBe(200);
    expect(await json(api.call("GET", "/sources/axistech", admin))).toEqual({
      source_name: "axistech",
    });
    expect((await api.call("GET", "/sources/none", admin)).status).toBe(404);
    expect(await json(api.call("GET", "/sources?limit=2", admin))).toEqual([
      { source_name: "axistech" },
      { source_name: "dragino_json" },
    ]);
    expect(
      (await api.call("POST", "/sources", { ...admin, body: { source_name: "bad name" } })).status,
    ).toBe(422);
  });
});

describe("hostile input", () => {
  /** Status and detail of a request; the detail must never leak SQL or a stack trace. */
  async function answer(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ) {
    const res = await api.call(method, path, { ...admin, body, ...(headers ? { headers } : {}) });
    const text = await res.text();
    expect(text).not.toMatch(/select |insert |violates|at .*\.ts:|node_modules|stack/i);
    return { status: res.status, body: JSON.parse(text) as { detail: unknown } };
  }

  function locs(detail: unknown): string[] {
    return (detail as { loc: unknown[] }[]).map((d) => d.loc.join("."));
  }

  it("answers wrong types and missing fields with 422 naming them, and ignores unknown ones", async () => {
    const wrong = await answer("POST", "/physical/devices/", {
      name: 5,
      source_name: "ttn",
      properties: "x",
      location: { lat: 91, long: 0 },
      colour: "red",
    });
    expect(wrong.status).toBe(422);
    expect(locs(wrong.body.detail)).toEqual(
      expect.arrayContaining(["body.name", "body.properties", "body.location.lat"]),
    );
    expect(locs(wrong.body.detail)).not.toEqual(expect.arrayContaining(["body.colour"]));
    const missing = await answer("POST", "/logical/devices/", {});
    expect(missing.body.detail).toEqual([
      { loc: ["body", "name"], msg: "field required", type: "value_error.missing" },
    ]);
    const notObject = await answer("POST", "/logical/devices/", [1, 2]);
    expect(notObject.status).toBe(422);
    // A present value of the wrong type is named as such, never as "field required".
    const wrongType = await answer("POST", "/logical/devices/", { name: null, properties: [] });
    expect(wrongType.body.detail).toEqual([
      {
        loc: ["body", "name"],
        msg: "Invalid input: expected string, received null",
        type: "type_error.string",
      },
      {
        loc: ["body", "properties"],
        msg: "Invalid input: expected record, received array",
        type: "type_error.record",
      },
    ]);
    const badBool = await answer("PATCH", "/mappings/toggle-active/?is_active=maybe&puid=1");
    expect(badBool.body.detail).toEqual([
      {
        loc: ["query", "is_active"],
        msg: "value could not be parsed to a boolean",
        type: "type_error.boolean",
      },
    ]);
    // JSON.parse reads 1e400 as Infinity: refused, not stored as null.
    const infinite = await answer(
      "POST",
      "/logical/devices/",
      '{"name": "inf", "properties": {"a": [1e400]}, "location": {"lat": 1e400, "long": 0}}',
    );
    expect(infinite.status).toBe(422);
    expect(infinite.body.detail).toEqual([
      {
        loc: ["body", "location", "lat"],
        msg: "Invalid input: expected number, received Infinity",
        type: "type_error.number",
      },
      {
        loc: ["body", "properties"],
        msg: "contains a number too large to store",
        type: "value_error.custom",
      },
    ]);
    // A __proto__ key would be dropped by any JavaScript copy of the object: refused, not lost.
    const proto = await answer(
      "POST",
      "/physical/devices/",
      '{"name": "p", "source_name": "ttn", "source_ids": {"__proto__": {"dev_eui": "x"}}}',
    );
    expect(proto.status).toBe(422);
    expect(proto.body.detail).toEqual([
      {
        loc: ["body", "source_ids"],
        msg: "contains the key __proto__, which is not allowed",
        type: "value_error.custom",
      },
    ]);
  });

  it("answers malformed JSON, other content types and huge bodies with a 4xx", async () => {
    const broken = await answer("POST", "/logical/devices/", "{not json");
    expect(broken.status).toBe(422);
    expect(broken.body.detail).toEqual([
      { loc: ["body"], msg: "body is not valid JSON", type: "value_error.jsondecode" },
    ]);
    const form = await answer("POST", "/logical/devices/", "name=x", {
      "content-type": "application/x-www-form-urlencoded",
    });
    expect(form.status).toBe(415);
    const huge = await answer("POST", "/logical/devices/", {
      name: "big",
      properties: { blob: "x".repeat(10 * 1024 * 1024) },
    });
    expect(huge.status).toBe(413);
    expect(huge.body.detail).toBe("request body exceeds 1048576 bytes");
  });

  it("answers bad numbers in paths and queries with 422, absent uids with 404", async () => {
    for (const path of [
      "/physical/devices/abc",
      "/physical/devices/1.5",
      "/physical/devices/99999999999999999999",
      "/logical/devices/2147483648",
    ]) {
      const res = await answer("GET", path);
      expect(res.status, path).toBe(422);
      expect(locs(res.body.detail)).toEqual(["path.uid"]);
    }
    expect((await answer("GET", "/physical/devices/-1")).status).toBe(404);
    expect((await answer("GET", "/physical/devices/?limit=0")).status).toBe(422);
    expect((await answer("GET", "/physical/devices/?offset=-1")).status).toBe(422);
    expect((await answer("GET", "/physical/devices/?include_properties=perhaps")).status).toBe(422);
  });

  it("stores SQL-looking and unicode text as data, refuses NUL", async () => {
    const name = "Robert'); DROP TABLE physical_devices;-- ☃ 𝄞 \u202e";
    const made = await answer("POST", "/physical/devices/", {
      name,
      source_name: "ttn",
      properties: { "key'\"": "värde", nested: { emoji: "🦘" } },
    });
    expect(made.status).toBe(201);
    const uid = (made.body as unknown as { uid: number }).uid;
    expect(await json(api.call("GET", `/physical/devices/${uid}`, admin))).toMatchObject({
      name,
      properties: { "key'\"": "värde", nested: { emoji: "🦘" } },
    });
    const nul = await answer("POST", "/physical/devices/", {
      name: "a\u0000b",
      source_name: "ttn",
    });
    expect(nul.status).toBe(422);
    expect(locs(nul.body.detail)).toEqual(["body.name"]);
    const nulQuery = await answer("GET", "/physical/devices/?name=%00");
    expect(nulQuery.status).toBe(422);
  });

  it("answers unknown paths with 404 and known paths with another method with 405", async () => {
    expect((await answer("GET", "/nothing/here")).status).toBe(404);
    const wrongMethod = await answer("PUT", "/physical/devices/");
    expect(wrongMethod).toEqual({ status: 405, body: { detail: "Method Not Allowed" } });
  });
});
