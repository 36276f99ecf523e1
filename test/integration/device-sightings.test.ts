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
});
