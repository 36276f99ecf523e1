import { userInfo } from "node:os";

import { sql, type Kysely, type Transaction } from "kysely";

import type { Database } from "../db/tables.js";

/**
 * Who made a registry change. The event triggers read the transaction-local setting
 * `broker.actor` (`database` when unset), so the actor travels with the transaction itself and
 * never leaks into another request that later borrows the same pooled connection.
 */

/** The setting the triggers read (db/migrations/008_registry_events.sql). */
export const ACTOR_SETTING = "broker.actor";

/**
 * Runs `fn` in a transaction whose registry changes are recorded as made by `actor`. Inside a
 * transaction already (`db.isTransaction`), sets the actor there and runs `fn` in it. Events are
 * written at commit, so the actor in effect at commit is the one recorded for the whole
 * transaction.
 */
export async function withActor<T>(
  db: Kysely<Database>,
  actor: string,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  if (db.isTransaction) {
    const trx = db as Transaction<Database>;
    await setActor(trx, actor);
    return fn(trx);
  }
  return db.transaction().execute(async (trx) => {
    await setActor(trx, actor);
    return fn(trx);
  });
}

async function setActor(trx: Transaction<Database>, actor: string): Promise<void> {
  await sql`select set_config(${ACTOR_SETTING}, ${actor}, true)`.execute(trx);
}

/** `cli:<operating-system user>`, the actor of `broker` commands. */
export function cliActor(): string {
  let name: string | undefined;
  try {
    name = userInfo().username;
  } catch {
    // A uid without a passwd entry (some containers): fall back to what the shell says.
    name = process.env.USER ?? process.env.LOGNAME;
  }
  return `cli:${name || "unknown"}`;
}
