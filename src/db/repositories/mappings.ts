import { sql, type Kysely, type RawBuilder } from "kysely";

import type { LogicalDevice, Mapping, PhysicalDevice } from "../../core/devices.js";
import { parseInstant, parseInstantMicros } from "../../core/time.js";
import type { Database } from "../tables.js";
import { deviceColumns, logicalDeviceFromRow, type Row } from "./logical-devices.js";
import { physicalDeviceColumns, physicalDeviceFromRow } from "./physical-devices.js";
import {
  CHECK_VIOLATION,
  FOREIGN_KEY_VIOLATION,
  RegistryError,
  UNIQUE_VIOLATION,
  sqlState,
} from "./registry-error.js";

/**
 * Physical → logical mappings with IoTa's DAO semantics. Since migration 003 the database itself
 * allows at most one current (end_time IS NULL) mapping per physical and per logical device;
 * these functions keep to that rule and turn the database's refusals into RegistryErrors.
 */

/** Exactly one of a physical or a logical device uid. */
export type DeviceSelector =
  { puid: number; luid?: undefined } | { luid: number; puid?: undefined };

function keyCondition(selector: DeviceSelector): RawBuilder<unknown> {
  const { puid, luid } = selector;
  if ((puid === undefined) === (luid === undefined)) {
    throw new RegistryError("invalid", "give exactly one of a physical or a logical device uid");
  }
  return puid !== undefined ? sql`m.physical_uid = ${puid}` : sql`m.logical_uid = ${luid}`;
}

const MAPPING_COLUMNS = sql.join([
  sql`m.start_time, m.end_time, m.is_active`,
  physicalDeviceColumns("pd", "pd_"),
  deviceColumns("ld", "ld_"),
]);

/** Mapping rows from `from` (a table or CTE aliased m) with both devices joined in. */
function selectMappings(from: RawBuilder<unknown>, where: RawBuilder<unknown>, tail = sql``) {
  return sql<Row>`
    select ${MAPPING_COLUMNS} from ${from} m
    join physical_devices pd on pd.uid = m.physical_uid
    join logical_devices ld on ld.uid = m.logical_uid
    where ${where} ${tail}`;
}

function mappingFromRow(row: Row): Mapping {
  return {
    pd: physicalDeviceFromRow(row, "pd_"),
    ld: logicalDeviceFromRow(row, "ld_"),
    start_time: row.start_time as string,
    end_time: (row.end_time as string | null) ?? null,
    is_active: row.is_active as boolean,
  };
}

const MAP = sql`physical_logical_map`;
/** SQLSTATE of an exclusion constraint's refusal (migration 014: mappings never overlap). */
const EXCLUSION_VIOLATION = "23P01";
const NEWEST_FIRST = sql`order by m.start_time desc`;

/** Translates the database's refusals of a mapping change into RegistryErrors. */
function mappingError(err: unknown, what: string): never {
  switch (sqlState(err)) {
    case UNIQUE_VIOLATION:
      throw new RegistryError(
        "conflict",
        `${what}: a device already has a current mapping, or one starting at that time`,
        { cause: err },
      );
    case EXCLUSION_VIOLATION:
      throw new RegistryError(
        "conflict",
        `${what}: it would overlap another mapping of one of the devices`,
        { cause: err },
      );
    case CHECK_VIOLATION:
      throw new RegistryError("invalid", `${what}: a mapping must end after it starts`, {
        cause: err,
      });
    case FOREIGN_KEY_VIOLATION:
      throw new RegistryError("not_found", `${what}: device not found`, { cause: err });
    default:
      throw err;
  }
}

/** The current mapping of a device, or undefined. */
export async function getCurrentMapping(
  db: Kysely<Database>,
  selector: DeviceSelector,
): Promise<Mapping | undefined> {
  const query = selectMappings(
    MAP,
    sql`${keyCondition(selector)} and m.end_time is null`,
    sql`${NEWEST_FIRST} limit 1`,
  );
  const { rows } = await query.execute(db);
  return rows[0] && mappingFromRow(rows[0]);
}

/** The newest mapping of a device, current or ended, or undefined. */
export async function getLatestMapping(
  db: Kysely<Database>,
  selector: DeviceSelector,
): Promise<Mapping | undefined> {
  const { rows } = await selectMappings(
    MAP,
    keyCondition(selector),
    sql`${NEWEST_FIRST} limit 1`,
  ).execute(db);
  return rows[0] && mappingFromRow(rows[0]);
}

/** A device's whole mapping history, newest start_time first. */
export async function listMappings(
  db: Kysely<Database>,
  selector: DeviceSelector,
): Promise<Mapping[]> {
  const { rows } = await selectMappings(MAP, keyCondition(selector), NEWEST_FIRST).execute(db);
  return rows.map(mappingFromRow);
}

