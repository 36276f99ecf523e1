import { sql } from "kysely";

import type { Db } from "../database.js";
import { enqueueDeliveries, type QueuedMessageInput } from "./delivery-queue.js";

/**
 * `broker backfill`: stored logical messages (physical_timeseries rows with a logical_uid) read
 * in (ts, uid) order, queued for one writer, and the position remembered in
 * `backfill_progress` (db/migrations/015_backfill.sql) in the same transaction.
 */

/** Which stored messages a backfill sends. */
export interface BackfillSelection {
  /** Messages stamped at or after this instant (ISO-8601 with offset). */
  readonly from: string;
  /** Messages stamped before this instant (ISO-8601 with offset). */
  readonly to: string;
  /** Only these logical devices; empty or absent means every one. */
  readonly luids?: readonly number[];
}

/** Keyset position in (ts, uid) order. */
export interface BackfillPosition {
  /** ISO-8601, as PostgreSQL writes it. */
  readonly ts: string;
  readonly uid: number;
}

export interface BackfillProgressRow {
  readonly position: BackfillPosition | undefined;
  readonly queued: number;
  /** ISO-8601 when the selection was exhausted, else undefined. */
  readonly finishedAt: string | undefined;
}

/** A stored logical message. */
export interface StoredLogicalRow {
  readonly uid: number;
  readonly ts: string;
  readonly logicalUid: number;
  /** The stored copy (jsonb text). */
  readonly json: string;
}

function where(selection: BackfillSelection, after: BackfillPosition | undefined) {
  const luids = selection.luids ?? [];
  return sql`logical_uid is not null
    and ts >= ${selection.from}::timestamptz and ts < ${selection.to}::timestamptz
    ${luids.length > 0 ? sql`and logical_uid = any(${[...luids]}::int[])` : sql``}
    ${after ? sql`and (ts, uid) > (${after.ts}::timestamptz, ${after.uid})` : sql``}`;
}

/** How many stored messages of the selection lie after `after` (all of them without it). */
export async function countBackfill(
  db: Db,
  selection: BackfillSelection,
  after?: BackfillPosition,
): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from physical_timeseries where ${where(selection, after)}`.execute(
    db,
  );
  return Number(rows[0]?.n ?? 0);
}

/** The next `limit` stored messages of the selection after `after`, in (ts, uid) order. */
export async function readBackfill(
  db: Db,
  selection: BackfillSelection,
  after: BackfillPosition | undefined,
  limit: number,
): Promise<StoredLogicalRow[]> {
  const { rows } = await sql<{ uid: number; ts: string; logical_uid: number; json: string }>`
    select uid, ts::text as ts, logical_uid, json_msg::text as json from physical_timeseries
    where ${where(selection, after)} order by ts, uid limit ${limit}`.execute(db);
  return rows.map((r) => ({ uid: r.uid, ts: r.ts, logicalUid: r.logical_uid, json: r.json }));
}

/** Where an earlier run of this backfill stopped, if one ran. */
export async function getBackfillProgress(
  db: Db,
  writer: string,
  selection: string,
): Promise<BackfillProgressRow | undefined> {
  const { rows } = await sql<{
    last_ts: string | null;
    last_uid: number | null;
    queued: string;
    finished_at: string | null;
  }>`select last_ts::text as last_ts, last_uid, queued::text as queued,
            finished_at::text as finished_at
     from backfill_progress where writer = ${writer} and selection = ${selection}`.execute(db);
  const row = rows[0];
  if (!row) {
    return undefined;
  }
  return {
    position:
      row.last_ts !== null && row.last_uid !== null
        ? { ts: row.last_ts, uid: row.last_uid }
        : undefined,
    queued: Number(row.queued),
    finishedAt: row.finished_at ?? undefined,
  };
}

/** Forgets a backfill's position (`--restart`). */
export async function resetBackfillProgress(
  db: Db,
  writer: string,
  selection: string,
): Promise<void> {
  await sql`delete from backfill_progress where writer = ${writer} and selection = ${selection}`.execute(
    db,
  );
}

/**
 * Queues one batch for `writer` and moves the position to `position`, in one transaction.
 * Returns how many messages were new to the writer's queue.
 */
export async function queueBackfillBatch(
  db: Db,
  writer: string,
  selection: string,
  items: readonly QueuedMessageInput[],
  position: BackfillPosition,
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const queued = await enqueueDeliveries(trx, writer, items);
    await sql`
      insert into backfill_progress (writer, selection, last_ts, last_uid, queued)
      values (${writer}, ${selection}, ${position.ts}::timestamptz, ${position.uid}, ${queued})
      on conflict (writer, selection) do update set
        last_ts = excluded.last_ts, last_uid = excluded.last_uid,
        queued = backfill_progress.queued + excluded.queued, updated_at = now()`.execute(trx);
    return queued;
  });
}

/** Marks the backfill finished (the selection is exhausted). */
export async function finishBackfill(db: Db, writer: string, selection: string): Promise<void> {
  await sql`
    insert into backfill_progress (writer, selection, finished_at) values (${writer}, ${selection}, now())
    on conflict (writer, selection) do update set finished_at = now(), updated_at = now()`.execute(
    db,
  );
}
