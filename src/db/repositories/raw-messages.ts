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
  // Array parameters, as insertPhysicalTimeseries: one plan, no parameter ceiling on batch size.
  const result = await sql`
    insert into raw_messages (source_name, correlation_id, ts, json_msg, text_msg)
    select * from unnest(
      ${rows.map((r) => r.sourceName)}::text[],
      ${rows.map((r) => r.correlationId)}::uuid[],
      ${rows.map((r) => r.ts)}::timestamptz[],
      ${rows.map((r) => (r.json === undefined ? null : JSON.stringify(r.json)))}::jsonb[],
      ${rows.map((r) => r.text ?? null)}::text[])
    on conflict (correlation_id) do nothing`.execute(db);
  return Number(result.numAffectedRows ?? 0);
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
