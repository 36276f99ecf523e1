import { sql, type RawBuilder } from "kysely";

import { parseInstantMicros } from "../../core/time.js";
import type { DeviceRoute, MappingPeriod } from "../../mapper/route.js";
import type { Db } from "../database.js";
import { preparedAs } from "../prepared.js";

/**
 * The mapper's view of the registry for a batch: each existing physical device among `uids`
 * with those of its mappings that overlap `window` (ISO-8601 instants, inclusive; undefined: all
 * of them). One query per batch; mapping changes apply to the next batch.
 */
export async function loadRoutes(
  db: Db,
  uids: readonly number[],
  window?: { readonly from: string; readonly to: string },
): Promise<Map<number, DeviceRoute>> {
  const routes = new Map<number, DeviceRoute>();
  if (uids.length === 0) {
    return routes;
  }
  const overlaps = window
    ? sql`and m.start_time <= ${window.to}::timestamptz
          and (m.end_time is null or m.end_time > ${window.from}::timestamptz)`
    : sql``;
  const result = await sql<{
    uid: number;
    source_name: string;
    logical_uid: number | null;
    start_time: string | null;
    end_time: string | null;
    is_active: boolean | null;
  }>`${sql.raw(preparedAs(window ? "routes_window" : "routes_all"))}
    select pd.uid, pd.source_name, m.logical_uid, m.start_time, m.end_time, m.is_active
    from physical_devices pd
    left join physical_logical_map m on m.physical_uid = pd.uid ${overlaps}
    where pd.uid = any(${[...uids]}::int[])`.execute(db);
  const periods = new Map<number, MappingPeriod[]>();
  for (const row of result.rows) {
    let list = periods.get(row.uid);
    if (!list) {
      list = [];
      periods.set(row.uid, list);
      routes.set(row.uid, { physicalUid: row.uid, sourceName: row.source_name, mappings: list });
    }
    if (row.logical_uid !== null && row.start_time !== null) {
      list.push({
        logicalUid: row.logical_uid,
        startMicros: instantMicros(row.start_time),
        endMicros: row.end_time === null ? undefined : instantMicros(row.end_time),
        isActive: row.is_active === true,
      });
    }
  }
  return routes;
}

/** A timestamptz as read (ISO text); PostgreSQL's `infinity` and `-infinity` compare as such. */
function instantMicros(text: string): number {
  if (text === "infinity" || text === "-infinity") {
    return text === "infinity" ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  }
  const micros = parseInstantMicros(text);
  if (micros === undefined) {
    throw new Error(`unreadable timestamptz from PostgreSQL: ${text}`);
  }
  return micros;
}

/**
 * Moves logical devices' last_seen forward (never back) and sets properties.last_msg when the
 * message is not older than what the device last saw. Only the last_msg key is written, so
 * concurrent edits to other properties survive. A device whose sighting is older than what it
 * last saw is neither locked nor written (a replay or a release of old messages, a late
 * redelivery): an update that changes nothing would still write a new row version.
 */
export async function recordLogicalSightings(
  db: Db,
  sightings: readonly LogicalSighting[],
): Promise<void> {
  if (sightings.length === 0) {
    return;
  }
  await sql`${sql.raw(preparedAs("logical_sightings"))}
    with ${logicalSightingsCtes(sightings)} select count(*) from sighted`.execute(db);
}

/** One logical device's news: the newest message forwarded to it in a batch. */
export interface LogicalSighting {
  readonly uid: number;
  readonly lastSeen: string;
  readonly lastMsg: unknown;
}

/**
 * {@link recordLogicalSightings} as common table expressions (`sighting`, `locked`, `sighted`),
 * for a statement that does more in the same round trip. The rows are locked in uid order
 * before any is written: concurrent batches touching the same devices then queue behind each
 * other instead of deadlocking in whatever order the UPDATE's join visits rows. The uids go as
 * an array too, so the rows are found by key (PostgreSQL estimates a JSON record set at 100
 * rows whatever its size).
 */
export function logicalSightingsCtes(sightings: readonly LogicalSighting[]): RawBuilder<unknown> {
  const payload = JSON.stringify(
    sightings.map((s) => ({ uid: s.uid, last_seen: s.lastSeen, last_msg: s.lastMsg })),
  );
  const uids = sightings.map((s) => s.uid);
  return sql`sighting as (
      select * from jsonb_to_recordset(${payload}::jsonb)
        as v(uid int, last_seen timestamptz, last_msg jsonb)
    ), locked as (
      select ld.uid from logical_devices ld join sighting v on ld.uid = v.uid
      where ld.uid = any(${uids}::int[])
        and (ld.last_seen is null or v.last_seen >= ld.last_seen)
      order by ld.uid for update of ld
    ), sighted as (
      update logical_devices ld
      set last_seen = v.last_seen, properties = jsonb_set(ld.properties, '{last_msg}', v.last_msg)
      from sighting v, locked l
      where ld.uid = v.uid and l.uid = ld.uid and ld.uid = any(${uids}::int[])
        and (ld.last_seen is null or v.last_seen >= ld.last_seen)
      returning ld.uid
    )`;
}
