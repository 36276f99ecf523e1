import { sql } from "kysely";

import type { JsonObject } from "../../core/devices.js";
import { toJson, type Db } from "../../db/database.js";
import { withActor } from "../../events/actor.js";
import type { DeviceMetadata } from "./metadata.js";

/**
 * The TTN component's own queries on physical_devices. Pending devices are found through
 * `ttn_metadata_pending` (db/migrations/020_hot_sightings.sql, kept by triggers from the marker in
 * properties), not by reading the (large) properties of every device; the marker is checked
 * again on the few rows found, so it stays the truth.
 */

export interface PendingDevice {
  readonly uid: number;
  readonly appId: string;
  readonly devId: string;
}

/** TTN devices still waiting for their API record, oldest first, at most `limit`, bar `skip`. */
export async function listPendingTtnDevices(
  db: Db,
  limit: number,
  skip: readonly number[] = [],
): Promise<PendingDevice[]> {
  const { rows } = await sql<{ uid: number; app_id: string; dev_id: string }>`
    select d.uid, d.source_ids->>'app_id' as app_id, d.source_ids->>'dev_id' as dev_id
    from ttn_metadata_pending p join physical_devices d on d.uid = p.uid
    where d.source_name = 'ttn' and d.properties ? 'ttn_metadata_pending'
      and d.source_ids ? 'app_id' and d.source_ids ? 'dev_id' and not (p.uid = any(${[...skip]}::int[]))
    order by p.uid limit ${limit}`.execute(db);
  return rows.map((r) => ({ uid: r.uid, appId: r.app_id, devId: r.dev_id }));
}

/**
 * Stores a fetched API record (or IoTa's stand-in, the API's error body) as `properties.ttn` and
 * clears the pending marker, in one statement that leaves every other property as it is now.
 * The name is replaced only while it is still the placeholder the device was created with, and
 * the location only while it is still empty: an operator's edits win. Returns false when the
 * device is gone or no longer pending (another process got there first).
 */
export async function applyTtnMetadata(
  db: Db,
  uid: number,
  record: unknown,
  metadata: DeviceMetadata,
): Promise<boolean> {
  const name = metadata.name ?? null;
  const lat = metadata.location?.lat ?? null;
  const long = metadata.location?.long ?? null;
  // Recorded in the registry event log as the TTN component's change, like the creation was.
  const result = await withActor(db, "component:ttn", (trx) =>
    sql`
    update physical_devices set
      name = case when ${name}::text is not null
                   and name = properties->'ttn_metadata_pending'->>'name'
                  then ${name}::text else name end,
      location = case when location is null and ${lat}::float8 is not null
                      then ST_SetSRID(ST_MakePoint(${long}::float8, ${lat}::float8), 4283)
                      else location end,
      properties = (properties - 'ttn_metadata_pending')
                   || jsonb_build_object('ttn', ${toJson(record)}::jsonb)
    where uid = ${uid} and source_name = 'ttn' and properties ? 'ttn_metadata_pending'`.execute(
      trx,
    ),
  );
  return Number(result.numAffectedRows ?? 0) > 0;
}

/** source_ids of every TTN device an operator gave a `decoder_name` (IoTa's GIN index serves `?`). */
export async function loadDecoderNameRows(db: Db): Promise<JsonObject[]> {
  const { rows } = await sql<{ source_ids: JsonObject }>`
    select source_ids from physical_devices
    where source_name = 'ttn' and source_ids ? 'decoder_name'`.execute(db);
  return rows.map((r) => r.source_ids);
}
