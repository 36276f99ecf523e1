import { sql } from "kysely";

import type { DeviceRoute } from "../../mapper/route.js";
import type { Db } from "../database.js";

/**
 * The mapper's view of the registry for a batch: each existing physical device among `uids`
 * with its current mapping. One query per batch; mapping changes apply to the next batch.
 */
export async function loadRoutes(
  db: Db,
  uids: readonly number[],
): Promise<Map<number, DeviceRoute>> {
  const routes = new Map<number, DeviceRoute>();
  if (uids.length === 0) {
    return routes;
  }
  const result = await sql<{
    uid: number;
    source_name: string;
    logical_uid: number | null;
    is_active: boolean | null;
  }>`
    select pd.uid, pd.source_name, m.logical_uid, m.is_active
    from physical_devices pd
    left join physical_logical_map m on m.physical_uid = pd.uid and m.end_time is null
    where pd.uid = any(${[...uids]}::int[])`.execute(db);
  for (const row of result.rows) {
    routes.set(row.uid, {
      physicalUid: row.uid,
      sourceName: row.source_name,
      mapping:
        row.logical_uid === null
          ? undefined
          : { logicalUid: row.logical_uid, isActive: row.is_active === true },
    });
  }
  return routes;
}

/**
 * Moves logical devices' last_seen forward (never back) and sets properties.last_msg when the
 * message is not older than what the device last saw. Only the last_msg key is written, so
 * concurrent edits to other properties survive. One statement for the whole batch.
 */
export async function recordLogicalSightings(
  db: Db,
  sightings: readonly { uid: number; lastSeen: string; lastMsg: unknown }[],
): Promise<void> {
  if (sightings.length === 0) {
    return;
  }
  const payload = JSON.stringify(
    sightings.map((s) => ({ uid: s.uid, last_seen: s.lastSeen, last_msg: s.lastMsg })),
  );
  // Lock in uid order first: concurrent batches touching the same devices then queue behind
  // each other instead of deadlocking in whatever order the UPDATE's join visits rows.
  await sql`select uid from logical_devices where uid = any(${sightings.map((s) => s.uid)}::int[])
            order by uid for update`.execute(db);
  await sql`
    update logical_devices ld
    set last_seen = greatest(ld.last_seen, v.last_seen),
        properties = case
          when ld.last_seen is null or v.last_seen >= ld.last_seen
            then jsonb_set(ld.properties, '{last_msg}', v.last_msg)
          else ld.properties
        end
    from jsonb_to_recordset(${payload}::jsonb) as v(uid int, last_seen timestamptz, last_msg jsonb)
    where ld.uid = v.uid`.execute(db);
}
