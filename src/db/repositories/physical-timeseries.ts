import { sql, type RawBuilder } from "kysely";

import type { Db } from "../database.js";
import { withPlainPlans } from "../plain-plans.js";
import { preparedAs } from "../prepared.js";
import { logicalSightingsCtes, type LogicalSighting } from "./routes.js";

export interface TimeseriesRow {
  readonly physicalUid: number;
  readonly logicalUid: number | null;
  /** The message timestamp, as the producer wrote it. */
  readonly ts: string;
  /** The message as JSON text (serialised once by the caller, who also publishes it). */
  readonly json: string;
  /** Idempotency key (messageKey()); a row with the same key already stored is not duplicated. */
  readonly msgKey: string;
  /** Why the message is held (logicalUid null), as the mapper decided; null when forwarded. */
  readonly holdReason?: string | null;
  /**
   * The raw message it came from (raw_messages.correlation_id), when known: what a replay
   * finds the row by (see {@link findRowsOfRawMessages}).
   */
  readonly rawCorrelationId?: string | null;
}

/**
 * The mapper's batch in one statement, atomic without a transaction of its own: its rows (a row
 * whose msg_key is already present, a redelivery or a replay, is skipped) and its logical
 * devices' sightings (as recordLogicalSightings). One round trip where a transaction took four.
 * Returns how many rows were new.
 */
export async function insertMappedBatch(
  db: Db,
  rows: readonly TimeseriesRow[],
  sightings: readonly LogicalSighting[],
): Promise<number> {
  if (rows.length === 0 && sightings.length === 0) {
    return 0;
  }
  const { rows: result } = await sql<{ inserted: number }>`${sql.raw(preparedAs("mapped_batch"))}
    with inserted as (${timeseriesInsert(rows, null)} returning 1),
    ${logicalSightingsCtes(sightings)}
    select (select count(*) from inserted)::int as inserted`.execute(db);
  return result[0]?.inserted ?? 0;
}

