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
  const result = await db
    .insertInto("physical_timeseries")
    .values(
      rows.map((r) => ({
        physical_uid: r.physicalUid,
        logical_uid: r.logicalUid,
        ts: r.ts,
        json_msg: r.json,
        msg_key: r.msgKey,
      })),
    )
    .onConflict((oc) => oc.column("msg_key").doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0);
}
