import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Db } from "../../src/db/database.js";
import {
  enqueueDeliveries,
  markDelivered,
  pendingDeliveries,
  type QueuedMessageInput,
} from "../../src/db/repositories/delivery-queue.js";
import {
  createLogicalDevice,
  deleteLogicalDevice,
  getLogicalDevice,
  listLogicalDevices,
  updateLogicalDevice,
} from "../../src/db/repositories/logical-devices.js";
import {
  deleteMappings,
  endMapping,
  getCurrentMapping,
  getLatestMapping,
  listCurrentMappings,
  listMappings,
  listPhysicalDevicesWithCurrentLogical,
  setMappingActive,
  startMapping,
} from "../../src/db/repositories/mappings.js";
import {
  createPhysicalDevice,
  deletePhysicalDevice,
  findOrCreatePhysicalDevice,
  findOrCreatePhysicalDevices,
  findPhysicalDevicesBySourceIds,
  findPhysicalDeviceUids,
  getPhysicalDevice,
  listPhysicalDevices,
  listUnmappedPhysicalDevices,
  recordSightings,
  updatePhysicalDevice,
} from "../../src/db/repositories/physical-devices.js";
import {
  insertMappedBatch,
  type TimeseriesRow,
} from "../../src/db/repositories/physical-timeseries.js";
import { insertRawMessages, type RawMessageInput } from "../../src/db/repositories/raw-messages.js";
import { RegistryError } from "../../src/db/repositories/registry-error.js";
import { recordLogicalSightings } from "../../src/db/repositories/routes.js";
import { addSource, listSources } from "../../src/db/repositories/sources.js";
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

/** Resolves to the RegistryError code `promise` rejects with. */
async function registryCode(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RegistryError);
  return (err as RegistryError).code;
}

describe("sources", () => {
  it("lists IoTa's seed alphabetically and adds idempotently", async () => {
    expect(await listSources(db)).toEqual([
      "dragino_json",
      "greenbrain",
      "ict_eagleio",
      "ict_mqtt",
      "ttn",
      "wombat",
      "ydoc",
    ]);
    await addSource(db, "axistech");
    await Promise.all([addSource(db, "axistech"), addSource(db, "axistech")]);
    expect((await listSources(db)).filter((s) => s === "axistech")).toHaveLength(1);
  });
});