/** The one insert of physical_timeseries rows; `replayId` stamps a replay's rows. */
async function insertRows(
  db: Db,
  rows: readonly TimeseriesRow[],
  replayId: string | null,
): Promise<number> {
  if (rows.length === 0) {
    return 0;
  }
  const result = await sql`${sql.raw(preparedAs("pts_insert"))}
    ${timeseriesInsert(rows, replayId)}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** The insert of {@link insertRows}, as a fragment a larger statement can hold. */
function timeseriesInsert(
  rows: readonly TimeseriesRow[],
  replayId: string | null,
): RawBuilder<unknown> {
  // Array parameters rather than seven per row: the statement text and its plan stay the
  // same whatever the batch size, which PostgreSQL's 65,535-parameter limit would otherwise cap.
  return sql`
    insert into physical_timeseries
      (physical_uid, logical_uid, ts, json_msg, msg_key, hold_reason, raw_correlation_id, replay_id)
    select u.*, ${replayId}::uuid from unnest(
      ${rows.map((r) => r.physicalUid)}::int[],
      ${rows.map((r) => r.logicalUid)}::int[],
      ${rows.map((r) => r.ts)}::timestamptz[],
      ${rows.map((r) => r.json)}::jsonb[],
      ${rows.map((r) => r.msgKey)}::uuid[],
      ${rows.map((r) => r.holdReason ?? null)}::text[],
      ${rows.map((r) => r.rawCorrelationId ?? null)}::uuid[]) as u
    on conflict (msg_key) do nothing`;
}

/**
 * Of `rawCorrelationIds`, those a replay has already re-normalised (some row of theirs carries a
 * replay id): a late or redelivered message from the first normalisation of such a raw message
 * must not be stored beside the replay's rows.
 */
export async function replayedRawMessages(
  db: Db,
  rawCorrelationIds: readonly string[],
): Promise<Set<string>> {
  const ids = [...new Set(rawCorrelationIds)];
  if (ids.length === 0) {
    return new Set();
  }
  const { rows } = await sql<{ cid: string }>`${sql.raw(preparedAs("pts_replayed"))}
    select distinct raw_correlation_id::text as cid from physical_timeseries
    where raw_correlation_id = any(${ids}::uuid[]) and replay_id is not null`.execute(db);
  return new Set(rows.map((r) => r.cid));
}

/** A stored normalised message and the raw message it came from. */
export interface StoredRow {
  readonly uid: number;
  /** The raw message's correlation id (for a pre-013 row: the one it was found by). */
  readonly rawCorrelationId: string;
  readonly physicalUid: number;
  readonly logicalUid: number | null;
  /** The stored message (jsonb: key order is PostgreSQL's, not the producer's). */
  readonly message: Record<string, unknown>;
  readonly msgKey: string | null;
  readonly holdReason: string | null;
  readonly replayId: string | null;
}

/**
 * The rows that raw messages produced, by raw correlation id: the rows stamped with it, and rows
 * stored before migration 013 that were not (no raw copy matched their body's id then) whose
 * body's broker_correlation_id is the raw id or one of `alsoBodyIds` (a Dragino record's derived
 * id, which its raw message's replay produces again). The one lookup from a raw message to its
 * normalised messages; `alsoBodyIds` maps raw id to those extra body ids.
 */
export async function findRowsOfRawMessages(
  db: Db,
  rawCorrelationIds: readonly string[],
  alsoBodyIds: ReadonlyMap<string, readonly string[]> = new Map(),
): Promise<StoredRow[]> {
  if (rawCorrelationIds.length === 0) {
    return [];
  }
  const legacy = rawCorrelationIds.flatMap((raw) =>
    [raw, ...(alsoBodyIds.get(raw) ?? [])].map((body) => ({ raw, body })),
  );
  const query = sql<{
    uid: number;
    raw: string;
    physical_uid: number;
    logical_uid: number | null;
    json_msg: Record<string, unknown>;
    msg_key: string | null;
    hold_reason: string | null;
    replay_id: string | null;
  }>`
    select p.uid, p.raw_correlation_id::text as raw, p.physical_uid, p.logical_uid, p.json_msg,
           p.msg_key::text, p.hold_reason, p.replay_id::text
    from physical_timeseries p
    where p.raw_correlation_id = any(${[...rawCorrelationIds]}::uuid[])
    union all
    select p.uid, l.raw, p.physical_uid, p.logical_uid, p.json_msg,
           p.msg_key::text, p.hold_reason, p.replay_id::text
    from unnest(${legacy.map((l) => l.raw)}::text[], ${legacy.map((l) => l.body)}::text[])
           as l(raw, body)
    cross join lateral (
      select * from physical_timeseries q
      where q.raw_correlation_id is null and q.json_msg->>'broker_correlation_id' = l.body
      -- Not flattened into a join: one probe of the legacy index per body id. As a join,
      -- PostgreSQL sorted every legacy row of the table per batch (0.5 s at 1,000,000 rows).
      offset 0) p
    order by uid`;
  const { rows } = await withPlainPlans(db, (trx) => query.execute(trx));
  return rows.map((r) => ({
    uid: r.uid,
    rawCorrelationId: r.raw,
    physicalUid: r.physical_uid,
    logicalUid: r.logical_uid,
    message: r.json_msg,
    msgKey: r.msg_key,
    holdReason: r.hold_reason,
    replayId: r.replay_id,
  }));
}

/**
 * Replaces rows by a replay's: deletes the rows `deleteUids` and stores `rows` stamped with
 * `replayId`. A new row whose msg_key another row still holds (one the replay did not select)
 * is not stored twice. Run it inside the replay's transaction. Returns how many were stored.
 */
export async function replaceRows(
  db: Db,
  deleteUids: readonly number[],
  rows: readonly TimeseriesRow[],
  replayId: string,
): Promise<number> {
  if (deleteUids.length > 0) {
    await sql`delete from physical_timeseries where uid = any(${[...deleteUids]}::int[])`.execute(
      db,
    );
  }
  return insertRows(db, rows, replayId);
}

/** A forwarded row a replay stored, as it is published again after an interruption. */
export interface ReplayedRow {
  readonly rawCorrelationId: string;
  readonly logicalUid: number;
  readonly json: string;
  readonly msgKey: string;
  readonly ts: string;
}

/** The forwarded rows replay `replayId` stored for the raw messages of `rawCorrelationIds`. */
export async function forwardedRowsOfReplay(
  db: Db,
  replayId: string,
  rawCorrelationIds: readonly string[],
): Promise<ReplayedRow[]> {
  if (rawCorrelationIds.length === 0) {
    return [];
  }
  const { rows } = await sql<{
    raw: string;
    logical_uid: number;
    json: string;
    msg_key: string;
    ts: string;
  }>`
    select raw_correlation_id::text as raw, logical_uid, json_msg::text as json, msg_key::text, ts
    from physical_timeseries
    where replay_id = ${replayId}::uuid and logical_uid is not null
      and raw_correlation_id = any(${[...rawCorrelationIds]}::uuid[])
    order by physical_uid, ts, uid`.execute(db);
  return rows.map((r) => ({
    rawCorrelationId: r.raw,
    logicalUid: r.logical_uid,
    json: r.json,
    msgKey: r.msg_key,
    ts: r.ts,
  }));
}
