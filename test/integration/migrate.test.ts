import { readFile } from "node:fs/promises";

import type pg from "pg";
import { afterAll, describe, expect, it } from "vitest";

import { loadMigrations, migrate, schemaStatus } from "../../src/db/migrate.js";
import { getPhysicalDevice } from "../../src/db/repositories/physical-devices.js";
import { AUTH_TOKEN_MARKER } from "../../src/db/repositories/users.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

const created: TestDatabase[] = [];

async function emptyDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  created.push(db);
  return db;
}

afterAll(async () => {
  await Promise.all(created.map((db) => db.drop()));
});

async function latestVersion(): Promise<number> {
  return Math.max(...(await loadMigrations()).map((m) => m.version));
}

async function rows(pool: pg.Pool, query: string): Promise<unknown[]> {
  return (await pool.query(query)).rows;
}

/** IoTa's columns of every table, in a stable order, as comparable values. */
const SNAPSHOT: Record<string, string> = {
  physical_devices: `select uid, source_name, name, ST_AsEWKT(location) as location, last_seen, source_ids,
                            properties from physical_devices order by uid`,
  logical_devices: `select uid, name, ST_AsEWKT(location) as location, last_seen, properties
                    from logical_devices order by uid`,
  physical_logical_map: `select physical_uid, logical_uid, start_time, end_time, is_active
                         from physical_logical_map order by physical_uid, logical_uid, start_time`,
  physical_timeseries: `select uid, physical_uid, logical_uid, received_at, ts, ts_delta::text, json_msg
                        from physical_timeseries order by uid`,
  raw_messages: `select uid, source_name, physical_uid, correlation_id, ts, json_msg, text_msg
                 from raw_messages order by uid`,
  device_notes: `select uid, physical_uid, ts, note from device_notes order by uid`,
  device_blobs: `select uid, physical_uid, ts, encode(data, 'hex') as data from device_blobs order by uid`,
  users: `select uid, username, salt, password, auth_token, valid, read_only from users order by uid`,
};

async function snapshot(pool: pg.Pool): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, query] of Object.entries(SNAPSHOT)) {
    out[table] = await rows(pool, query);
  }
  return out;
}

/** Rows an IoTa user would have: one device has two current mappings, as IoTa allowed. */
const IOTA_DATA = `
  insert into physical_devices (source_name, name, location, last_seen, source_ids, properties) values
    ('ttn', 'pd with location', ST_SetSRID(ST_MakePoint(151.2, -33.8), 4283), '2024-01-02T03:04:05.123456Z',
     '{"dev_eui": "0011"}', '{"app_id": "a"}'),
    ('ydoc', 'pd without location', null, null, null, '{}'),
    ('wombat', 'pd three', null, '2024-01-01T00:00:00Z', '{"serial_no": "w1"}', '{"x": [1, 2]}');
  insert into logical_devices (name, location, last_seen, properties) values
    ('ld one', ST_SetSRID(ST_MakePoint(150.1, -30.5), 4283), '2024-01-02T03:04:05Z', '{"ubidots": {"label": "x"}}'),
    ('ld two', null, null, '{}'),
    ('ld three', null, null, '{}');
  insert into physical_logical_map (physical_uid, logical_uid, start_time, end_time, is_active) values
    (1, 1, '2023-01-01T00:00:00Z', '2023-06-01T00:00:00Z', true),
    (1, 1, '2023-07-01T00:00:00Z', null, true),
    (1, 2, '2023-08-01T00:00:00Z', null, false),
    (3, 3, '2023-02-01T00:00:00Z', null, true),
    (2, 3, '2023-03-01T00:00:00Z', null, true);
  insert into physical_timeseries (physical_uid, logical_uid, received_at, ts, json_msg) values
    (1, 2, '2024-01-02T03:05:00Z', '2024-01-02T03:04:05Z',
     '{"broker_correlation_id": "83d04e6f-db16-4280-8337-53f11b2335c6", "p_uid": 1, "l_uid": 2,
       "timestamp": "2024-01-02T03:04:05Z", "timeseries": [{"name": "battery (v)", "value": 4.16}]}'),
    (1, 2, '2024-01-02T03:05:01Z', '2024-01-02T03:04:05Z',
     '{"broker_correlation_id": "83d04e6f-db16-4280-8337-53f11b2335c6", "p_uid": 1, "l_uid": 2,
       "timestamp": "2024-01-02T03:04:05Z", "timeseries": [{"name": "battery (v)", "value": 4.16}]}'),
    (2, null, '2024-01-03T00:00:00Z', '2024-01-02T23:00:00Z',
     '{"broker_correlation_id": "0f5c1a43-9d7e-4a57-9c55-2b7d0e0c1c11", "p_uid": 2,
       "timestamp": "2024-01-02T23:00:00Z", "timeseries": []}');
  insert into raw_messages (source_name, physical_uid, correlation_id, ts, json_msg, text_msg) values
    ('ttn', 1, '83d04e6f-db16-4280-8337-53f11b2335c6', '2024-01-02T03:05:00Z', '{"uplink_message": {}}', null),
    ('ydoc', null, '0f5c1a43-9d7e-4a57-9c55-2b7d0e0c1c11', '2024-01-03T00:00:00Z', null, 'raw,text,line');
  insert into users (username, salt, password, auth_token, valid, read_only) values
    ('admin', 'ab12', 'cd34', 'token-1', true, false);
  insert into device_notes (physical_uid, ts, note) values (1, '2024-02-01T00:00:00Z', 'replaced battery');
  insert into device_blobs (physical_uid, ts, data) values (1, '2024-02-01T00:00:00Z', '\\xdeadbeef');
`;

