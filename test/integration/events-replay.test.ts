import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { logicalDeviceJson, physicalDeviceJson } from "../../src/core/device-json.js";
import type { JsonObject } from "../../src/core/devices.js";
import type { Db } from "../../src/db/database.js";
import { listEvents } from "../../src/db/repositories/events.js";
import {
  createLogicalDevice,
  deleteLogicalDevice,
  listLogicalDevices,
  updateLogicalDevice,
} from "../../src/db/repositories/logical-devices.js";
import {
  deleteMappings,
  endMapping,
  setMappingActive,
  startMapping,
} from "../../src/db/repositories/mappings.js";
import { createNote, deleteNote, updateNote } from "../../src/db/repositories/notes.js";
import {
  createPhysicalDevice,
  deletePhysicalDevice,
  findOrCreatePhysicalDevice,
  listPhysicalDevices,
  recordSightings,
  updatePhysicalDevice,
} from "../../src/db/repositories/physical-devices.js";
import { recordLogicalSightings } from "../../src/db/repositories/routes.js";
import {
  createUser,
  deleteUser,
  listUsers,
  revokeTokens,
  setPassword,
  updateUserFlags,
} from "../../src/db/repositories/users.js";
import { withActor } from "../../src/events/actor.js";
import type { RegistryEvent } from "../../src/events/event.js";
import { replay, type RegistryState } from "../../src/events/replay.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

let testDb: TestDatabase;
let db: Db;

beforeAll(async () => {
  testDb = await createTestDatabase();
  db = testDb.handle.db;
});

afterAll(async () => {
  await testDb.drop();
});

/** A season of registry work: ingest, operators in the CLI and API, a fix-up in psql. */
async function registryHistory(): Promise<void> {
  const ingest = (devEui: string, name: string) =>
    withActor(db, "component:ttn", (trx) =>
      findOrCreatePhysicalDevice(
        trx,
        "ttn",
        { dev_eui: devEui },
        {
          source_name: "ttn",
          name,
          properties: { creation_correlation_id: devEui, last_msg: { first: true } },
        },
      ),
    );
  const a = (await ingest("A0", "soil probe A")).device;
  const b = (await ingest("B0", "soil probe B")).device;
  const c = (await ingest("C0", "weather station")).device;
  for (let minute = 0; minute < 5; minute++) {
    await recordSightings(db, [
      { uid: a.uid, lastSeen: `2024-03-01T10:0${minute}:00Z`, lastMsg: { minute } },
      { uid: b.uid, lastSeen: `2024-03-01T10:0${minute}:00Z`, sourceIds: { dev_addr: "B1" } },
    ]);
  }
  const [north, south, shed] = await withActor(db, "api:operator", async (trx) => [
    await createLogicalDevice(trx, {
      name: "north paddock",
      location: { lat: -35.1, long: 147.3 },
    }),
    await createLogicalDevice(trx, { name: "south paddock" }),
    await createLogicalDevice(trx, { name: "shed", properties: { ubidots: { label: "shed" } } }),
  ]);
  await withActor(db, "cli:ops", async (trx) => {
    await startMapping(trx, a.uid, north!.uid, "2024-03-01T00:00:00Z");
    await startMapping(trx, b.uid, south!.uid, "2024-03-01T00:00:00.5Z");
    await startMapping(trx, c.uid, shed!.uid);
  });
  await recordLogicalSightings(db, [
    { uid: north!.uid, lastSeen: "2024-03-01T10:04:00Z", lastMsg: { minute: 4 } },
  ]);
  await setMappingActive(db, { puid: b.uid }, false);
  await updatePhysicalDevice(db, a.uid, {
    name: "soil probe A (replaced battery)",
    location: { lat: -35.11, long: 147.31 },
    properties: { battery: "2024-03-02", last_msg: { minute: 4 } },
  });
  await updateLogicalDevice(db, south!.uid, { location: { lat: -35.2, long: 147.35 } });
  // The probe in the north paddock is swapped: end the old mapping, map the spare.
  const spare = await createPhysicalDevice(db, { source_name: "ttn", name: "spare probe" });
  await endMapping(db, { puid: a.uid });
  await startMapping(db, spare.uid, north!.uid);
  await setMappingActive(db, { puid: b.uid }, true);
  // An operator moves a mapping's start back by hand in psql (the key of the row changes).
  await sql`update physical_logical_map set start_time = start_time - interval '1 day'
            where physical_uid = ${c.uid}`.execute(db);

  const note1 = await createNote(db, a.uid, "battery replaced");
  const note2 = await createNote(db, b.uid, "cable chewed");
  await updateNote(db, note2.uid, { note: "cable replaced", ts: "2024-03-03T09:00:00Z" });
  await deleteNote(db, note1.uid);

  // The weather station is retired with its history; its logical device goes too.
  await withActor(db, "cli:ops", async (trx) => {
    await deleteMappings(trx, { puid: c.uid });
    await deletePhysicalDevice(trx, c.uid);
    await deleteLogicalDevice(trx, shed!.uid);
  });

  const alice = await createUser(db, {
    username: "alice",
    salt: "salt-1",
    passwordHash: "hash-1",
    valid: true,
    readOnly: true,
  });
  await createUser(db, {
    username: "bob",
    salt: "salt-2",
    passwordHash: "hash-2",
    valid: true,
    readOnly: false,
  });
  await setPassword(db, alice.uid, "salt-3", "hash-3");
  await updateUserFlags(db, "alice", { readOnly: false, valid: false });
  await revokeTokens(db, alice.uid);
  await deleteUser(db, "bob");
}

