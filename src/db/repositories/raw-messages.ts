import { sql } from "kysely";

import type { JsonObject } from "../../core/devices.js";
import type { Db } from "../database.js";
import { preparedAs } from "../prepared.js";

/** One arrival for the raw store: exactly one of `json` / `text` is set. */
export interface RawMessageInput {
  readonly sourceName: string;
  readonly correlationId: string;
  /** The message's own time when it has one, else the arrival time (ISO-8601 with offset). */
  readonly ts: string;
  readonly json?: unknown;
  readonly text?: string;
  /**
   * What every body of one TTN uplink shares (application, device, received_at, f_cnt), while
   * the correlation id also depends on the body: two rows with one key and different ids are
   * conflicting bodies (see {@link flagConflictingUplinks}).
   */
  readonly uplinkKey?: string;
}

/** A raw row to store, with where to find its device when the source could tell before normalising. */
export interface RawMessageRowInput extends RawMessageInput {
  /** 0-based index into the insert's `devices.lookups`: the row is stored with that device's uid. */
  readonly deviceIndex?: number | undefined;
}

/** Devices of one source to look up in the insert itself (see {@link insertRawMessages}). */
export interface RawDeviceLookups {
  readonly sourceName: string;
  /** source_ids subsets, as for the pipeline's device lookup (jsonb containment). */
  readonly lookups: readonly JsonObject[];
}

/**
 * Stores a batch of raw messages in one statement. A correlation id already present (the same
 * uplink posted again) is skipped: the first copy is the record. A row with a `deviceIndex` is
 * stored linked to the device its lookup finds, in the same statement, which spares the link
 * update (and the dead row it leaves) later. Returns each newly stored row's correlation id with
 * the device uid it was stored with (null: not linked yet).
 */
export async function insertRawMessages(
  db: Db,
  rows: readonly RawMessageRowInput[],
  devices?: RawDeviceLookups,
): Promise<Map<string, number | null>> {
  if (rows.length === 0) {
    return new Map();
  }
  // Array parameters, as the physical_timeseries insert: one plan, no parameter ceiling on batch size.
  const { rows: stored } = await sql<{
    correlation_id: string;
    physical_uid: number | null;
  }>`${sql.raw(preparedAs("raw_insert"))}
    insert into raw_messages (source_name, correlation_id, ts, json_msg, text_msg, uplink_key,
                              physical_uid)
    select r.source_name, r.correlation_id, r.ts, r.json_msg, r.text_msg, r.uplink_key, d.uid
    from unnest(
      ${rows.map((r) => r.sourceName)}::text[],
      ${rows.map((r) => r.correlationId)}::uuid[],
      ${rows.map((r) => r.ts)}::timestamptz[],
      ${rows.map((r) => (r.json === undefined ? null : JSON.stringify(r.json)))}::jsonb[],
      ${rows.map((r) => r.text ?? null)}::text[],
      ${rows.map((r) => r.uplinkKey ?? null)}::uuid[],
      ${rows.map((r) => (r.deviceIndex === undefined ? null : r.deviceIndex + 1))}::int[])
      as r(source_name, correlation_id, ts, json_msg, text_msg, uplink_key, device_ord)
    left join broker_device_uids(
      ${devices?.sourceName ?? ""}::text,
      ${(devices?.lookups ?? []).map((k) => JSON.stringify(k))}::jsonb[]) d
      on d.ord = r.device_ord
    on conflict (correlation_id) do nothing
    returning correlation_id::text, physical_uid`.execute(db);
  return new Map(stored.map((r) => [r.correlation_id, r.physical_uid]));
}

/**
 * Flags as `conflicting` every stored raw row that shares an uplink key of `rows` with a row of
 * another correlation id (two different bodies for one uplink), both sides. Run it after the
 * rows' insert has committed, so that of two concurrent writers the later one sees both rows.
 * Returns the uplink keys newly found in conflict with all their correlation ids.
 */
export async function flagConflictingUplinks(
  db: Db,
  rows: readonly Pick<RawMessageInput, "uplinkKey">[],
): Promise<{ uplinkKey: string; correlationIds: string[] }[]> {
  const keys = [...new Set(rows.flatMap((r) => (r.uplinkKey === undefined ? [] : [r.uplinkKey])))];
  if (keys.length === 0) {
    return [];
  }
  const { rows: flagged } = await sql<{
    uplink_key: string;
    correlation_ids: string[];
  }>`${sql.raw(preparedAs("raw_conflicts"))}
    with c as (
      select uplink_key from raw_messages
      where uplink_key = any(${keys}::uuid[])
      group by uplink_key having count(*) > 1 and bool_and(conflicting) = false
    ), f as (
      update raw_messages r set conflicting = true
      from c where r.uplink_key = c.uplink_key and not r.conflicting
      returning r.uplink_key
    )
    select r.uplink_key, array_agg(r.correlation_id::text order by r.uid) as correlation_ids
    from raw_messages r where r.uplink_key in (select uplink_key from f)
    group by r.uplink_key`.execute(db);
  return flagged.map((r) => ({ uplinkKey: r.uplink_key, correlationIds: r.correlation_ids }));
}

/** Links raw messages to the physical device they turned out to come from (one statement). */
export async function linkRawMessages(
  db: Db,
  links: readonly { correlationId: string; physicalUid: number }[],
): Promise<void> {
  if (links.length === 0) {
    return;
  }
  const payload = JSON.stringify(links.map((l) => ({ cid: l.correlationId, uid: l.physicalUid })));
  await sql`${sql.raw(preparedAs("raw_link"))}
    update raw_messages r set physical_uid = v.uid
    from jsonb_to_recordset(${payload}::jsonb) as v(cid uuid, uid int)
    where r.correlation_id = v.cid and r.physical_uid is distinct from v.uid
      -- Found by key: PostgreSQL estimates the record set at 100 rows whatever its size.
      and r.correlation_id = any(${links.map((l) => l.correlationId)}::uuid[])`.execute(db);
}
