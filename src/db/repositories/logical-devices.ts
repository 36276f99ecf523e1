import { sql, type Kysely, type RawBuilder } from "kysely";

import type {
  Location,
  LogicalDevice,
  LogicalDevicePatch,
  NewLogicalDevice,
} from "../../core/devices.js";
import { toJson } from "../database.js";
import type { Database } from "../tables.js";
import { deviceColumnsText, logicalDeviceFromRow, type Row } from "./device-rows.js";
import { FOREIGN_KEY_VIOLATION, RegistryError, sqlState } from "./registry-error.js";

/**
 * Logical devices, plus the column/row helpers both device repositories share (a physical device
 * is a logical device's columns plus `source_name` and `source_ids`).
 */

export type { Row };
export { logicalDeviceFromRow };

/** GDA94 (SRID 4283) point for a location, as IoTa stores it; NULL for none. */
export function locationSql(location: Location | null): RawBuilder<unknown> {
  if (location === null) {
    return sql`null`;
  }
  return sql`ST_SetSRID(ST_MakePoint(${location.long}::float8, ${location.lat}::float8), 4283)`;
}

/**
 * The columns every device has, read through table alias `alias` and named `${prefix}column`,
 * so one query can return a physical and a logical device side by side. Both arguments are
 * constants in this code, never input.
 */
export function deviceColumns(alias: string, prefix = ""): RawBuilder<unknown> {
  return sql.raw(deviceColumnsText(alias, prefix));
}

/** SET clauses for the fields of `patch` that are present (shared with physical devices). */
export function deviceSetClauses(patch: LogicalDevicePatch): RawBuilder<unknown>[] {
  const sets: RawBuilder<unknown>[] = [];
  if (patch.name !== undefined) {
    sets.push(sql`name = ${patch.name}`);
  }
  if (patch.location !== undefined) {
    sets.push(sql`location = ${locationSql(patch.location)}`);
  }
  if (patch.last_seen !== undefined) {
    sets.push(sql`last_seen = ${patch.last_seen}::timestamptz`);
  }
  if (patch.properties !== undefined) {
    sets.push(sql`properties = ${toJson(patch.properties)}::jsonb`);
  }
  return sets;
}

const LD_COLUMNS = deviceColumns("ld");

/** The logical device `uid`, or undefined. */
export async function getLogicalDevice(
  db: Kysely<Database>,
  uid: number,
): Promise<LogicalDevice | undefined> {
  const { rows } =
    await sql<Row>`select ${LD_COLUMNS} from logical_devices ld where ld.uid = ${uid}`.execute(db);
  return rows[0] && logicalDeviceFromRow(rows[0]);
}

/** Every logical device, uid ascending. */
export async function listLogicalDevices(db: Kysely<Database>): Promise<LogicalDevice[]> {
  const { rows } =
    await sql<Row>`select ${LD_COLUMNS} from logical_devices ld order by ld.uid`.execute(db);
  return rows.map((r) => logicalDeviceFromRow(r));
}

/** Inserts a logical device and returns it as stored. */
export async function createLogicalDevice(
  db: Kysely<Database>,
  input: NewLogicalDevice,
): Promise<LogicalDevice> {
  const { rows } = await sql<Row>`
    insert into logical_devices as ld (name, location, last_seen, properties)
    values (${input.name}, ${locationSql(input.location ?? null)}, ${input.last_seen ?? null}::timestamptz,
            ${toJson(input.properties ?? {})}::jsonb)
    returning ${LD_COLUMNS}`.execute(db);
  return logicalDeviceFromRow(rows[0] as Row);
}

/**
 * Changes only the fields present in `patch` (`properties` is replaced whole, as IoTa does) and
 * returns the device as stored, or undefined when there is no such device.
 */
export async function updateLogicalDevice(
  db: Kysely<Database>,
  uid: number,
  patch: LogicalDevicePatch,
): Promise<LogicalDevice | undefined> {
  const sets = deviceSetClauses(patch);
  if (sets.length === 0) {
    return getLogicalDevice(db, uid);
  }
  const { rows } = await sql<Row>`
    update logical_devices as ld set ${sql.join(sets)} where ld.uid = ${uid}
    returning ${LD_COLUMNS}`.execute(db);
  return rows[0] && logicalDeviceFromRow(rows[0]);
}

/**
 * Deletes a logical device and returns it as it was, or undefined when absent. A device that
 * mappings still reference is refused with a `conflict` RegistryError.
 */
export async function deleteLogicalDevice(
  db: Kysely<Database>,
  uid: number,
): Promise<LogicalDevice | undefined> {
  try {
    const { rows } = await sql<Row>`
      delete from logical_devices as ld where ld.uid = ${uid} returning ${LD_COLUMNS}`.execute(db);
    return rows[0] && logicalDeviceFromRow(rows[0]);
  } catch (err) {
    if (sqlState(err) === FOREIGN_KEY_VIOLATION) {
      throw new RegistryError("conflict", `logical device ${uid} still has mappings`, {
        cause: err,
      });
    }
    throw err;
  }
}

/** Opt-in filters and paging for the API's device lists (nothing set = IoTa's whole list). */
export interface DeviceListQuery {
  /** Only devices whose name contains this text, ignoring case. */
  name?: string;
  /** Only devices whose `properties ->> name` equals `value` (compared as text). */
  property?: { name: string; value: string };
  limit?: number;
  offset?: number;
}

/** WHERE conditions for a {@link DeviceListQuery} on the device table aliased `alias`. */
export function deviceListConditions(alias: string, query: DeviceListQuery): RawBuilder<unknown>[] {
  const conditions: RawBuilder<unknown>[] = [sql`true`];
  if (query.name !== undefined) {
    conditions.push(sql`strpos(lower(${sql.ref(`${alias}.name`)}), lower(${query.name})) > 0`);
  }
  if (query.property !== undefined) {
    // The key is a bound parameter, never spliced into the SQL (IoTa interpolated it).
    conditions.push(
      sql`${sql.ref(`${alias}.properties`)} ->> ${query.property.name}::text = ${query.property.value}`,
    );
  }
  return conditions;
}

/** Logical devices matching `query`, uid ascending, one page when limit/offset are given. */
export async function queryLogicalDevices(
  db: Kysely<Database>,
  query: DeviceListQuery,
): Promise<LogicalDevice[]> {
  const { rows } = await sql<Row>`
    select ${LD_COLUMNS} from logical_devices ld
    where ${sql.join(deviceListConditions("ld", query), sql` and `)}
    order by ld.uid limit ${query.limit ?? null} offset ${query.offset ?? 0}`.execute(db);
  return rows.map((r) => logicalDeviceFromRow(r));
}
