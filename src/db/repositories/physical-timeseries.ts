import { sql } from "kysely";

import type { Db } from "../database.js";

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
}

/**
 * Stores a batch of normalised messages in one statement. Rows whose msg_key is already present
 * (a redelivery or a replay) are skipped; returns how many were new.
 */
export async function insertPhysicalTimeseries(
  db: Db,
  rows: readonly TimeseriesRow[],
): Promise<number> {
  if (rows.length === 0) {
    return 0;
  }
  // Array parameters rather than six per row: the statement text and its plan stay the
  // same whatever the batch size, which PostgreSQL's 65,535-parameter limit would otherwise cap.
  const result = await sql`
    insert into physical_timeseries (physical_uid, logical_uid, ts, json_msg, msg_key, hold_reason)
    select * from unnest(
      ${rows.map((r) => r.physicalUid)}::int[],
      ${rows.map((r) => r.logicalUid)}::int[],
      ${rows.map((r) => r.ts)}::timestamptz[],
      ${rows.map((r) => r.json)}::jsonb[],
      ${rows.map((r) => r.msgKey)}::uuid[],
      ${rows.map((r) => r.holdReason ?? null)}::text[])
    on conflict (msg_key) do nothing`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
