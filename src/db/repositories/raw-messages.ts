import { sql } from "kysely";

import type { Db } from "../database.js";

/** One arrival for the raw store: exactly one of `json` / `text` is set. */
export interface RawMessageInput {
  readonly sourceName: string;
  readonly correlationId: string;
  /** The message's own time when it has one, else the arrival time (ISO-8601 with offset). */
  readonly ts: string;
  readonly json?: unknown;
  readonly text?: string;
}

/**
 * Stores a batch of raw messages in one statement. A correlation id already present (the same
 * uplink posted again) is skipped: the first copy is the record. Returns how many were new.
 */
export async function insertRawMessages(db: Db, rows: readonly RawMessageInput[]): Promise<number> {
  if (rows.length === 0) {
    return 0;
  }
  const result = await db
    .insertInto("raw_messages")
    .values(
      rows.map((r) => ({
        source_name: r.sourceName,
        correlation_id: r.correlationId,
        ts: r.ts,
        json_msg: r.json === undefined ? null : JSON.stringify(r.json),
        text_msg: r.text ?? null,
      })),
    )
    .onConflict((oc) => oc.column("correlation_id").doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0);
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
  await sql`
    update raw_messages r set physical_uid = v.uid
    from jsonb_to_recordset(${payload}::jsonb) as v(cid uuid, uid int)
    where r.correlation_id = v.cid and r.physical_uid is distinct from v.uid`.execute(db);
}
