import { sql } from "kysely";
import { describe, expect, it } from "vitest";

import type { Db } from "../../src/db/database.js";
import {
  createPhysicalDevice,
  deletePhysicalDevice,
  recordSightings,
  updatePhysicalDevice,
} from "../../src/db/repositories/physical-devices.js";
import { createLogicalDevice } from "../../src/db/repositories/logical-devices.js";
import { insertMappedBatch } from "../../src/db/repositories/physical-timeseries.js";
import { recordLogicalSightings } from "../../src/db/repositories/routes.js";
import { listPendingTtnDevices } from "../../src/sources/ttn/metadata-store.js";
import { useTestDatabase } from "../helpers/db.js";

const database = useTestDatabase();

/**
 * Updates of `table` that were heap-only, counted in this transaction (PostgreSQL's per-
 * transaction statistics are exact and immediate, unlike the cumulative ones).
 */
async function hotUpdates(trx: Db, table: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select n_tup_hot_upd::text as n from pg_stat_xact_user_tables where relname = ${table}`.execute(
    trx,
  );
  return Number(rows[0]?.n ?? 0);
}

describe("device sightings", () => {
  it("are heap-only updates: no index of the device is rewritten per message", async () => {
    const { db } = database;
    const pd = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "hot",
      source_ids: { dev_eui: "HOT1", app_id: "a", dev_id: "hot" },
      properties: { ttn_metadata_pending: { name: "hot" } },
    });
    const ld = await createLogicalDevice(db, { name: "hot place" });
    await db.transaction().execute(async (trx) => {
      for (let i = 0; i < 3; i++) {
        const at = `2026-01-01T00:00:0${i}Z`;
        await recordSightings(trx, [
          { uid: pd.uid, lastSeen: at, sourceIds: { dev_eui: "HOT1" }, lastMsg: { i } },
        ]);
        await recordLogicalSightings(trx, [{ uid: ld.uid, lastSeen: at, lastMsg: { i } }]);
      }
      expect(await hotUpdates(trx, "physical_devices")).toBe(3);
      expect(await hotUpdates(trx, "logical_devices")).toBe(3);
    });
  });

  it("leave the pending TTN metadata list as the marker in properties says", async () => {
    const { db } = database;
    const pending = async (): Promise<number[]> =>
      (await listPendingTtnDevices(db, 1000)).map((d) => d.uid);
    const marked = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "pending",
      source_ids: { dev_eui: "P1", app_id: "a", dev_id: "pending" },
      properties: { ttn_metadata_pending: { name: "pending" } },
    });
    const plain = await createPhysicalDevice(db, {
      source_name: "ttn",
      name: "plain",
      source_ids: { dev_eui: "P2", app_id: "a", dev_id: "plain" },
    });
    expect(await pending()).toContain(marked.uid);
    expect(await pending()).not.toContain(plain.uid);

    // A sighting leaves the marker, and the list, alone.
    await recordSightings(db, [{ uid: marked.uid, lastSeen: "2026-01-01T00:00:00Z", lastMsg: {} }]);
    expect(await pending()).toContain(marked.uid);

    // An operator clears the marker, then sets it to fetch the device again.
    await updatePhysicalDevice(db, marked.uid, { properties: {} });
    expect(await pending()).not.toContain(marked.uid);
    await updatePhysicalDevice(db, plain.uid, {
      properties: { ttn_metadata_pending: { name: "plain" } },
    });
    expect(await pending()).toContain(plain.uid);

    // A device that leaves the ttn source, or the registry, leaves the list.
    await updatePhysicalDevice(db, plain.uid, { source_name: "wombat" });
    expect(await pending()).not.toContain(plain.uid);
    await updatePhysicalDevice(db, plain.uid, {
      source_name: "ttn",
      properties: { ttn_metadata_pending: { name: "plain" } },
    });
    expect(await pending()).toContain(plain.uid);
    await deletePhysicalDevice(db, plain.uid);
    expect(await pending()).not.toContain(plain.uid);
  });

  it("of a mapped batch are stored with its rows in one statement; concurrent batches in opposite orders end with the newest, without deadlock", async () => {
    const { db } = database;
    const pd = await createPhysicalDevice(db, { source_name: "ttn", name: "mapped" });
    const lds = await Promise.all(
      Array.from({ length: 30 }, (_, i) => createLogicalDevice(db, { name: `mapped ${i}` })),
    );
    const at = (second: number): string =>
      `2026-02-01T00:00:${String(second).padStart(2, "0")}.000Z`;
    let key = 0;
    const batch = (order: typeof lds, second: number) =>
      insertMappedBatch(
        db,
        order.map((ld) => ({
          physicalUid: pd.uid,
          logicalUid: ld.uid,
          ts: at(second),
          json: JSON.stringify({ second }),
          msgKey: `00000000-0000-4000-8000-${String(++key).padStart(12, "0")}`,
        })),
        order.map((ld) => ({ uid: ld.uid, lastSeen: at(second), lastMsg: { second } })),
      );
    const reversed = [...lds].reverse();
    const shuffled = [...lds].sort((a, b) => ((a.uid * 7919) % 31) - ((b.uid * 7919) % 31));
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(
        [lds, reversed, shuffled, lds, reversed, shuffled].map((order, i) =>
          batch(order, round * 10 + i),
        ),
      );
      expect(results).toEqual([30, 30, 30, 30, 30, 30]);
    }
    const newest = async () =>
      (
        await sql<{ newest: boolean; last_msg: unknown }>`
          select last_seen = ${at(25)}::timestamptz as newest, properties->'last_msg' as last_msg
          from logical_devices where uid = any(${lds.map((ld) => ld.uid)}::int[])`.execute(db)
      ).rows;
    expect(await newest()).toEqual(lds.map(() => ({ newest: true, last_msg: { second: 25 } })));
    // A batch of older messages is stored but moves nothing back.
    expect(await batch(lds, 1)).toBe(30);
    expect(await newest()).toEqual(lds.map(() => ({ newest: true, last_msg: { second: 25 } })));
  });
});
