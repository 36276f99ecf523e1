import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startApi, type ApiHarness } from "../helpers/api.js";

/**
 * GET /messages (IoTa's parameters and output, streamed, JSON and CSV) and the raw message
 * resource. As in IoTa's own test, one device has 65 540 messages 15 minutes apart, so the
 * default answer is larger than any explicit count may ask for.
 */

const ROWS = 65_540;
let api: ApiHarness;
let reader: { token: string };
let puid: number;
let luid: number;
/** Message i is at newest - i × 15 min; newest is a minute before the data were made. */
let newestMs: number;

type Msg = { ts_utc: string; i: number; received_at_utc?: string; timeseries?: unknown };

beforeAll(async () => {
  // One stream at a time: an abandoned stream must give its slot back.
  api = await startApi({ env: { API_MAX_STREAMS: "1" } });
  reader = { token: api.readerToken };
  const admin = { token: api.adminToken };
  puid = (
    (await (
      await api.call("POST", "/physical/devices/", {
        ...admin,
        body: { name: "busy", source_name: "ttn" },
      })
    ).json()) as { uid: number }
  ).uid;
  luid = (
    (await (
      await api.call("POST", "/logical/devices/", { ...admin, body: { name: "site" } })
    ).json()) as { uid: number }
  ).uid;
  const [row] = await api.sql<{ newest: string }>(
    `with base as (select date_trunc('second', now()) - interval '1 minute' + interval '123456 microseconds' as t)
     insert into physical_timeseries (physical_uid, logical_uid, ts, received_at, json_msg)
     select $1, case when i % 2 = 0 then $2::int end, t - i * interval '15 minutes',
            t - i * interval '15 minutes' + interval '5 seconds',
            jsonb_build_object('broker_correlation_id', gen_random_uuid(), 'p_uid', $1::int,
              'l_uid', case when i % 2 = 0 then $2::int end, 'i', i,
              'timestamp', to_char((t - i * interval '15 minutes') at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
              'timeseries', jsonb_build_array(jsonb_build_object('name', 'i', 'value', i),
                                              jsonb_build_object('name', 'half', 'value', i / 2.0)))
     from base, generate_series(0, $3::int - 1) i
     returning (select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') from base) as newest`,
    [puid, luid, ROWS],
  );
  newestMs = Date.parse(row!.newest);
});

afterAll(async () => {
  await api?.close();
});

/** ts_utc of message i: whole seconds, UTC, +00:00. */
function tsUtc(i: number): string {
  return new Date(Math.floor((newestMs - i * 900_000) / 1000) * 1000)
    .toISOString()
    .replace(".000Z", "+00:00");
}

/** ISO time of message i, microseconds included (query parameters). */
function at(i: number): string {
  return new Date(newestMs - i * 900_000).toISOString().replace("Z", "456Z");
}

async function get(query: string): Promise<Response> {
  return api.call("GET", `/messages${query}`, reader);
}

async function messages(query: string): Promise<Msg[]> {
  const res = await get(query);
  expect(res.status, query).toBe(200);
  return (await res.json()) as Msg[];
}

async function detail(query: string): Promise<{ status: number; msgs: string[] }> {
  const res = await get(query);
  const body = (await res.json()) as { detail: { msg: string }[] | string };
  return {
    status: res.status,
    msgs: typeof body.detail === "string" ? [body.detail] : body.detail.map((d) => d.msg),
  };
}

