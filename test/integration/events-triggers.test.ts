import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Db } from "../../src/db/database.js";
import {
  createLogicalDevice,
  deleteLogicalDevice,
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
  recordSightings,
  updatePhysicalDevice,
} from "../../src/db/repositories/physical-devices.js";
import { recordLogicalSightings } from "../../src/db/repositories/routes.js";
import { withActor } from "../../src/events/actor.js";
import type { RegistryEvent } from "../../src/events/event.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { eventsOf as eventsOfIn, summary } from "../helpers/events.js";

let testDb: TestDatabase;
let db: Db;

beforeAll(async () => {
  testDb = await createTestDatabase();
  db = testDb.handle.db;
});

afterAll(async () => {
  await testDb.drop();
});

/** Runs `fn`, then returns the events it caused (in id order). */
const eventsOf = (fn: () => Promise<unknown>): Promise<RegistryEvent[]> => eventsOfIn(db, fn);

describe("registry triggers", () => {
  it("record every physical device change with before, after, changed and actor; sightings are silent", async () => {
    let uid = 0;
    const created = await eventsOf(async () => {
      const pd = await withActor(db, "api:alice", (trx) =>
        createPhysicalDevice(trx, {
          source_name: "ttn",
          name: "pd-1",
          location: { lat: -33.8688, long: 151.2093 },
          source_ids: { dev_eui: "70B3D57ED0000001" },
          properties: { creation_correlation_id: "c-1", last_msg: { big: "payload" } },
        }),
      );
      uid = pd.uid;
    });
    expect(summary(created)).toEqual(["physical_device.create api:alice"]);
    expect(created[0]!.entity_id).toBe(String(uid));
    expect(created[0]!.data).toEqual({
      after: {
        uid,
        name: "pd-1",
        location: { lat: -33.8688, long: 151.2093 },
        last_seen: null,
        // last_msg is telemetry, never part of an event.
        properties: { creation_correlation_id: "c-1" },
        source_name: "ttn",
        source_ids: { dev_eui: "70B3D57ED0000001" },
      },
    });

    const renamed = await eventsOf(() =>
      withActor(db, "cli:bob", (trx) => updatePhysicalDevice(trx, uid, { name: "pd-1b" })),
    );
    expect(summary(renamed)).toEqual(["physical_device.update cli:bob"]);
    expect(renamed[0]!.data.changed).toEqual(["name"]);
    expect(renamed[0]!.data.before?.name).toBe("pd-1");
    expect(renamed[0]!.data.after?.name).toBe("pd-1b");

    // The ingest hot path: last_seen, last_msg and unchanged source ids, over and over.
    const sightings = await eventsOf(async () => {
      for (const minute of [10, 11, 12]) {
        await recordSightings(db, [
          {
            uid,
            lastSeen: `2024-05-01T00:${minute}:00Z`,
            sourceIds: { dev_eui: "70B3D57ED0000001" },
            lastMsg: { minute },
          },
        ]);
      }
    });
    expect(sightings).toEqual([]);

    // A new source id key is registry news, even from the hot path (no actor set: `database`).
    const newKey = await eventsOf(() =>
      recordSightings(db, [
        { uid, lastSeen: "2024-05-01T00:13:00Z", sourceIds: { dev_addr: "26011234" } },
      ]),
    );
    expect(summary(newKey)).toEqual(["physical_device.update database"]);
    expect(newKey[0]!.data.changed).toEqual(["last_seen", "source_ids"]);
    expect(newKey[0]!.data.after?.source_ids).toEqual({
      dev_eui: "70B3D57ED0000001",
      dev_addr: "26011234",
    });

    const deleted = await eventsOf(() => deletePhysicalDevice(db, uid));
    expect(summary(deleted)).toEqual(["physical_device.delete database"]);
    expect(deleted[0]!.data.after).toBeUndefined();
    expect(deleted[0]!.data.before?.name).toBe("pd-1b");
  });

  it("record logical devices, notes and every mapping operation; the mapper's sightings are silent", async () => {
    const pd = await createPhysicalDevice(db, { source_name: "ttn", name: "pd-2" });
    const events = await eventsOf(() =>
      withActor(db, "tester", async (trx) => {
        const ld1 = await createLogicalDevice(trx, { name: "ld-1" });
        const ld2 = await createLogicalDevice(trx, { name: "ld-2" });
        await updateLogicalDevice(trx, ld1.uid, { location: { lat: -30, long: 150 } });
        await startMapping(trx, pd.uid, ld1.uid, "2024-01-01T00:00:00.123456Z");
        await setMappingActive(trx, { puid: pd.uid }, false);
        await setMappingActive(trx, { puid: pd.uid }, true);
        await recordLogicalSightings(trx, [
          { uid: ld1.uid, lastSeen: "2024-05-01T00:00:00Z", lastMsg: { x: 1 } },
        ]);
        await endMapping(trx, { luid: ld1.uid });
        await startMapping(trx, pd.uid, ld2.uid);
        await deleteMappings(trx, { puid: pd.uid });
        await deleteLogicalDevice(trx, ld2.uid);
        const note = await createNote(trx, pd.uid, "installed");
        await updateNote(trx, note.uid, { note: "installed on the north fence" });
        await deleteNote(trx, note.uid);
      }),
    );
    expect(events.map((e) => `${e.entity}.${e.operation}`)).toEqual([
      "logical_device.create",
      "logical_device.create",
      "logical_device.update",
      "mapping.start",
      "mapping.pause",
      "mapping.resume",
      "mapping.end",
      "mapping.start",
      "mapping.delete",
      "mapping.delete",
      "logical_device.delete",
      "note.create",
      "note.update",
      "note.delete",
    ]);
    expect(new Set(events.map((e) => e.actor))).toEqual(new Set(["tester"]));
    expect(events[2]!.data.changed).toEqual(["location"]);
    expect(events[2]!.data.after?.location).toEqual({ lat: -30, long: 150 });

    const start = events[3]!;
    const ld1 = events[0]!.data.after!.uid as number;
    // Timestamps are UTC with PostgreSQL's microseconds, whatever the session's time zone.
    expect(start.entity_id).toBe(`${pd.uid}:${ld1}:2024-01-01T00:00:00.123456+00:00`);
    expect(start.data.after).toEqual({
      physical_uid: pd.uid,
      logical_uid: ld1,
      start_time: "2024-01-01T00:00:00.123456+00:00",
      end_time: null,
      is_active: true,
    });
    expect(events[4]!.data).toMatchObject({
      before: { is_active: true },
      after: { is_active: false },
      changed: ["is_active"],
    });
    expect(events[6]!.data.changed).toEqual(["end_time"]);
    expect(events[6]!.entity_id).toBe(start.entity_id);
    expect(events[12]!.data).toMatchObject({
      before: { note: "installed" },
      after: { note: "installed on the north fence", physical_uid: pd.uid },
      changed: ["note"],
    });
  });
});
