import { sql } from "kysely";

import type { Db } from "./database.js";

/**
 * Runs `work` in a transaction whose statements are planned without parallel workers and
 * without JIT compilation. For the batch reads of long operations (a replay) whose filters
 * PostgreSQL cannot estimate: on a large table it overestimates them, then pays more for
 * starting workers (tens of ms) and compiling (hundreds of ms) than the index walk costs.
 */
export async function withPlainPlans<T>(db: Db, work: (trx: Db) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`set local max_parallel_workers_per_gather = 0`.execute(trx);
    await sql`set local jit = off`.execute(trx);
    return work(trx);
  });
}
