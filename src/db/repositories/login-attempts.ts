import { sql, type Kysely } from "kysely";

import type { Database } from "../tables.js";

/**
 * Login-attempt counters (`api_login_attempts`, db/migrations/010_login_attempts.sql): one row
 * per user name and client address, and one per user name across addresses (client
 * {@link ALL_ADDRESSES}). Only SQL lives here; the rules are in src/api/login-limits.ts. Times
 * are seconds since the epoch on the database clock.
 */

/** The `client` of the counter that spans every address of a user name. */
export const ALL_ADDRESSES = "";

export interface LoginCounterKey {
  username: string;
  client: string;
}

/** A counter as stored, with the database's `now` to decide on. */
export interface LoginCounterRow {
  failures: number;
  windowStartedAt: number | null;
  blockedUntil: number | null;
  lockouts: number;
  /** Last successful login from this address (pair counters only). */
  succeededAt: number | null;
  now: number;
}

type Row = {
  failures: number;
  window_started_at: number | null;
  blocked_until: number | null;
  lockouts: number;
  succeeded_at: number | null;
  now: number;
};

const epoch = (column: string) => sql.raw(`extract(epoch from a.${column})::float8`);

/**
 * The counter of `key`, created when absent, and locked until the caller's transaction ends:
 * concurrent attempts on one counter wait here, so each decides on the state the one before
 * left. Must run inside a transaction.
 */
export async function lockLoginCounter(
  trx: Kysely<Database>,
  key: LoginCounterKey,
): Promise<LoginCounterRow> {
  const { rows } = await sql<Row>`
    insert into api_login_attempts as a (username, client) values (${key.username}, ${key.client})
    on conflict (username, client) do update set touched_at = now()
    returning a.failures, ${epoch("window_started_at")} as window_started_at,
              ${epoch("blocked_until")} as blocked_until, a.lockouts,
              ${epoch("succeeded_at")} as succeeded_at,
              extract(epoch from now())::float8 as now`.execute(trx);
  const row = rows[0]!;
  return {
    failures: row.failures,
    windowStartedAt: row.window_started_at,
    blockedUntil: row.blocked_until,
    lockouts: row.lockouts,
    succeededAt: row.succeeded_at,
    now: row.now,
  };
}

/** Stores the counter of `key` as decided (after {@link lockLoginCounter} in the same transaction). */
export async function saveLoginCounter(
  trx: Kysely<Database>,
  key: LoginCounterKey,
  counter: {
    failures: number;
    windowStartedAt: number | null;
    blockedUntil: number | null;
    lockouts: number;
  },
): Promise<void> {
  await sql`
    update api_login_attempts set
      failures = ${counter.failures},
      window_started_at = to_timestamp(${counter.windowStartedAt}::float8),
      blocked_until = to_timestamp(${counter.blockedUntil}::float8),
      lockouts = ${counter.lockouts}
    where username = ${key.username} and client = ${key.client}`.execute(trx);
}

/**
 * Gives back one reserved attempt of `key` (it was not a wrong guess). `succeeded` also records
 * a successful login from this address and forgets its lock-outs.
 */
export async function releaseLoginAttempt(
  db: Kysely<Database>,
  key: LoginCounterKey,
  succeeded: boolean,
): Promise<void> {
  await sql`
    update api_login_attempts set
      failures = greatest(failures - 1, 0),
      succeeded_at = case when ${succeeded} then now() else succeeded_at end,
      lockouts = case when ${succeeded} then 0 else lockouts end
    where username = ${key.username} and client = ${key.client}`.execute(db);
}

/** Forgets counters nobody has used for `idleSeconds` (unknown user names, old addresses). */
export async function forgetIdleLoginCounters(
  db: Kysely<Database>,
  idleSeconds: number,
): Promise<void> {
  await sql`
    delete from api_login_attempts
    where touched_at < now() - make_interval(secs => ${idleSeconds}::float8)`.execute(db);
}