async function allEvents(): Promise<RegistryEvent[]> {
  const events: RegistryEvent[] = [];
  for (;;) {
    const page = await listEvents(db, { since: events.at(-1)?.id ?? 0, limit: 50 });
    if (page.length === 0) {
      return events;
    }
    events.push(...page);
  }
}

/** A device without last_seen and properties.last_msg (sightings, not registry state). */
function withoutNoise(device: JsonObject): JsonObject {
  const { last_seen: _seen, properties, ...rest } = device;
  const { last_msg: _msg, ...kept } = (properties ?? {}) as JsonObject;
  return { ...rest, properties: kept };
}

function sorted(
  rows: Iterable<JsonObject>,
  key: (row: JsonObject) => string | number,
): JsonObject[] {
  return [...rows].sort((x, y) => String(key(x)).localeCompare(String(key(y))));
}

async function tables(): Promise<Record<keyof Omit<RegistryState, "lastEventId">, JsonObject[]>> {
  const mappings = await sql<JsonObject>`
    select physical_uid, logical_uid, start_time, end_time, is_active
    from physical_logical_map order by 1, 2, 3`.execute(db);
  const notes = await sql<JsonObject>`
    select uid, physical_uid, ts, note from device_notes order by uid`.execute(db);
  return {
    // Events write devices as the API does (no location = {lat: null, long: null}).
    physicalDevices: (await listPhysicalDevices(db)).map((d) =>
      withoutNoise({ ...physicalDeviceJson(d) }),
    ),
    logicalDevices: (await listLogicalDevices(db)).map((d) =>
      withoutNoise({ ...logicalDeviceJson(d) }),
    ),
    mappings: mappings.rows,
    notes: notes.rows,
    users: (await listUsers(db)).map((u) => ({ ...u })),
  };
}

function replayed(state: RegistryState): Awaited<ReturnType<typeof tables>> {
  const byUid = (row: JsonObject) => String(row.uid).padStart(10, "0");
  return {
    physicalDevices: sorted(state.physicalDevices.values(), byUid).map((d) =>
      // IoTa's model shows a missing source_ids as {} (the repository does the same).
      withoutNoise({ ...d, source_ids: d.source_ids ?? {} }),
    ),
    logicalDevices: sorted(state.logicalDevices.values(), byUid).map(withoutNoise),
    mappings: sorted(
      state.mappings.values(),
      (m) =>
        [m.physical_uid, m.logical_uid].map((n) => String(n).padStart(10, "0")).join(":") +
        String(m.start_time),
    ),
    notes: sorted(state.notes.values(), byUid),
    users: sorted(state.users.values(), byUid),
  };
}

describe("replaying registry_events", () => {
  it("rebuilds the registry the tables hold, and ignores events delivered twice", async () => {
    await registryHistory();
    const events = await allEvents();
    const state = replay(events);
    const expected = await tables();
    expect(expected.physicalDevices).toHaveLength(3);
    expect(expected.mappings).toHaveLength(3);
    expect(expected.notes).toHaveLength(1);
    expect(expected.users).toHaveLength(1);
    expect(replayed(state)).toEqual(expected);
    expect(state.lastEventId).toBe(events.at(-1)!.id);

    // At-least-once delivery: a consumer that sees a stretch again ends in the same state.
    const half = Math.floor(events.length / 2);
    const again = replay(events.slice(half - 10), replay(events.slice(0, half)));
    expect(replayed(again)).toEqual(expected);
  });
});
