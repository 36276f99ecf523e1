import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startApi, type ApiHarness } from "../helpers/api.js";
import { freePort } from "../helpers/ports.js";

/**
 * The API endpoints behind the web app's operations pages, at the HTTP level: who may call
 * them, what they refuse, the MQTT broker being down, and the new event and held filters.
 */

let api: ApiHarness;
let wombat: number;
let other: number;

beforeAll(async () => {
  // Nothing listens on this port: the Wombat scripts' broker is down for this whole file.
  const port = await freePort();
  api = await startApi({
    env: { MQTT_URL: `mqtt://127.0.0.1:${port}`, WEB_HEALTH_TARGETS: `http://127.0.0.1:${port}` },
  });
  const [w] = await api.sql<{ uid: number }>(
    `insert into physical_devices (name, source_name, source_ids)
     values ('w', 'wombat', '{"serial_no": "SN-7"}') returning uid`,
  );
  const [o] = await api.sql<{ uid: number }>(
    `insert into physical_devices (name, source_name, source_ids)
     values ('t', 'ttn', '{"dev_id": "x"}') returning uid`,
  );
  wombat = w!.uid;
  other = o!.uid;
});

afterAll(async () => {
  await api?.close();
});

const admin = () => ({ token: api.adminToken });
const reader = () => ({ token: api.readerToken });

describe("operations endpoints", () => {
  it("need a token, and an admin for changes", async () => {
    for (const path of ["/health", `/trace/${randomUUID()}`, "/wombats"]) {
      expect((await api.call("GET", path)).status, path).toBe(401);
      expect((await api.call("GET", path, reader())).status, path).toBe(200);
    }
    const body = { action: "logs", uids: [wombat] };
    expect((await api.call("POST", "/wombats/config", { body })).status).toBe(401);
    expect((await api.call("POST", "/wombats/config", { ...reader(), body })).status).toBe(403);
  });

  it("refuse what is not a Wombat, a bad action, and a correlation id that is not a UUID", async () => {
    const notWombat = await api.call("POST", "/wombats/config", {
      ...admin(),
      body: { action: "ota", uids: [wombat, other] },
    });
    expect(notWombat.status).toBe(400);
    expect(await notWombat.json()).toEqual({
      detail: `not a Wombat with a serial number: ${other}`,
    });
    for (const body of [
      { action: "reboot", uids: [wombat] },
      { action: "logs" },
      { action: "logs", serial_nos: ["SN-7"] },
      { action: "clear", serial_nos: ["a/b"] },
    ]) {
      const res = await api.call("POST", "/wombats/config", { ...admin(), body });
      expect([400, 422], JSON.stringify(body)).toContain(res.status);
    }
    expect((await api.call("GET", "/trace/not-a-uuid", admin())).status).toBe(422);
  });

  it("say when the MQTT broker is down instead of showing no scripts", async () => {
    const list = await api.call("GET", "/wombats", reader());
    expect(await list.json()).toEqual({
      mqtt: false,
      wombats: [
        {
          uid: wombat,
          name: "w",
          last_seen: null,
          serial_no: "SN-7",
          ccid: null,
          firmware: null,
          ld: null,
          pending_script: null,
        },
      ],
      other_scripts: {},
    });
    const send = await api.call("POST", "/wombats/config", {
      ...admin(),
      body: { action: "logs", uids: [wombat] },
    });
    expect(send.status).toBe(503);
    expect(send.headers.get("retry-after")).toBe("5");
  });

  it("report an unreachable process and the writers' backlog", async () => {
    const res = await api.call("GET", "/health", reader());
    const report = (await res.json()) as {
      targets: { reachable: boolean; error: string }[];
      writers: unknown[];
      queues: { kind: string }[];
    };
    expect(report.targets).toMatchObject([{ reachable: false, error: "ECONNREFUSED" }]);
    expect(report.writers).toEqual([]);
    expect(report.queues.filter((q) => q.kind === "consumer").length).toBeGreaterThan(0);
  });

  it("filter events by entity id and actor, newest first, paging back with before", async () => {
    for (const name of ["e1", "e2", "e3"]) {
      await api.call("POST", "/logical/devices/", { ...admin(), body: { name } });
    }
    const ids = await api.sql<{ id: string; entity_id: string }>(
      `select id, entity_id from registry_events
       where entity = 'logical_device' and actor = 'api:admin' order by id desc`,
    );
    expect(ids).toHaveLength(3);
    const read = async (query: string) =>
      (
        (await (await api.call("GET", `/events?${query}`, reader())).json()) as { id: number }[]
      ).map((e) => e.id);
    expect(await read("entity=logical_device&actor=api:admin&order=desc&limit=2")).toEqual(
      ids.slice(0, 2).map((r) => Number(r.id)),
    );
    expect(await read(`actor=api:admin&order=desc&before=${ids[1]!.id}`)).toEqual([
      Number(ids[2]!.id),
    ]);
    expect(await read(`entity_id=${ids[2]!.entity_id}&entity=logical_device`)).toEqual([
      Number(ids[2]!.id),
    ]);
    expect((await api.call("GET", "/events?order=sideways", reader())).status).toBe(422);
  });

  it("count held messages from a time", async () => {
    for (const ts of ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"]) {
      await api.sql(
        `insert into physical_timeseries (physical_uid, logical_uid, ts, json_msg, msg_key, hold_reason)
         values ($1, null, $2, '{}', $3, 'no_mapping')`,
        [other, ts, randomUUID()],
      );
    }
    const held = async (query: string) =>
      (await (await api.call("GET", `/mappings/held/?puid=${other}${query}`, reader())).json()) as {
        count: number;
      }[];
    expect((await held(""))[0]!.count).toBe(2);
    expect((await held("&from=2025-01-15T00:00:00Z"))[0]!.count).toBe(1);
    expect(await held("&from=2025-03-01T00:00:00Z")).toEqual([]);
  });
});