describe("physical devices", () => {
  it("creates, reads, lists, updates and deletes", async () => {
    const input = {
      source_name: "ydoc",
      name: "crud one",
      location: { lat: -33.86, long: 151.21 },
      last_seen: "2023-01-30T06:21:56.123456Z",
      properties: { nested: { a: [1, 2] } },
      source_ids: { serial_no: "crud-1" },
    };
    const created = await createPhysicalDevice(db, input);
    expect(created).toEqual({
      ...input,
      uid: created.uid,
      last_seen: "2023-01-30T06:21:56.123456+00:00",
    });
    expect(Object.keys(created)).toEqual([
      "uid",
      "name",
      "location",
      "last_seen",
      "properties",
      "source_name",
      "source_ids",
    ]);
    expect(await getPhysicalDevice(db, created.uid)).toEqual(created);

    const bare = await createPhysicalDevice(db, { source_name: "wombat", name: "crud two" });
    expect(bare).toMatchObject({ location: null, last_seen: null, properties: {}, source_ids: {} });

    expect((await listPhysicalDevices(db, { source: "ydoc" })).map((d) => d.uid)).toContain(
      created.uid,
    );
    expect((await listPhysicalDevices(db, { source: "wombat" })).map((d) => d.uid)).toEqual([
      bare.uid,
    ]);
    const all = (await listPhysicalDevices(db)).map((d) => d.uid);
    expect(all).toEqual([...all].sort((a, b) => a - b));

    const renamed = await updatePhysicalDevice(db, created.uid, {
      name: "renamed",
      properties: { b: 2 },
    });
    expect(renamed).toEqual({ ...created, name: "renamed", properties: { b: 2 } });
    const cleared = await updatePhysicalDevice(db, created.uid, {
      location: null,
      source_ids: { x: 1 },
    });
    expect(cleared).toMatchObject({ name: "renamed", location: null, source_ids: { x: 1 } });
    expect(await updatePhysicalDevice(db, created.uid, {})).toEqual(cleared);
    expect(await updatePhysicalDevice(db, 999_999, { name: "x" })).toBeUndefined();
    expect(await registryCode(updatePhysicalDevice(db, created.uid, { source_name: "nope" }))).toBe(
      "invalid",
    );
    expect(await registryCode(createPhysicalDevice(db, { source_name: "nope", name: "x" }))).toBe(
      "invalid",
    );

    expect(await deletePhysicalDevice(db, bare.uid)).toEqual(bare);
    expect(await getPhysicalDevice(db, bare.uid)).toBeUndefined();
    expect(await deletePhysicalDevice(db, bare.uid)).toBeUndefined();
  });

  it("finds devices by source ids: in order, by containment, lowest uid, per source", async () => {
    const a = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "a",
      source_ids: { dev_eui: "F1", app: "x" },
    });
    const b = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "b",
      source_ids: { dev_eui: "F2" },
    });
    await createPhysicalDevice(db, {
      source_name: "ydoc",
      name: "c",
      source_ids: { dev_eui: "F3" },
    });
    const d = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "d",
      source_ids: { dev_eui: "F1", other: 1 },
    });
    const found = await findPhysicalDevicesBySourceIds(db, "ttn", [
      { dev_eui: "F2" },
      { dev_eui: "nope" },
      { dev_eui: "F1" },
      { other: 1, dev_eui: "F1" },
      { dev_eui: "F3" },
      { dev_eui: "F2" },
    ]);
    expect(found.map((x) => x?.uid)).toEqual([b.uid, undefined, a.uid, d.uid, undefined, b.uid]);
    expect(found[0]).toEqual(b);
    expect(await findPhysicalDevicesBySourceIds(db, "ttn", [])).toEqual([]);
    // The ingest path's uid-only form answers the same, in the same order.
    expect(
      await findPhysicalDeviceUids(db, "ttn", [
        { dev_eui: "F2" },
        { dev_eui: "nope" },
        { other: 1, dev_eui: "F1" },
        { dev_eui: "F2" },
      ]),
    ).toEqual([b.uid, undefined, d.uid, b.uid]);
    expect(await findPhysicalDeviceUids(db, "ttn", [])).toEqual([]);
  });

  it("findOrCreate never creates the same device twice under concurrency", async () => {
    const create = { source_name: "ttn", name: "raced", properties: { created_by: "test" } };
    let firstHasLock!: () => void;
    const locked = new Promise<void>((r) => (firstHasLock = r));
    const first = db.transaction().execute(async (trx) => {
      const result = await findOrCreatePhysicalDevice(
        trx,
        "ttn",
        { dev_eui: "RACE", app: "a" },
        create,
      );
      firstHasLock();
      // Hold the transaction open: without the lock the second would not see this insert.
      await new Promise((r) => setTimeout(r, 300));
      return result;
    });
    await locked;
    // Same lookup with its keys in another order: the lock is on the canonical jsonb text.
    const second = db
      .transaction()
      .execute((trx) =>
        findOrCreatePhysicalDevice(trx, "ttn", { app: "a", dev_eui: "RACE" }, create),
      );
    const [r1, r2] = await Promise.all([first, second]);
    expect(r1.created).toBe(true);
    expect(r2.created).toBe(false);
    expect(r2.device).toEqual(r1.device);
    expect(r1.device.source_ids).toEqual({ dev_eui: "RACE", app: "a" });
    expect(await findPhysicalDevicesBySourceIds(db, "ttn", [{ dev_eui: "RACE" }])).toHaveLength(1);
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from physical_devices where source_ids @> '{"dev_eui":"RACE"}'`.execute(
      db,
    );
    expect(rows[0]?.n).toBe(1);
  });

  it("findOrCreate for many devices: batches sharing devices in opposite orders create each once, without deadlock", async () => {
    const wanted = Array.from({ length: 30 }, (_, i) => ({
      lookup: { dev_eui: `BATCH${i}` },
      create: {
        source_name: "ttn",
        name: `batch ${i}`,
        location: i === 0 ? { lat: -33.8, long: 151.2 } : null,
        properties: { n: i },
      },
    }));
    const runs = await Promise.all(
      [wanted, [...wanted].reverse(), wanted.slice(10, 20), [wanted[3]!, wanted[3]!]].map((w) =>
        db.transaction().execute((trx) => findOrCreatePhysicalDevices(trx, "ttn", w)),
      ),
    );
    const uids = new Map<string, number>();
    for (const [r, run] of runs.entries()) {
      run.forEach(({ device }, i) => {
        const w = [wanted, [...wanted].reverse(), wanted.slice(10, 20), [wanted[3]!, wanted[3]!]][
          r
        ]![i]!;
        expect(device.source_ids).toEqual(w.lookup);
        const seen = uids.get(w.lookup.dev_eui);
        expect(seen === undefined || seen === device.uid).toBe(true);
        uids.set(w.lookup.dev_eui, device.uid);
      });
    }
    expect(runs.flat().filter((r) => r.created)).toHaveLength(30);
    const { rows } = await sql<{ n: number; located: number }>`
      select count(*)::int as n, count(location)::int as located from physical_devices
      where source_ids->>'dev_eui' like 'BATCH%'`.execute(db);
    expect(rows[0]).toEqual({ n: 30, located: 1 });
  });

  it("recordSightings moves last_seen forward only, merges source ids, keeps last_msg newest", async () => {
    const dev = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "seen",
      properties: { keep: true },
      source_ids: { dev_eui: "S1", operator_note: "keep me" },
    });
    const t = (s: string) => `2024-05-01T00:00:${s}Z`;
    const read = async () => (await getPhysicalDevice(db, dev.uid))!;

    expect(
      await recordSightings(db, [
        {
          uid: dev.uid,
          lastSeen: t("10.000001"),
          sourceIds: { dev_eui: "S1", dev_addr: "A" },
          lastMsg: { n: 10 },
        },
        { uid: 999_999, lastSeen: t("10") },
      ]),
    ).toBe(1);
    let now = await read();
    expect(now.last_seen).toBe("2024-05-01T00:00:10.000001+00:00");
    expect(now.source_ids).toEqual({ dev_eui: "S1", operator_note: "keep me", dev_addr: "A" });
    expect(now.properties).toEqual({ keep: true, last_msg: { n: 10 } });

    // An older sighting: nothing moves back, only missing keys are added.
    await recordSightings(db, [
      {
        uid: dev.uid,
        lastSeen: t("05"),
        sourceIds: { dev_addr: "OLD", fport: 2 },
        lastMsg: { n: 5 },
      },
    ]);
    now = await read();
    expect(now.last_seen).toBe("2024-05-01T00:00:10.000001+00:00");
    expect(now.source_ids).toEqual({
      dev_eui: "S1",
      operator_note: "keep me",
      dev_addr: "A",
      fport: 2,
    });
    expect(now.properties.last_msg).toEqual({ n: 10 });

    // Duplicates of one uid in a batch: the newest wins whatever the order; the newest sighting
    // carrying a message supplies last_msg, and is applied because it is newer than what is stored.
    await recordSightings(db, [
      { uid: dev.uid, lastSeen: t("30"), sourceIds: { dev_addr: "C" } },
      { uid: dev.uid, lastSeen: t("20"), sourceIds: { dev_addr: "B", f: 1 }, lastMsg: { n: 20 } },
      { uid: dev.uid, lastSeen: t("15"), lastMsg: { n: 15 } },
    ]);
    now = await read();
    expect(now.last_seen).toBe("2024-05-01T00:00:30+00:00");
    expect(now.source_ids).toMatchObject({ dev_addr: "C", f: 1, operator_note: "keep me" });
    expect(now.properties).toEqual({ keep: true, last_msg: { n: 20 } });

    // Equal time still updates last_msg (not older); nanoseconds are accepted.
    await recordSightings(db, [
      { uid: dev.uid, lastSeen: "2024-05-01T00:00:30.000000400Z", lastMsg: { n: 30 } },
    ]);
    expect((await read()).properties.last_msg).toEqual({ n: 30 });

    expect(await recordSightings(db, [])).toBe(0);
    expect(await registryCode(recordSightings(db, [{ uid: dev.uid, lastSeen: "yesterday" }]))).toBe(
      "invalid",
    );
  });
});

describe("recordSightings under concurrency", () => {
  it("ends at the newest sighting of every device whatever order batches commit in", async () => {
    const devs = await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        createPhysicalDevice(db, { source_name: "ttn", name: `conc ${i}` }),
      ),
    );
    // 20 batches over the same devices, each in a different order, all at once.
    const batches = Array.from({ length: 20 }, (_, b) =>
      devs.map((_, j) => {
        const dev = devs[(j + b) % devs.length]!;
        const seconds = String(b * 2 + (j % 2)).padStart(2, "0");
        return { uid: dev.uid, lastSeen: `2024-06-01T00:00:${seconds}Z`, lastMsg: { b } };
      }),
    );
    await Promise.all(batches.map((batch) => recordSightings(db, batch)));
    for (const dev of devs) {
      const newest = batches
        .flat()
        .filter((s) => s.uid === dev.uid)
        .sort((x, y) => x.lastSeen.localeCompare(y.lastSeen))
        .at(-1)!;
      const stored = (await getPhysicalDevice(db, dev.uid))!;
      expect(stored.last_seen).toBe(newest.lastSeen.replace("Z", "+00:00"));
      expect(stored.properties.last_msg).toEqual(newest.lastMsg);
    }
  });
});

describe("recordLogicalSightings", () => {
  it("moves last_seen forward only, and leaves a device untouched by an older sighting", async () => {
    const ld = await createLogicalDevice(db, { name: "sighted" });
    const version = async () =>
      (
        await sql<{ xmin: string; last_seen: string; last_msg: unknown }>`
          select xmin::text, last_seen, properties->'last_msg' as last_msg
          from logical_devices where uid = ${ld.uid}`.execute(db)
      ).rows[0]!;
    await recordLogicalSightings(db, [
      { uid: ld.uid, lastSeen: "2024-05-01T00:00:10Z", lastMsg: { n: 1 } },
    ]);
    const first = await version();
    expect(first).toMatchObject({ last_seen: "2024-05-01T00:00:10+00:00", last_msg: { n: 1 } });
    // An older message (a replay, a release, a late redelivery): no write at all, not even a
    // new row version with the same values.
    await recordLogicalSightings(db, [
      { uid: ld.uid, lastSeen: "2024-05-01T00:00:09Z", lastMsg: { n: 0 } },
    ]);
    expect(await version()).toEqual(first);
    await recordLogicalSightings(db, [
      { uid: ld.uid, lastSeen: "2024-05-01T00:00:11Z", lastMsg: { n: 2 } },
    ]);
    expect(await version()).toMatchObject({
      last_seen: "2024-05-01T00:00:11+00:00",
      last_msg: { n: 2 },
    });
  });
});

describe("logical devices", () => {
  it("creates, reads, lists, updates and deletes", async () => {
    const created = await createLogicalDevice(db, {
      name: "ld crud",
      location: { lat: -30, long: 150 },
    });
    expect(created).toEqual({
      uid: created.uid,
      name: "ld crud",
      location: { lat: -30, long: 150 },
      last_seen: null,
      properties: {},
    });
    expect(Object.keys(created)).toEqual(["uid", "name", "location", "last_seen", "properties"]);
    expect(await getLogicalDevice(db, created.uid)).toEqual(created);
    expect((await listLogicalDevices(db)).map((d) => d.uid)).toContain(created.uid);
    const updated = await updateLogicalDevice(db, created.uid, {
      last_seen: "2024-01-01T10:00:00+10:00",
      properties: { ubidots: { label: "x" } },
    });
    expect(updated).toEqual({
      ...created,
      last_seen: "2024-01-01T00:00:00+00:00",
      properties: { ubidots: { label: "x" } },
    });
    expect(await updateLogicalDevice(db, 999_999, { name: "x" })).toBeUndefined();
    expect(await getLogicalDevice(db, 999_999)).toBeUndefined();
    expect(await deleteLogicalDevice(db, created.uid)).toEqual(updated);
    expect(await deleteLogicalDevice(db, created.uid)).toBeUndefined();
  });
});

describe("mappings", () => {
  it("follow IoTa's rules, fixed where IoTa was wrong", async () => {
    const pd1 = await createPhysicalDevice(db, { source_name: "wombat", name: "map pd1" });
    const pd2 = await createPhysicalDevice(db, { source_name: "wombat", name: "map pd2" });
    const ld1 = await createLogicalDevice(db, { name: "map ld1" });
    const ld2 = await createLogicalDevice(db, { name: "map ld2" });

    const m1 = await startMapping(db, pd1.uid, ld1.uid);
    expect(m1).toMatchObject({ pd: pd1, ld: ld1, end_time: null, is_active: true });
    expect(Object.keys(m1)).toEqual(["pd", "ld", "start_time", "end_time", "is_active"]);
    expect(await getCurrentMapping(db, { puid: pd1.uid })).toEqual(m1);
    expect(await getCurrentMapping(db, { luid: ld1.uid })).toEqual(m1);

    // The physical device is mapped already: refused, nothing changes.
    expect(await registryCode(startMapping(db, pd1.uid, ld2.uid))).toBe("conflict");
    expect(await registryCode(startMapping(db, 999_999, ld2.uid))).toBe("not_found");
    expect(await registryCode(startMapping(db, pd2.uid, 999_999))).toBe("not_found");
    expect(await registryCode(getCurrentMapping(db, {} as never))).toBe("invalid");

    // Mapping another physical device to ld1 ends ld1's current mapping where the new one starts.
    const m2 = await startMapping(db, pd2.uid, ld1.uid);
    const ended = await getLatestMapping(db, { puid: pd1.uid });
    expect(ended?.end_time).toBe(m2.start_time);
    expect(await getCurrentMapping(db, { puid: pd1.uid })).toBeUndefined();
    expect((await listUnmappedPhysicalDevices(db, { source: "wombat" })).map((d) => d.uid)).toEqual(
      [pd1.uid],
    );

    // A start before the logical device's current mapping began would overlap it: refused,
    // naming the mapping in the way (it was "invalid", from the database's end > start check).
    const overlap = startMapping(db, pd1.uid, ld1.uid, "2000-01-01T00:00:00Z");
    await expect(overlap).rejects.toMatchObject({ code: "conflict" });
    await expect(overlap).rejects.toThrow(
      `it would overlap the mapping of physical device ${pd1.uid} (map pd1) to logical device ${ld1.uid} (map ld1) from ${m1.start_time} to ${m2.start_time}`,
    );

    expect(await endMapping(db, { puid: pd2.uid })).toMatchObject({
      pd: pd2,
      ld: ld1,
      is_active: true,
    });
    expect(await endMapping(db, { puid: pd2.uid })).toBeUndefined();
    const m3 = await startMapping(db, pd1.uid, ld1.uid);
    const history = await listMappings(db, { luid: ld1.uid });
    expect(history.map((m) => [m.pd.uid, m.start_time])).toEqual([
      [pd1.uid, m3.start_time],
      [pd2.uid, m2.start_time],
      [pd1.uid, m1.start_time],
    ]);
    expect((await listMappings(db, { puid: pd1.uid })).map((m) => m.start_time)).toEqual([
      m3.start_time,
      m1.start_time,
    ]);
    expect((await listCurrentMappings(db)).map((m) => m.ld.uid)).toContain(ld1.uid);

    // Pausing touches only the current row; history keeps its is_active.
    expect(await setMappingActive(db, { luid: ld1.uid }, false)).toMatchObject({
      is_active: false,
      end_time: null,
    });
    const after = await listMappings(db, { puid: pd1.uid });
    expect(after.map((m) => m.is_active)).toEqual([false, true]);
    expect(await setMappingActive(db, { puid: pd2.uid }, false)).toBeUndefined();
    // A paused mapping still counts as mapped.
    expect((await listUnmappedPhysicalDevices(db, { source: "wombat" })).map((d) => d.uid)).toEqual(
      [pd2.uid],
    );
    const withLd = await listPhysicalDevicesWithCurrentLogical(db, { source: "wombat" });
    expect(withLd.map((r) => [r.device.uid, r.current?.uid])).toEqual([
      [pd1.uid, ld1.uid],
      [pd2.uid, undefined],
    ]);

    // Devices with mappings cannot be deleted until their history is.
    expect(await registryCode(deleteLogicalDevice(db, ld1.uid))).toBe("conflict");
    expect(await registryCode(deletePhysicalDevice(db, pd2.uid))).toBe("conflict");
    expect(await deleteMappings(db, { puid: pd2.uid })).toBe(1);
    expect(await deletePhysicalDevice(db, pd2.uid)).toMatchObject({ uid: pd2.uid });
  });

  it("startMapping joins the caller's transaction", async () => {
    const pd = await createPhysicalDevice(db, { source_name: "ydoc", name: "trx pd" });
    const ld = await createLogicalDevice(db, { name: "trx ld" });
    await expect(
      db.transaction().execute(async (trx) => {
        await startMapping(trx, pd.uid, ld.uid);
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    expect(await getLatestMapping(db, { puid: pd.uid })).toBeUndefined();
  });

  it("the database itself rejects a second current mapping", async () => {
    const pd = await createPhysicalDevice(db, { source_name: "ydoc", name: "db pd" });
    const ld1 = await createLogicalDevice(db, { name: "db ld1" });
    const ld2 = await createLogicalDevice(db, { name: "db ld2" });
    const pd2 = await createPhysicalDevice(db, { source_name: "ydoc", name: "db pd2" });
    await sql`insert into physical_logical_map (physical_uid, logical_uid) values (${pd.uid}, ${ld1.uid})`.execute(
      db,
    );
    await expect(
      sql`insert into physical_logical_map (physical_uid, logical_uid) values (${pd.uid}, ${ld2.uid})`.execute(
        db,
      ),
    ).rejects.toMatchObject({ code: "23505" });
    await expect(
      sql`insert into physical_logical_map (physical_uid, logical_uid) values (${pd2.uid}, ${ld1.uid})`.execute(
        db,
      ),
    ).rejects.toMatchObject({ code: "23505" });
  });
});

describe("physical timeseries", () => {
  it("stores a batch as given, skips keys already stored, computes ts_delta", async () => {
    const pd = await createPhysicalDevice(db, { source_name: "ydoc", name: "pts pd" });
    const ld = await createLogicalDevice(db, { name: "pts ld" });
    // Text that array literals must escape: quotes, backslashes, braces, commas, non-ASCII.
    const awkward = { note: 'a "quoted", {braced} \\ back\\slash — ünï', n: 1.5 };
    const rows: TimeseriesRow[] = [
      {
        physicalUid: pd.uid,
        logicalUid: null,
        ts: "2024-01-01T00:00:00Z",
        json: "{}",
        msgKey: KEY_A,
      },
      {
        physicalUid: pd.uid,
        logicalUid: ld.uid,
        ts: "2024-01-01T10:00:00+10:00",
        json: JSON.stringify(awkward),
        msgKey: KEY_B,
      },
    ];
    expect(await insertMappedBatch(db, rows, [])).toBe(2);
    // A redelivered batch (one old key, one new) stores only the new row.
    const again = [rows[1]!, { ...rows[0]!, msgKey: KEY_C }];
    expect(await insertMappedBatch(db, again, [])).toBe(1);
    expect(await insertMappedBatch(db, [], [])).toBe(0);

    const stored = await sql<{
      logical_uid: number | null;
      ts: string;
      json_msg: unknown;
      msg_key: string;
      has_delta: boolean;
    }>`select logical_uid, ts, json_msg, msg_key, ts_delta is not null as has_delta
       from physical_timeseries where physical_uid = ${pd.uid} order by msg_key`.execute(db);
    expect(stored.rows).toEqual([
      {
        logical_uid: null,
        ts: "2024-01-01T00:00:00+00:00",
        json_msg: {},
        msg_key: KEY_A,
        has_delta: true,
      },
      {
        logical_uid: ld.uid,
        ts: "2024-01-01T00:00:00+00:00",
        json_msg: awkward,
        msg_key: KEY_B,
        has_delta: true,
      },
      {
        logical_uid: null,
        ts: "2024-01-01T00:00:00+00:00",
        json_msg: {},
        msg_key: KEY_C,
        has_delta: true,
      },
    ]);
  });
});

describe("raw messages", () => {
  it("keeps JSON and text as given, the first copy of a correlation id only", async () => {
    const rows: RawMessageInput[] = [
      {
        sourceName: "ttn",
        correlationId: KEY_A,
        ts: "2024-01-01T00:00:00Z",
        json: { a: [1, "x"] },
      },
      // Text that must survive array-literal quoting, including the word NULL itself.
      { sourceName: "ttn", correlationId: KEY_B, ts: "2024-01-01T00:00:00Z", text: "NULL" },
      { sourceName: "ydoc", correlationId: KEY_C, ts: "2024-01-01T00:00:00Z", text: '{"a": "\\' },
    ];
    expect((await insertRawMessages(db, rows)).size).toBe(3);
    expect((await insertRawMessages(db, [{ ...rows[0]!, json: { other: true } }])).size).toBe(0);
    const stored = await sql<{ source_name: string; json_msg: unknown; text_msg: string | null }>`
      select source_name, json_msg, text_msg from raw_messages
      where correlation_id = any(${[KEY_A, KEY_B, KEY_C]}::uuid[]) order by correlation_id`.execute(
      db,
    );
    expect(stored.rows).toEqual([
      { source_name: "ttn", json_msg: { a: [1, "x"] }, text_msg: null },
      { source_name: "ttn", json_msg: null, text_msg: "NULL" },
      { source_name: "ydoc", json_msg: null, text_msg: '{"a": "\\' },
    ]);
  });

  it("stores rows linked to the devices their lookups find, and says which rows are new", async () => {
    const device = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "raw link",
      source_ids: { dev_eui: "aa00000000000001", app_id: "a", dev_id: "rl" },
    });
    const at = "2024-01-02T00:00:00Z";
    const ids = [
      "00000000-0000-4000-8000-0000000000d1",
      "00000000-0000-4000-8000-0000000000d2",
      "00000000-0000-4000-8000-0000000000d3",
    ];
    const stored = await insertRawMessages(
      db,
      [
        { sourceName: "ttn", correlationId: ids[0]!, ts: at, json: {}, deviceIndex: 1 },
        { sourceName: "ttn", correlationId: ids[1]!, ts: at, json: {}, deviceIndex: 0 },
        { sourceName: "ttn", correlationId: ids[2]!, ts: at, text: "x" },
        // Already stored: not stored again, not in the answer.
        { sourceName: "ttn", correlationId: KEY_A, ts: at, json: {}, deviceIndex: 1 },
      ],
      // The first lookup finds nothing (another source's id shape), the second the device.
      { sourceName: "ttn", lookups: [{ serial_no: "none" }, { dev_eui: "aa00000000000001" }] },
    );
    expect(stored).toEqual(
      new Map<string, number | null>([
        [ids[0]!, device.uid],
        [ids[1]!, null],
        [ids[2]!, null],
      ]),
    );
    const { rows } = await sql<{ physical_uid: number | null }>`
      select physical_uid from raw_messages where correlation_id = any(${ids}::uuid[])
      order by correlation_id`.execute(db);
    expect(rows.map((r) => r.physical_uid)).toEqual([device.uid, null, null]);
  });
});

describe("delivery queue", () => {
  it("counts a writer's undelivered messages only", async () => {
    const item = (n: number): QueuedMessageInput => ({
      msgKey: `00000000-0000-4000-8000-0000000001${String(n).padStart(2, "0")}`,
      lUid: 1,
      pUid: 1,
      correlationId: `pending-${n}`,
      body: "{}",
    });
    await enqueueDeliveries(db, "pending-a", [item(1), item(2), item(3)]);
    await enqueueDeliveries(db, "pending-b", [item(1)]);
    const { rows } = await sql<{ id: string }>`
      select id::text as id from delivery_queue where writer = 'pending-a' order by id limit 1`.execute(
      db,
    );
    await markDelivered(db, [rows[0]!.id]);
    expect(await pendingDeliveries(db, "pending-a")).toBe(2);
    expect(await pendingDeliveries(db, "pending-b")).toBe(1);
    expect(await pendingDeliveries(db, "pending-none")).toBe(0);
  });
});

const KEY_A = "00000000-0000-4000-8000-00000000000a";
const KEY_B = "00000000-0000-4000-8000-00000000000b";
const KEY_C = "00000000-0000-4000-8000-00000000000c";