describe("broker migrate", () => {
  it("creates the schema in an empty database, and a second run applies nothing", async () => {
    const { handle } = await emptyDatabase();
    const latest = await latestVersion();
    const first = await migrate(handle.pool);
    expect(first.from).toBe(0);
    expect(first.to).toBe(latest);
    expect(first.applied.length).toBeGreaterThan(0);
    const second = await migrate(handle.pool);
    expect(second).toEqual({ from: latest, to: latest, applied: [] });
    expect(await rows(handle.pool, "select version from version")).toEqual([{ version: latest }]);
  });

  it("upgrades an IoTa version-2 database in place", async () => {
    const { handle } = await emptyDatabase();
    const pool = handle.pool;
    await pool.query(
      await readFile(new URL("../fixtures/iota-v2-schema.sql", import.meta.url), "utf8"),
    );
    await pool.query(IOTA_DATA);
    const before = await snapshot(pool);
    const sourcesBefore = await rows(pool, "select source_name from sources order by 1");

    const result = await migrate(pool);
    const latest = await latestVersion();
    expect(result.from).toBe(2);
    expect(result.to).toBe(latest);
    expect(result.applied.map((m) => m.version).every((v) => v > 2)).toBe(true);
    expect(await rows(pool, "select version from version")).toEqual([{ version: latest }]);

    // Every row is intact, except the older of each pair of current mappings, now ended where
    // the newer one starts.
    const after = await snapshot(pool);
    const endOf = (m: unknown) => (m as { end_time: string | null }).end_time;
    const expectedMap = before.physical_logical_map!.map((m) => {
      const row = m as { physical_uid: number; logical_uid: number; start_time: string };
      if (row.physical_uid === 1 && row.logical_uid === 1 && endOf(m) === null) {
        return { ...row, end_time: "2023-08-01T00:00:00+00:00" };
      }
      if (row.physical_uid === 3 && row.logical_uid === 3) {
        return { ...row, end_time: "2023-03-01T00:00:00+00:00" };
      }
      return m;
    });
    // Plaintext tokens are moved to hashes (api_tokens); the column keeps a marker, not the secret.
    const expectedUsers = before.users!.map((u) => ({
      ...(u as object),
      auth_token: AUTH_TOKEN_MARKER,
    }));
    expect(after).toEqual({ ...before, physical_logical_map: expectedMap, users: expectedUsers });
    expect(
      await rows(
        pool,
        "select physical_uid, logical_uid from physical_logical_map where end_time is null order by 1",
      ),
    ).toEqual([
      { physical_uid: 1, logical_uid: 2 },
      { physical_uid: 2, logical_uid: 3 },
    ]);

    // What the upgrade adds.
    // Each stored message linked to the raw message of its correlation id (013), ts_delta untouched.
    expect(
      await rows(
        pool,
        "select uid, raw_correlation_id::text as raw from physical_timeseries order by uid",
      ),
    ).toEqual([
      { uid: 1, raw: "83d04e6f-db16-4280-8337-53f11b2335c6" },
      { uid: 2, raw: "83d04e6f-db16-4280-8337-53f11b2335c6" },
      { uid: 3, raw: "0f5c1a43-9d7e-4a57-9c55-2b7d0e0c1c11" },
    ]);
    const sourcesAfter = await rows(pool, "select source_name from sources order by 1");
    expect(sourcesAfter).toEqual(
      expect.arrayContaining([
        ...sourcesBefore,
        { source_name: "dragino_json" },
        { source_name: "ict_mqtt" },
      ]),
    );
    const inserted = await rows(
      pool,
      `insert into physical_timeseries (physical_uid, received_at, ts, json_msg)
       values (3, '2024-03-01T00:05:00Z', '2024-03-01T00:00:00Z', '{}') returning ts_delta::text`,
    );
    expect(inserted).toEqual([{ ts_delta: "00:05:00" }]);
    await expect(
      pool.query("insert into physical_logical_map (physical_uid, logical_uid) values (1, 1)"),
    ).rejects.toMatchObject({ code: "23505" });

    // Our repositories read IoTa's rows (a NULL location is null, NULL source_ids is {}).
    expect(await getPhysicalDevice(handle.db, 2)).toMatchObject({ location: null, source_ids: {} });
    expect(await getPhysicalDevice(handle.db, 1)).toMatchObject({
      location: { lat: -33.8, long: 151.2 },
      last_seen: "2024-01-02T03:04:05.123456+00:00",
    });
    expect((await migrate(pool)).applied).toEqual([]);
  });

  it("refuses an IoTa database at version 1 with a clear message", async () => {
    const { handle } = await emptyDatabase();
    await handle.pool.query(
      "create table version (version integer not null); insert into version values (1)",
    );
    await expect(migrate(handle.pool)).rejects.toThrow(/version 1.*002\.sql/);
    expect(await rows(handle.pool, "select version from version")).toEqual([{ version: 1 }]);
  });

  it("applies a file that lands after a higher-numbered one", async () => {
    const { handle } = await emptyDatabase();
    const all = await loadMigrations();
    const high = { version: 9001, name: "9001_high.sql", sql: "create table high_marker (x int)" };
    const late = { version: 9000, name: "9000_late.sql", sql: "create table late_marker (x int)" };
    await migrate(handle.pool, [...all, high]);
    const result = await migrate(handle.pool, [...all, late, high]);
    expect(result.applied.map((m) => m.name)).toEqual([late.name]);
    expect(result.to).toBe(9001);
    expect(await rows(handle.pool, "select to_regclass('late_marker') is not null as ok")).toEqual([
      { ok: true },
    ]);
  });

  it("lists pending files for broker run's start-up check", async () => {
    const { handle } = await emptyDatabase();
    expect((await schemaStatus(handle.pool)).pending.length).toBeGreaterThan(0);
    await migrate(handle.pool);
    expect((await schemaStatus(handle.pool)).pending).toEqual([]);
  });

  it("ends IoTa's overlapping mappings where the next one starts, then refuses overlaps", async () => {
    const { handle } = await emptyDatabase();
    const pool = handle.pool;
    await pool.query(
      await readFile(new URL("../fixtures/iota-v2-schema.sql", import.meta.url), "utf8"),
    );
    await pool.query(`
      insert into physical_devices (source_name, name) values ('ttn', 'a'), ('ttn', 'b');
      insert into logical_devices (name) values ('x'), ('y');
      insert into physical_logical_map (physical_uid, logical_uid, start_time, end_time) values
        (1, 1, '2023-01-01T00:00:00Z', '2023-09-01T00:00:00Z'),
        (1, 2, '2023-06-01T00:00:00Z', null),
        (2, 1, '2023-08-01T00:00:00Z', '2023-10-01T00:00:00Z');`);
    await migrate(pool);
    expect(
      await rows(
        pool,
        "select physical_uid, logical_uid, start_time, end_time from physical_logical_map order by 1, 3",
      ),
    ).toEqual([
      // Cut at physical device 1's next start (June), which is before logical 1's (August).
      {
        physical_uid: 1,
        logical_uid: 1,
        start_time: "2023-01-01T00:00:00+00:00",
        end_time: "2023-06-01T00:00:00+00:00",
      },
      { physical_uid: 1, logical_uid: 2, start_time: "2023-06-01T00:00:00+00:00", end_time: null },
      {
        physical_uid: 2,
        logical_uid: 1,
        start_time: "2023-08-01T00:00:00+00:00",
        end_time: "2023-10-01T00:00:00+00:00",
      },
    ]);
    await expect(
      pool.query(
        "insert into physical_logical_map (physical_uid, logical_uid, start_time, end_time) values (2, 2, '2023-05-01', '2023-07-01')",
      ),
    ).rejects.toMatchObject({ code: "23P01" });
  });

  it("stops, naming them, at two mappings of one device starting at the same instant", async () => {
    const { handle } = await emptyDatabase();
    const pool = handle.pool;
    await pool.query(
      await readFile(new URL("../fixtures/iota-v2-schema.sql", import.meta.url), "utf8"),
    );
    await pool.query(`
      insert into physical_devices (source_name, name) values ('ttn', 'a');
      insert into logical_devices (name) values ('x'), ('y');
      insert into physical_logical_map (physical_uid, logical_uid, start_time, end_time) values
        (1, 1, '2023-01-01T00:00:00Z', '2023-02-01T00:00:00Z'),
        (1, 2, '2023-01-01T00:00:00Z', null);`);
    await expect(migrate(pool)).rejects.toThrow(
      /mappings 1 → 1 and 1 → 2 both start at 2023-01-01 00:00:00\+00: delete one of them/,
    );
    expect(
      await rows(
        pool,
        "select count(*)::int as n from physical_logical_map where end_time is null",
      ),
    ).toEqual([{ n: 1 }]);
  });
});