describe("GET /messages (IoTa's parameters)", () => {
  it("needs p_uid or l_uid", async () => {
    expect(await detail("")).toEqual({ status: 404, msgs: ["Failed to retrieve messages"] });
  });

  it("streams every message newest first by default, in IoTa's shape", async () => {
    const res = await get(`?p_uid=${puid}`);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("transfer-encoding")).toBe("chunked");
    const all = (await res.json()) as Msg[];
    expect(all).toHaveLength(ROWS);
    expect(all[0]).toEqual({
      ts_utc: tsUtc(0),
      broker_correlation_id: expect.any(String),
      p_uid: puid,
      l_uid: luid,
      i: 0,
      timestamp: at(0),
      timeseries: [
        { name: "i", value: 0 },
        { name: "half", value: 0 },
      ],
    });
    expect(all[ROWS - 1]!.i).toBe(ROWS - 1);
    expect(all.every((m, k) => m.i === k)).toBe(true);
  });

  it("honours count, only_timestamp and include_received_at", async () => {
    expect((await messages(`?p_uid=${puid}&count=50`)).map((m) => m.i)).toEqual([
      ...Array(50).keys(),
    ]);
    expect(await messages(`?p_uid=${puid}&count=2&only_timestamp=true`)).toEqual([
      { ts_utc: tsUtc(0) },
      { ts_utc: tsUtc(1) },
    ]);
    const [withReceived] = await messages(
      `?p_uid=${puid}&count=1&include_received_at=1&only_timestamp=yes`,
    );
    expect(withReceived).toEqual({
      ts_utc: tsUtc(0),
      received_at_utc: new Date(Math.floor(newestMs / 1000) * 1000 + 5000)
        .toISOString()
        .replace(".000Z", "+00:00"),
    });
    for (const count of ["-1", "0", "65537", "abc", "1.5"]) {
      expect((await get(`?p_uid=${puid}&count=${count}`)).status, count).toBe(422);
    }
  });

  it("treats start as exclusive and end as inclusive", async () => {
    expect(await messages(`?p_uid=${puid}&start=${at(0)}`)).toEqual([]);
    expect((await messages(`?p_uid=${puid}&start=${at(2)}`)).map((m) => m.i)).toEqual([0, 1]);
    expect(await messages(`?p_uid=${puid}&end=${at(ROWS)}`)).toEqual([]);
    expect((await messages(`?p_uid=${puid}&end=${at(ROWS - 2)}`)).map((m) => m.i)).toEqual([
      ROWS - 2,
      ROWS - 1,
    ]);
    expect((await messages(`?p_uid=${puid}&start=${at(10)}&end=${at(7)}`)).map((m) => m.i)).toEqual(
      [7, 8, 9],
    );
    expect(
      (await messages(`?p_uid=${puid}&start=${at(10)}&end=${at(7)}&count=2`)).map((m) => m.i),
    ).toEqual([7, 8]);
  });

  it("answers IoTa's 422s for inconsistent windows and bad last values", async () => {
    expect(await detail(`?p_uid=${puid}&start=${at(3)}&end=${at(3)}`)).toEqual({
      status: 422,
      msgs: ["ensure start value is less than end"],
    });
    expect(await detail(`?p_uid=${puid}&start=${at(1)}&end=${at(3)}`)).toEqual({
      status: 422,
      msgs: ["ensure start value is less than end"],
    });
    expect(await detail(`?p_uid=${puid}&count=5&end=${at(3)}`)).toEqual({
      status: 422,
      msgs: ["only count and end is not supported"],
    });
    expect(await detail(`?p_uid=${puid}&last=xh`)).toEqual({
      status: 422,
      msgs: ["the first part of last must be an integer"],
    });
    expect(await detail(`?p_uid=${puid}&last=5q`)).toEqual({
      status: 422,
      msgs: ["only h/d/w/m/y supported"],
    });
    expect((await get(`?p_uid=${puid}&start=yesterday`)).status).toBe(422);
    expect((await get(`?p_uid=${puid}&start=2024-01-01`)).status).toBe(422);
  });

  it("reads the last hours with last=, and accepts an offset whose '+' arrived as a space", async () => {
    expect((await messages(`?p_uid=${puid}&last=1H`)).map((m) => m.i)).toEqual([0, 1, 2, 3]);
    const local = new Date(newestMs - 2 * 900_000 + 10 * 3_600_000)
      .toISOString()
      .replace("Z", "456+10:00")
      .replace("+10:00", " 10:00");
    expect(
      (await messages(`?p_uid=${puid}&start=${encodeURIComponent(local).replace("%20", "+")}`)).map(
        (m) => m.i,
      ),
    ).toEqual([0, 1]);
  });

  it("reads by logical uid what was mapped when stored; p_uid wins when both are given", async () => {
    const byLd = await messages(`?l_uid=${luid}&count=3`);
    expect(byLd.map((m) => m.i)).toEqual([0, 2, 4]);
    expect((await messages(`?l_uid=${luid}&p_uid=${puid}&count=3`)).map((m) => m.i)).toEqual([
      0, 1, 2,
    ]);
    expect(await messages(`?p_uid=999999`)).toEqual([]);
  });
});