/** Every current mapping, ordered by logical device uid (as IoTa). */
export async function listCurrentMappings(db: Kysely<Database>): Promise<Mapping[]> {
  const { rows } = await selectMappings(
    MAP,
    sql`m.end_time is null`,
    sql`order by m.logical_uid`,
  ).execute(db);
  return rows.map(mappingFromRow);
}

/**
 * Current mappings ordered by logical device uid (as IoTa), only the active or only the paused
 * ones when `isActive` is given, one page when limit/offset are given.
 */
export async function queryCurrentMappings(
  db: Kysely<Database>,
  query: { isActive?: boolean; limit?: number; offset?: number },
): Promise<Mapping[]> {
  const active = query.isActive === undefined ? sql`true` : sql`m.is_active = ${query.isActive}`;
  const { rows } = await selectMappings(
    MAP,
    sql`m.end_time is null and ${active}`,
    sql`order by m.logical_uid limit ${query.limit ?? null} offset ${query.offset ?? 0}`,
  ).execute(db);
  return rows.map(mappingFromRow);
}

/** A mapping as the overlap checks see it. */
interface MappingSpan {
  physical_uid: number;
  logical_uid: number;
  pd_name: string;
  ld_name: string;
  start_time: string;
  end_time: string | null;
}

function describeSpan(m: MappingSpan): string {
  const period =
    m.end_time === null
      ? `from ${m.start_time} (current)`
      : `from ${m.start_time} to ${m.end_time}`;
  return `the mapping of physical device ${m.physical_uid} (${m.pd_name}) to logical device ${m.logical_uid} (${m.ld_name}) ${period}`;
}

/**
 * Maps `puid` to `luid` from `startTime` (default: now; earlier or later instants are allowed), as
 * IoTa's insert_mapping: a physical device that is already mapped is a `conflict` (end it first);
 * a logical device that is already mapped has that mapping ended where the new one starts.
 * Mappings of one physical device never overlap in time, nor those of one logical device (the
 * database enforces it since migration 014): a start that would make them overlap is a
 * `conflict` naming the mapping in the way. Unknown devices are `not_found`. Runs in `db` if it
 * is a transaction, else in a transaction of its own. Returns the new mapping.
 */
export async function startMapping(
  db: Kysely<Database>,
  puid: number,
  luid: number,
  startTime?: string,
): Promise<Mapping> {
  if (!db.isTransaction) {
    return db.transaction().execute((trx) => startMapping(trx, puid, luid, startTime));
  }
  if (startTime !== undefined && parseInstant(startTime) === undefined) {
    throw new RegistryError(
      "invalid",
      `start time ${JSON.stringify(startTime)} is not ISO-8601 with an offset`,
    );
  }
  const { rows } = await sql<{ pd: string | null; ld: string | null; start: string }>`
    select (select name from physical_devices where uid = ${puid}) as pd,
           (select name from logical_devices where uid = ${luid}) as ld,
           coalesce(${startTime ?? null}::timestamptz, now()) as start`.execute(db);
  if (rows[0]?.pd == null) {
    throw new RegistryError("not_found", `physical device ${puid} not found`);
  }
  if (rows[0].ld == null) {
    throw new RegistryError("not_found", `logical device ${luid} not found`);
  }
  const start = rows[0].start;
  const what = `cannot map physical device ${puid} to logical device ${luid}`;
  // Every mapping of either device that reaches past the new start, oldest first.
  const { rows: spans } = await sql<MappingSpan>`
    select m.physical_uid, m.logical_uid, pd.name as pd_name, ld.name as ld_name,
           m.start_time, m.end_time
    from ${MAP} m
    join physical_devices pd on pd.uid = m.physical_uid
    join logical_devices ld on ld.uid = m.logical_uid
    where (m.physical_uid = ${puid} or m.logical_uid = ${luid})
      and (m.end_time is null or m.end_time > ${start}::timestamptz)
    order by m.start_time`.execute(db);
  const current = spans.find((m) => m.physical_uid === puid && m.end_time === null);
  if (current) {
    throw new RegistryError(
      "conflict",
      `physical device ${puid} (${current.pd_name}) is already mapped to logical device ${current.logical_uid} (${current.ld_name}); end that mapping first`,
    );
  }
  for (const m of spans) {
    // The logical device's current mapping is ended where the new one starts, if it began before.
    const endsHere =
      m.physical_uid !== puid &&
      m.end_time === null &&
      (parseInstantMicros(m.start_time) ?? 0) < (parseInstantMicros(start) ?? 0);
    if (!endsHere) {
      throw new RegistryError(
        "conflict",
        `${what} from ${start}: it would overlap ${describeSpan(m)}`,
      );
    }
  }
  try {
    await sql`update physical_logical_map set end_time = ${start}::timestamptz where logical_uid = ${luid} and end_time is null`.execute(
      db,
    );
    await sql`insert into physical_logical_map (physical_uid, logical_uid, start_time) values (${puid}, ${luid}, ${start}::timestamptz)`.execute(
      db,
    );
  } catch (err) {
    mappingError(err, what);
  }
  const created = await getCurrentMapping(db, { puid });
  if (!created) {
    throw new Error(`${what}: the new mapping vanished`);
  }
  return created;
}

