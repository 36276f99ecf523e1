import { sql, type Kysely } from "kysely";

import type { Database } from "../tables.js";

/** Every source name, alphabetical (IoTa's `/physical/sources/`). */
export async function listSources(db: Kysely<Database>): Promise<string[]> {
  const rows = await db
    .selectFrom("sources")
    .select("source_name")
    .orderBy("source_name")
    .execute();
  return rows.map((r) => r.source_name);
}

/**
 * Adds a source if it is not there yet. Components call this at start-up for sources IoTa did not
 * seed (e.g. `axistech`), so it must be safe to call any number of times, concurrently.
 */
export async function addSource(db: Kysely<Database>, sourceName: string): Promise<void> {
  await sql`insert into sources (source_name) values (${sourceName}) on conflict do nothing`.execute(
    db,
  );
}
