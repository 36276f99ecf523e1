import { sql } from "kysely";

import type { Db } from "../database.js";

/**
 * Request budgets shared by every process that spends them (`rate_limits`, migration 012), as a
 * generic cell rate: `tat` is the time the next request may go out. All times are the database
 * server's clock, so copies on machines with different clocks still share one budget.
 */

/**
 * Reserves the next slot of budget `name` (one request every `intervalMs`) and returns how long
 * the caller must wait before sending, in ms (0 when it may send now). One atomic statement, so
 * any number of processes take distinct slots.
 */
export async function takeRateSlot(db: Db, name: string, intervalMs: number): Promise<number> {
  const { rows } = await sql<{ wait_ms: number }>`
    insert into rate_limits as r (name, tat)
    values (${name}, clock_timestamp() + ${intervalMs} * interval '1 millisecond')
    on conflict (name) do update
      set tat = greatest(r.tat, clock_timestamp()) + ${intervalMs} * interval '1 millisecond'
    returning greatest(0, extract(epoch from (r.tat - clock_timestamp())) * 1000 - ${intervalMs})::float8
      as wait_ms`.execute(db);
  return rows[0]?.wait_ms ?? 0;
}

/** Nobody spends budget `name` for the next `ms` (the destination said 429 / Retry-After). */
export async function holdRateLimit(db: Db, name: string, ms: number): Promise<void> {
  await sql`
    insert into rate_limits as r (name, tat)
    values (${name}, clock_timestamp() + ${ms} * interval '1 millisecond')
    on conflict (name) do update
      set tat = greatest(r.tat, clock_timestamp() + ${ms} * interval '1 millisecond')`.execute(db);
}