describe("GET /messages as CSV (extension)", () => {
  it("writes IoTa's exporter format, oldest first, for format=csv or Accept: text/csv", async () => {
    const res = await get(`?p_uid=${puid}&format=csv&start=${at(2)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(res.headers.get("content-disposition")).toBe(
      `attachment; filename=messages_p_uid_${puid}.csv`,
    );
    const iso = at;
    expect(await res.text()).toBe(
      "l_uid,p_uid,msg_timestamp,timestamp,name,value\r\n" +
        `,${puid},${iso(1)},${iso(1)},i,1\r\n,${puid},${iso(1)},${iso(1)},half,0.5\r\n` +
        `${luid},${puid},${iso(0)},${iso(0)},i,0\r\n${luid},${puid},${iso(0)},${iso(0)},half,0\r\n`,
    );
    const negotiated = await api.call("GET", `/messages?l_uid=${luid}&count=1&order=desc`, {
      ...reader,
      headers: { accept: "text/csv" },
    });
    expect((await negotiated.text()).split("\r\n")).toEqual([
      "l_uid,p_uid,msg_timestamp,timestamp,name,value",
      `${luid},${puid},${iso(0)},${iso(0)},i,0`,
      `${luid},${puid},${iso(0)},${iso(0)},half,0`,
      "",
    ]);
  });

  it("streams the whole history without a count, and frees its slot when the client leaves", async () => {
    const whole = await get(`?p_uid=${puid}&format=csv`);
    const lines = (await whole.text()).split("\r\n");
    expect(lines).toHaveLength(1 + 2 * ROWS + 1);
    expect(lines[1]).toMatch(new RegExp(`^,${puid},.*,i,${ROWS - 1}$`));
    // Read one chunk of a large export and hang up; with one stream slot, the next request
    // proves the abandoned stream gave its database connection back.
    const controller = new AbortController();
    const partial = await fetch(`${api.base}/messages?p_uid=${puid}&format=csv`, {
      headers: { authorization: `Bearer ${api.readerToken}` },
      signal: controller.signal,
    });
    const reader2 = partial.body!.getReader();
    expect((await reader2.read()).done).toBe(false);
    controller.abort();
    await reader2.cancel().catch(() => undefined);
    expect((await messages(`?p_uid=${puid}&count=1`)).map((m) => m.i)).toEqual([0]);
  });
});

describe("raw messages (extension)", () => {
  it("finds raw messages by correlation id, device, source and time, in pages", async () => {
    const ids = [
      "0f5c1a43-9d7e-4a57-9c55-2b7d0e0c1c11",
      "83d04e6f-db16-4280-8337-53f11b2335c6",
      "5b0f7a0e-1111-4a57-9c55-2b7d0e0c1c11",
    ];
    await api.sql(
      `insert into raw_messages (source_name, physical_uid, correlation_id, ts, json_msg, text_msg) values
        ('ttn', $1, $2, '2024-01-01T00:00:00.000001Z', '{"uplink_message": {"f_cnt": 1}}', null),
        ('ttn', null, $3, '2024-01-02T00:00:00Z', null, 'raw,text'),
        ('ydoc', $1, $4, '2024-01-03T00:00:00Z', '{"x": 1}', null)`,
      [puid, ...ids],
    );
    const one = await (await api.call("GET", `/raw-messages/${ids[0]}`, reader)).json();
    expect(one).toEqual({
      uid: expect.any(Number),
      source_name: "ttn",
      physical_uid: puid,
      correlation_id: ids[0],
      ts: "2024-01-01T00:00:00.000001+00:00",
      json_msg: { uplink_message: { f_cnt: 1 } },
      text_msg: null,
    });
    const list = async (query: string) =>
      (await (await api.call("GET", `/raw-messages${query}`, reader)).json()) as {
        correlation_id: string;
        uid: number;
      }[];
    expect((await list(`?p_uid=${puid}`)).map((r) => r.correlation_id)).toEqual([ids[0], ids[2]]);
    expect((await list("?source_name=ttn")).map((r) => r.correlation_id)).toEqual([ids[0], ids[1]]);
    expect(
      (await list("?start=2024-01-02T00:00:00Z&end=2024-01-03T00:00:00Z")).map(
        (r) => r.correlation_id,
      ),
    ).toEqual([ids[1]]);
    const [first] = await list("?limit=1");
    expect((await list(`?limit=5&after=${first!.uid}`)).map((r) => r.correlation_id)).toEqual([
      ids[1],
      ids[2],
    ]);
    expect((await api.call("GET", "/raw-messages/not-a-uuid", reader)).status).toBe(422);
    expect(
      (await api.call("GET", "/raw-messages/00000000-0000-4000-8000-000000000000", reader)).status,
    ).toBe(404);
    expect((await api.call("GET", "/raw-messages?limit=1001", reader)).status).toBe(422);
  });
});
