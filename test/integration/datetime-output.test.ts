import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createLogger } from "../../src/core/logger.js";
import { createDatabase } from "../../src/db/database.js";
import { createLogicalDevice } from "../../src/db/repositories/logical-devices.js";
import { startMapping } from "../../src/db/repositories/mappings.js";
import { createPhysicalDevice } from "../../src/db/repositories/physical-devices.js";
import { ROOT } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { eventsOf } from "../helpers/events.js";
import { datetimeStrings, python310FromIsoformatAccepts } from "../helpers/python-iso.js";

/**
 * Every datetime read from PostgreSQL, and every one the registry triggers write into events,
 * is Python's isoformat, which Python 3.10's fromisoformat (IoTa's clients) reads.
 */

let testDb: TestDatabase;

beforeAll(async () => {
  testDb = await createTestDatabase();
});

afterAll(async () => {
  await testDb.drop();
});

/** Values whose fractions end in zeros, the ones PostgreSQL's text shortens. */
const INSTANTS = [
  ["2022-05-06T10:30:00.5Z", "2022-05-06T10:30:00.500000+00:00"],
  ["2022-05-06T10:30:43.19903Z", "2022-05-06T10:30:43.199030+00:00"],
  ["2022-05-06T10:30:07.1Z", "2022-05-06T10:30:07.100000+00:00"],
  ["2022-05-06T10:30:07.000010Z", "2022-05-06T10:30:07.000010+00:00"],
  ["2022-05-06T10:30:00Z", "2022-05-06T10:30:00+00:00"],
  ["2022-05-06T10:30:00.000000Z", "2022-05-06T10:30:00+00:00"],
  ["2022-05-06T10:30:00.123456Z", "2022-05-06T10:30:00.123456+00:00"],
] as const;

describe("datetimes read from the database", () => {
  it("are Python's isoformat in UTC by default", async () => {
    for (const [input, expected] of INSTANTS) {
      const { rows } = await sql<{
        t: string;
      }>`select ${input}::timestamptz as t`.execute(testDb.handle.db);
      expect(rows[0]!.t).toBe(expected);
      expect(python310FromIsoformatAccepts(rows[0]!.t)).toBe(true);
    }
  });

  it("take the display zone's offset when DISPLAY_TZ names one", async () => {
    const sydney = createDatabase(
      { ...testDb.pg, poolSize: 1, timeZone: "Australia/Sydney" },
      createLogger({ level: "silent" }),
    );
    try {
      const { rows } = await sql<{ winter: string; summer: string }>`
        select '2022-07-01T00:00:00.5Z'::timestamptz as winter,
               '2022-01-01T00:00:00Z'::timestamptz as summer`.execute(sydney.db);
      expect(rows[0]).toEqual({
        winter: "2022-07-01T10:00:00.500000+10:00",
        summer: "2022-01-01T11:00:00+11:00",
      });
    } finally {
      await sydney.close();
    }
  });
});

describe("registry events", () => {
  it("write datetimes as Python's isoformat and a missing location as IoTa does", async () => {
    const db = testDb.handle.db;
    let puid = 0;
    let luid = 0;
    const events = await eventsOf(db, async () => {
      const pd = await createPhysicalDevice(db, {
        source_name: "ttn",
        name: "zeros",
        last_seen: "2022-05-06T10:30:00.5Z",
      });
      const ld = await createLogicalDevice(db, { name: "zeros ld" });
      puid = pd.uid;
      luid = ld.uid;
      await startMapping(db, pd.uid, ld.uid, "2024-01-01T00:00:00.1Z");
    });
    expect(events.map((e) => `${e.entity}.${e.operation}`)).toEqual([
      "physical_device.create",
      "logical_device.create",
      "mapping.start",
    ]);
    expect(events[0]!.data.after).toMatchObject({
      last_seen: "2022-05-06T10:30:00.500000+00:00",
      location: { lat: null, long: null },
    });
    expect(events[2]!.entity_id).toBe(`${puid}:${luid}:2024-01-01T00:00:00.100000+00:00`);
    const all = datetimeStrings(events.map((e) => ({ ...e, data: e.data })));
    expect(all.length).toBeGreaterThanOrEqual(4);
    expect(all.filter((t) => !python310FromIsoformatAccepts(t))).toEqual([]);
  });

  it("stored before the upgrade are rewritten by migration 011", async () => {
    const db = testDb.handle.db;
    // An event as migration 008 wrote it: to_jsonb's shortened fraction and location null.
    const old = {
      after: {
        uid: 424242,
        name: "old",
        location: null,
        last_seen: "2022-05-06T10:30:00.5+00:00",
        properties: {},
      },
    };
    const oldMapping = {
      after: {
        physical_uid: 1,
        logical_uid: 2,
        start_time: "2024-01-01T00:00:00.1+00:00",
        end_time: null,
        is_active: true,
      },
    };
    const { rows } = await sql<{ id: string }>`
      insert into registry_events (entity, operation, entity_id, actor, data) values
        ('logical_device', 'create', '424242', 'test', ${JSON.stringify(old)}::jsonb),
        ('mapping', 'start', '1:2:2024-01-01T00:00:00.1+00:00', 'test',
         ${JSON.stringify(oldMapping)}::jsonb)
      returning id`.execute(db);
    const migration = await readFile(join(ROOT, "db/migrations/011_event_datetimes.sql"), "utf8");
    await testDb.handle.pool.query(`begin; ${migration}; commit`);
    const { rows: after } = await sql<{ entity_id: string; data: Record<string, unknown> }>`
      select entity_id, data from registry_events
      where id in (${sql.join(rows.map((r) => r.id))}) order by id`.execute(db);
    expect(after[0]!.data).toEqual({
      after: {
        ...old.after,
        location: { lat: null, long: null },
        last_seen: "2022-05-06T10:30:00.500000+00:00",
      },
    });
    expect(after[1]!.entity_id).toBe("1:2:2024-01-01T00:00:00.100000+00:00");
    expect(after[1]!.data).toEqual({
      after: { ...oldMapping.after, start_time: "2024-01-01T00:00:00.100000+00:00" },
    });
  });
});
