import { sql, type Kysely, type RawBuilder, type Transaction } from "kysely";

import type {
  JsonObject,
  NewPhysicalDevice,
  PhysicalDevice,
  PhysicalDevicePatch,
} from "../../core/devices.js";
import { parseInstant } from "../../core/time.js";
import { toJson } from "../database.js";
import type { Database } from "../tables.js";
import {
  deviceListConditions,
  deviceSetClauses,
  locationSql,
  type DeviceListQuery,
  type Row,
} from "./logical-devices.js";
import { physicalDeviceColumnsText, physicalDeviceFromRow } from "./device-rows.js";
import { FOREIGN_KEY_VIOLATION, RegistryError, sqlState } from "./registry-error.js";
import { preparedAs } from "../prepared.js";

/** Columns of a physical device read through `alias`, named `${prefix}column`. */
export function physicalDeviceColumns(alias: string, prefix = ""): RawBuilder<unknown> {
  return sql.raw(physicalDeviceColumnsText(alias, prefix));
}

export { physicalDeviceFromRow };

const PD_COLUMNS = physicalDeviceColumns("pd");

function sourceFilter(source: string | undefined): RawBuilder<unknown> {
  return source === undefined ? sql`true` : sql`pd.source_name = ${source}`;
}

function unknownSource(err: unknown): never {
  if (sqlState(err) === FOREIGN_KEY_VIOLATION) {
    // The name is not quoted: API error bodies never echo what the client sent.
    throw new RegistryError("invalid", "unknown source", { cause: err });
  }
  throw err;
}

/** The physical device `uid`, or undefined. */
export async function getPhysicalDevice(
  db: Kysely<Database>,
  uid: number,
): Promise<PhysicalDevice | undefined> {
  const { rows } =
    await sql<Row>`select ${PD_COLUMNS} from physical_devices pd where pd.uid = ${uid}`.execute(db);
  return rows[0] && physicalDeviceFromRow(rows[0]);
}

/** Every physical device (of one source, if given), uid ascending. */
export async function listPhysicalDevices(
  db: Kysely<Database>,
  options: { source?: string } = {},
): Promise<PhysicalDevice[]> {
  const { rows } = await sql<Row>`
    select ${PD_COLUMNS} from physical_devices pd
    where ${sourceFilter(options.source)} order by pd.uid`.execute(db);
  return rows.map((r) => physicalDeviceFromRow(r));
}

/** Devices without a current mapping (a paused mapping is still current), uid ascending. */
export async function listUnmappedPhysicalDevices(
  db: Kysely<Database>,
  options: { source?: string } = {},
): Promise<PhysicalDevice[]> {
  const { rows } = await sql<Row>`
    select ${PD_COLUMNS} from physical_devices pd
    where ${sourceFilter(options.source)}
      and not exists (select 1 from physical_logical_map m where m.physical_uid = pd.uid and m.end_time is null)
    order by pd.uid`.execute(db);
  return rows.map((r) => physicalDeviceFromRow(r));
}

/**
 * Physical devices matching `query` (and of one source, and only the unmapped ones, when asked),
 * uid ascending, one page when limit/offset are given.
 */
export async function queryPhysicalDevices(
  db: Kysely<Database>,
  query: DeviceListQuery & { source?: string; unmapped?: boolean },
): Promise<PhysicalDevice[]> {
  const conditions = [sourceFilter(query.source), ...deviceListConditions("pd", query)];
  if (query.unmapped) {
    conditions.push(
      sql`not exists (select 1 from physical_logical_map m where m.physical_uid = pd.uid and m.end_time is null)`,
    );
  }
  const { rows } = await sql<Row>`
    select ${PD_COLUMNS} from physical_devices pd where ${sql.join(conditions, sql` and `)}
    order by pd.uid limit ${query.limit ?? null} offset ${query.offset ?? 0}`.execute(db);
  return rows.map((r) => physicalDeviceFromRow(r));
}

/** Inserts a physical device and returns it as stored; an unknown source is `invalid`. */
export async function createPhysicalDevice(
  db: Kysely<Database>,
  input: NewPhysicalDevice,
): Promise<PhysicalDevice> {
  try {
    const { rows } = await sql<Row>`
      insert into physical_devices as pd (source_name, name, location, last_seen, source_ids, properties)
      values (${input.source_name}, ${input.name}, ${locationSql(input.location ?? null)},
              ${input.last_seen ?? null}::timestamptz, ${toJson(input.source_ids ?? {})}::jsonb,
              ${toJson(input.properties ?? {})}::jsonb)
      returning ${PD_COLUMNS}`.execute(db);
    return physicalDeviceFromRow(rows[0] as Row);
  } catch (err) {
    return unknownSource(err);
  }
}