/**
 * Ends the device's current mapping now, or at `endTime` (ISO-8601 with offset; not in the
 * future, and after the mapping's start: IoTa's `end_time > start_time`). Ending earlier only
 * shortens the mapping, so it cannot overlap another. Returns the ended mapping, or undefined
 * when the device had no current mapping (IoTa: a no-op). A time that breaks a rule is `invalid`,
 * naming the mapping.
 */
export async function endMapping(
  db: Kysely<Database>,
  selector: DeviceSelector,
  endTime?: string,
): Promise<Mapping | undefined> {
  if (endTime !== undefined) {
    if (parseInstant(endTime) === undefined) {
      throw new RegistryError(
        "invalid",
        `end time ${JSON.stringify(endTime)} is not ISO-8601 with an offset`,
      );
    }
    const current = await getCurrentMapping(db, selector);
    if (!current) {
      return undefined;
    }
    const { rows } = await sql<{ before_start: boolean; future: boolean }>`
      select ${endTime}::timestamptz <= ${current.start_time}::timestamptz as before_start,
             ${endTime}::timestamptz > now() as future`.execute(db);
    const what = `cannot end the mapping of physical device ${current.pd.uid} to logical device ${current.ld.uid} (from ${current.start_time}) at ${endTime}`;
    if (rows[0]?.before_start) {
      throw new RegistryError("invalid", `${what}: a mapping must end after it starts`);
    }
    if (rows[0]?.future) {
      throw new RegistryError("invalid", `${what}: the time is in the future`);
    }
  }
  const at = endTime === undefined ? sql`now()` : sql`${endTime}::timestamptz`;
  const ended = sql`(update ${MAP} m set end_time = ${at} where ${keyCondition(selector)} and m.end_time is null returning m.*)`;
  try {
    const { rows } =
      await sql<Row>`with ended as ${ended} ${selectMappings(sql`ended`, sql`true`)}`.execute(db);
    return rows[0] && mappingFromRow(rows[0]);
  } catch (err) {
    return mappingError(err, "cannot end the mapping");
  }
}

/**
 * Pauses (`false`) or resumes (`true`) the device's current mapping. Unlike IoTa, which rewrote
 * every row of the device, history is left alone. Returns the changed mapping, or undefined
 * when the device has no current mapping.
 */
export async function setMappingActive(
  db: Kysely<Database>,
  selector: DeviceSelector,
  isActive: boolean,
): Promise<Mapping | undefined> {
  const changed = sql`(update ${MAP} m set is_active = ${isActive} where ${keyCondition(selector)} and m.end_time is null returning m.*)`;
  const { rows } =
    await sql<Row>`with changed as ${changed} ${selectMappings(sql`changed`, sql`true`)}`.execute(
      db,
    );
  return rows[0] && mappingFromRow(rows[0]);
}

/** A physical device with the logical device it currently maps to, if any. */
export interface PhysicalDeviceWithLogical {
  device: PhysicalDevice;
  current: LogicalDevice | undefined;
}

/**
 * Physical devices (of one source, if given), uid ascending, each with its currently mapped
 * logical device, in one query (IoTa's CLI made one query per device).
 */
export async function listPhysicalDevicesWithCurrentLogical(
  db: Kysely<Database>,
  options: { source?: string } = {},
): Promise<PhysicalDeviceWithLogical[]> {
  const filter = options.source === undefined ? sql`true` : sql`pd.source_name = ${options.source}`;
  const { rows } = await sql<Row>`
    select ${physicalDeviceColumns("pd")}, ${deviceColumns("ld", "ld_")}
    from physical_devices pd
    left join physical_logical_map m on m.physical_uid = pd.uid and m.end_time is null
    left join logical_devices ld on ld.uid = m.logical_uid
    where ${filter} order by pd.uid`.execute(db);
  return rows.map((r) => ({
    device: physicalDeviceFromRow(r),
    current: r.ld_uid === null ? undefined : logicalDeviceFromRow(r, "ld_"),
  }));
}

/**
 * Deletes every mapping row, current and ended, of a device (IoTa's CLI does this before deleting
 * the device itself). Returns how many rows went.
 */
export async function deleteMappings(
  db: Kysely<Database>,
  selector: DeviceSelector,
): Promise<number> {
  const result = await sql`delete from ${MAP} m where ${keyCondition(selector)}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
