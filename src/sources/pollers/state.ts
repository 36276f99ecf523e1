import { sql } from "kysely";

import { toJson, type Db } from "../../db/database.js";
import { aggregateProgress, type Progress, type ProgressUpdate } from "./progress.js";

/** The `poller_state` table (migration 005); see progress.ts for what a row means. */

/** Every device's progress for `source`, by device key. */
export async function loadProgress(db: Db, source: string): Promise<Map<string, Progress>> {
  const { rows } = await sql<{
    device_key: string;
    last_hash: string | null;
    last_ts: string | null;
  }>`
    select device_key, last_hash, last_ts from poller_state where source_name = ${source}`.execute(
    db,
  );
  return new Map(rows.map((r) => [r.device_key, { lastHash: r.last_hash, lastTs: r.last_ts }]));
}

/** Records progress for several devices in one statement. */
export async function saveProgress(
  db: Db,
  source: string,
  updates: readonly ProgressUpdate[],
): Promise<void> {
  if (updates.length === 0) {
    return;
  }
  const rows = aggregateProgress(updates).map((u) => ({
    device_key: u.deviceKey,
    last_hash: u.lastHash ?? null,
    last_ts: u.lastTs ?? null,
  }));
  await sql`
    insert into poller_state as s (source_name, device_key, last_hash, last_ts)
    select ${source}, v.device_key, v.last_hash, v.last_ts
    from jsonb_to_recordset(${toJson(rows)}::jsonb) as v(device_key text, last_hash text, last_ts timestamptz)
    on conflict (source_name, device_key) do update set
      last_hash = coalesce(excluded.last_hash, s.last_hash),
      last_ts = greatest(s.last_ts, excluded.last_ts),
      updated_at = now()`.execute(db);
}