/**
 * Changes only the fields present in `patch` (`properties` and `source_ids` are replaced whole,
 * as IoTa does) and returns the device as stored, or undefined when there is no such device.
 */
export async function updatePhysicalDevice(
  db: Kysely<Database>,
  uid: number,
  patch: PhysicalDevicePatch,
): Promise<PhysicalDevice | undefined> {
  const sets = deviceSetClauses(patch);
  if (patch.source_name !== undefined) {
    sets.push(sql`source_name = ${patch.source_name}`);
  }
  if (patch.source_ids !== undefined) {
    sets.push(sql`source_ids = ${toJson(patch.source_ids)}::jsonb`);
  }
  if (sets.length === 0) {
    return getPhysicalDevice(db, uid);
  }
  try {
    const { rows } = await sql<Row>`
      update physical_devices as pd set ${sql.join(sets)} where pd.uid = ${uid}
      returning ${PD_COLUMNS}`.execute(db);
    return rows[0] && physicalDeviceFromRow(rows[0]);
  } catch (err) {
    return unknownSource(err);
  }
}

/**
 * Deletes a physical device and returns it as it was, or undefined when absent. A device that
 * mappings, notes or timeseries rows still reference is refused with a `conflict` RegistryError.
 */
export async function deletePhysicalDevice(
  db: Kysely<Database>,
  uid: number,
): Promise<PhysicalDevice | undefined> {
  try {
    const { rows } = await sql<Row>`
      delete from physical_devices as pd where pd.uid = ${uid} returning ${PD_COLUMNS}`.execute(db);
    return rows[0] && physicalDeviceFromRow(rows[0]);
  } catch (err) {
    if (sqlState(err) === FOREIGN_KEY_VIOLATION) {
      throw new RegistryError(
        "conflict",
        `physical device ${uid} still has mappings, notes or messages`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}

/**
 * Ingest hot path. Result i is the uid of the lowest-uid device of `sourceName` whose
 * `source_ids` contains `lookups[i]`, or undefined. One statement for the whole batch:
 * `broker_device_uids` (017_ingest_outbox.sql) answers each lookup from the GIN index on
 * `source_ids`; the same search written here as a lateral join was planned as a sequential scan
 * per lookup (12 ms per lookup at 25,000 devices, growing with the table, against about 0.01 ms).
 */
export async function findPhysicalDeviceUids(
  db: Kysely<Database>,
  sourceName: string,
  lookups: readonly JsonObject[],
): Promise<(number | undefined)[]> {
  if (lookups.length === 0) {
    return [];
  }
  const { rows } = await sql<{ uid: number | null }>`${sql.raw(preparedAs("device_uids"))}
    select u.uid from broker_device_uids(${sourceName}, ${lookups.map((k) => toJson(k))}::jsonb[]) u
    order by u.ord`.execute(db);
  return rows.map((r) => r.uid ?? undefined);
}

/**
 * {@link findPhysicalDeviceUids}, with each device's row. The rows are read one by one through
 * the primary key (`offset 0` keeps the lateral probe): PostgreSQL estimates a function's result
 * at 1,000 rows whatever its size and joined it to the whole device table by a hash of a
 * sequential scan, 3 ms per ingest batch at 1,000 devices and growing with the table.
 */
export async function findPhysicalDevicesBySourceIds(
  db: Kysely<Database>,
  sourceName: string,
  lookups: readonly JsonObject[],
): Promise<(PhysicalDevice | undefined)[]> {
  if (lookups.length === 0) {
    return [];
  }
  const { rows } = await sql<Row>`
    select d.*
    from broker_device_uids(${sourceName}, ${lookups.map((k) => toJson(k))}::jsonb[]) u
    left join lateral (
      select ${PD_COLUMNS} from physical_devices pd where pd.uid = u.uid offset 0
    ) d on true
    order by u.ord`.execute(db);
  return rows.map((r) => (r.uid === null ? undefined : physicalDeviceFromRow(r)));
}

/**
 * Finds the device of `sourceName` matching `lookup`, creating it from `create` when there is
 * none. See {@link findOrCreatePhysicalDevices}, of which this is the one-device case.
 */
export async function findOrCreatePhysicalDevice(
  trx: Transaction<Database>,
  sourceName: string,
  lookup: JsonObject,
  create: NewPhysicalDevice,
): Promise<{ device: PhysicalDevice; created: boolean }> {
  const [result] = await findOrCreatePhysicalDevices(trx, sourceName, [{ lookup, create }]);
  return result!;
}

/**
 * For each `wanted[i]`, the device of `sourceName` matching its `lookup`, created from its
 * `create` when there is none, in a few statements whatever the number of devices (a gateway
 * coming back online brings many new devices at once). Transaction-scoped advisory locks keyed on
 * (source, lookup) serialise concurrent callers, so two processes never create the same device
 * twice; they are taken in one fixed order (by key hash), so two batches sharing devices queue
 * instead of deadlocking, and held until the caller's transaction ends, which is why this takes a
 * Transaction. A created device gets `source_name = sourceName` and `source_ids` =
 * `create.source_ids` with `lookup` laid over it, so the next lookup finds it. Lookups that
 * repeat get the same device (`created` only on the first of them).
 */
export async function findOrCreatePhysicalDevices(
  trx: Transaction<Database>,
  sourceName: string,
  wanted: readonly { lookup: JsonObject; create: NewPhysicalDevice }[],
): Promise<{ device: PhysicalDevice; created: boolean }[]> {
  const found = await findOrCreatePhysicalDeviceUids(trx, sourceName, wanted);
  const devices = await findPhysicalDevicesBySourceIds(
    trx,
    sourceName,
    wanted.map((w) => w.lookup),
  );
  return found.map(({ created }, i) => ({ device: devices[i]!, created }));
}

/**
 * {@link findOrCreatePhysicalDevices} answering uids only (the ingest path: reading back every
 * new device's row, its properties holding the whole first message, only to take its uid cost
 * more than creating it).
 */
export async function findOrCreatePhysicalDeviceUids(
  trx: Transaction<Database>,
  sourceName: string,
  wanted: readonly { lookup: JsonObject; create: NewPhysicalDevice }[],
): Promise<{ uid: number; created: boolean }[]> {
  if (wanted.length === 0) {
    return [];
  }
  const lookups = wanted.map((w) => w.lookup);
  // jsonb's text form orders keys canonically: {a,b} and {b,a} take the same lock. The ordered
  // subquery (kept apart by offset 0) fixes the order the locks are taken in.
  await sql`
    select count(*) from (
      select pg_advisory_xact_lock(h) from (
        select distinct hashtextextended(${sourceName}::text || ':' || k::text, 0) as h
        from jsonb_array_elements(${toJson(lookups)}::jsonb) k
        order by h offset 0
      ) ordered
    ) locked`.execute(trx);
  const existing = await findPhysicalDeviceUids(trx, sourceName, lookups);
  // One new device per distinct lookup (the first wanted entry of it describes the device).
  const missing = new Map<string, { lookup: JsonObject; create: NewPhysicalDevice }>();
  wanted.forEach((w, i) => {
    const key = JSON.stringify(w.lookup);
    if (existing[i] === undefined && !missing.has(key)) {
      missing.set(key, w);
    }
  });
  if (missing.size === 0) {
    return existing.map((uid) => ({ uid: uid!, created: false }));
  }
  const rows = [...missing.values()].map(({ lookup, create }) => ({
    name: create.name,
    lat: create.location?.lat ?? null,
    long: create.location?.long ?? null,
    last_seen: create.last_seen ?? null,
    source_ids: { ...create.source_ids, ...lookup },
    properties: create.properties ?? {},
  }));
  try {
    await sql`
      insert into physical_devices (source_name, name, location, last_seen, source_ids, properties)
      select ${sourceName}, v.name,
             case when v.lat is null or v.long is null then null
                  else ST_SetSRID(ST_MakePoint(v.long, v.lat), 4283) end,
             v.last_seen, v.source_ids, v.properties
      from jsonb_to_recordset(${toJson(rows)}::jsonb)
        as v(name text, lat float8, long float8, last_seen timestamptz, source_ids jsonb, properties jsonb)`.execute(
      trx,
    );
  } catch (err) {
    return unknownSource(err);
  }
  const found = await findPhysicalDeviceUids(trx, sourceName, lookups);
  return found.map((uid, i) => {
    if (uid === undefined) {
      // The row just inserted contains the lookup: only a bug gets here.
      throw new Error(`device for ${JSON.stringify(lookups[i])} not found after creating it`);
    }
    // `created` once per new device: for the wanted entry that described it.
    return { uid, created: missing.get(JSON.stringify(lookups[i])) === wanted[i] };
  });
}

/** One message's worth of news about a device, for {@link recordSightings}. */
export interface Sighting {
  uid: number;
  /** The message's timestamp, ISO-8601 with offset. */
  lastSeen: string;
  /** Keys to add to or change in `source_ids` (keys not given, e.g. added by operators, stay). */
  sourceIds?: JsonObject;
  /** Stored as `properties.last_msg` unless the stored `last_seen` is newer than `lastSeen`. */
  lastMsg?: unknown;
}

interface Aggregated {
  uid: number;
  last_seen: string;
  source_ids?: JsonObject;
  last_msg?: unknown;
  msg_seen?: string;
}

function instantOf(value: string): number {
  const ms = parseInstant(value);
  if (ms === undefined) {
    throw new RegistryError(
      "invalid",
      `sighting time ${JSON.stringify(value)} is not ISO-8601 with an offset`,
    );
  }
  return ms;
}

/**
 * One row per uid, because UPDATE ... FROM with two source rows for one target row applies an
 * arbitrary one. A sighting dated after `now` counts as seen `now` (as the mapper caps the
 * logical side): one message dated 2999 must not freeze the device. The newest sighting wins (a
 * tie goes to the later one in the batch); `sourceIds` are merged oldest first so newer values
 * win.
 */
function aggregate(sightings: readonly Sighting[], now: number): Aggregated[] {
  const byUid = new Map<number, Aggregated>();
  const nowIso = new Date(now).toISOString();
  const ordered = sightings
    .map((s, i) => {
      const ms = instantOf(s.lastSeen);
      return ms > now ? { s, i, ms: now, seen: nowIso } : { s, i, ms, seen: s.lastSeen };
    })
    .sort((a, b) => a.ms - b.ms || a.i - b.i);
  for (const { s, seen } of ordered) {
    const agg = byUid.get(s.uid) ?? { uid: s.uid, last_seen: seen };
    agg.last_seen = seen;
    if (s.sourceIds !== undefined) {
      agg.source_ids = { ...agg.source_ids, ...s.sourceIds };
    }
    if (s.lastMsg !== undefined) {
      agg.last_msg = s.lastMsg;
      agg.msg_seen = seen;
    }
    byUid.set(s.uid, agg);
  }
  return [...byUid.values()];
}

/**
 * Ingest hot path: records a batch of sightings in ONE statement. `last_seen` only moves forward
 * (NULL counts as older); `sourceIds` are merged into `source_ids` key by key, keys nobody
 * mentions (e.g. added by operators) staying, and an older sighting only adds keys that are
 * missing, never rolls values back; `last_msg` is written only when its sighting is not older
 * than the stored `last_seen`. Times after `now` (epoch ms) count as `now`, and so does a stored
 * `last_seen` in the future (written before this cap), so such a device thaws at its next
 * message. Unknown uids are ignored. Returns the number of devices updated.
 */
export async function recordSightings(
  db: Kysely<Database>,
  sightings: readonly Sighting[],
  now: number = Date.now(),
): Promise<number> {
  if (sightings.length === 0) {
    return 0;
  }
  const rows = aggregate(sightings, now).map(
    ({ uid, last_seen, source_ids, last_msg, msg_seen }) => ({
      uid,
      last_seen,
      source_ids: source_ids ?? null,
      last_msg: last_msg ?? null,
      msg_seen: msg_seen ?? null,
    }),
  );
  const nowIso = new Date(now).toISOString();
  // The uids as an array too: PostgreSQL estimates a json record set at 100 rows whatever its
  // size, and then read the whole device table twice per batch (20 ms at 20,000 devices);
  // `= any(array)` is estimated by the array and found through the primary key.
  const uids = rows.map((r) => r.uid);
  // `locked` takes the row locks in uid order before any row is updated, so two batches that
  // share devices queue behind each other instead of deadlocking. greatest() ignores NULLs, so a
  // device never seen before takes the sighting's time.
  const result = await sql`${sql.raw(preparedAs("device_sightings"))}
    with v as materialized (
      select * from jsonb_to_recordset(${toJson(rows)}::jsonb)
        as v(uid integer, last_seen timestamptz, source_ids jsonb, last_msg jsonb, msg_seen timestamptz)
    ), locked as materialized (
      select d.uid, case when d.last_seen > ${nowIso}::timestamptz then ${nowIso}::timestamptz
                         else d.last_seen end as seen
      from physical_devices d where d.uid = any(${uids}::int[]) order by d.uid for update
    )
    update physical_devices as pd set
      last_seen = greatest(l.seen, v.last_seen),
      source_ids = case when v.source_ids is null then pd.source_ids
                        when v.last_seen >= coalesce(l.seen, '-infinity')
                        then coalesce(pd.source_ids, '{}'::jsonb) || v.source_ids
                        else v.source_ids || coalesce(pd.source_ids, '{}'::jsonb) end,
      properties = case when v.last_msg is not null and v.msg_seen >= coalesce(l.seen, '-infinity')
                        then jsonb_set(pd.properties, '{last_msg}', v.last_msg) else pd.properties end
    from v join locked l on l.uid = v.uid
    where pd.uid = v.uid and pd.uid = any(${uids}::int[])`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
