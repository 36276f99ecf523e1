import { sql, type Kysely, type Transaction } from "kysely";

import type {
  EventData,
  EventEntity,
  EventFilter,
  EventOperation,
  RegistryEvent,
} from "../../events/event.js";
import type { Database } from "../tables.js";

/**
 * The registry event log (`registry_events`). Rows are written only by the database's triggers
 * (db/migrations/008_registry_events.sql); this module reads them and records their publication.
 */

/**
 * The relay lock. Transaction-scoped, so it goes with the transaction (or the dropped
 * connection) of a relay that fails; the two-key form keeps it apart from the one-key locks used
 * elsewhere. (4715, 8) is the triggers' order lock.
 */
const RELAY_LOCK = [4715, 9] as const;

const COLUMNS = ["id", "occurred_at", "entity", "operation", "entity_id", "actor", "data"] as const;

function eventFromRow(row: {
  id: string;
  occurred_at: string;
  entity: string;
  operation: string;
  entity_id: string;
  actor: string;
  data: unknown;
}): RegistryEvent {
  return {
    // bigint arrives as text; ids stay far below 2^53.
    id: Number(row.id),
    occurred_at: row.occurred_at,
    entity: row.entity as EventEntity,
    operation: row.operation as EventOperation,
    entity_id: row.entity_id,
    actor: row.actor,
    data: row.data as EventData,
  };
}

/** Events after `filter.since`, oldest first, at most `filter.limit`. */
export async function listEvents(
  db: Kysely<Database>,
  filter: EventFilter,
  options: { excludeEntities?: readonly EventEntity[] } = {},
): Promise<RegistryEvent[]> {
  let query = db
    .selectFrom("registry_events")
    .select(COLUMNS)
    .where("id", ">", String(filter.since));
  if (options.excludeEntities && options.excludeEntities.length > 0) {
    query = query.where("entity", "not in", [...options.excludeEntities]);
  }
  if (filter.entity !== undefined) {
    query = query.where("entity", "=", filter.entity);
  }
  if (filter.operation !== undefined) {
    query = query.where("operation", "=", filter.operation);
  }
  if (filter.entity_id !== undefined) {
    query = query.where("entity_id", "=", filter.entity_id);
  }
  if (filter.actor !== undefined) {
    query = query.where("actor", "=", filter.actor);
  }
  if (filter.before !== undefined) {
    query = query.where("id", "<", String(filter.before));
  }
  const rows = await query
    .orderBy("id", filter.order === "desc" ? "desc" : "asc")
    .limit(filter.limit)
    .execute();
  return rows.map(eventFromRow);
}

/** The id of the newest event, 0 when there is none. */
export async function latestEventId(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom("registry_events")
    .select((eb) => eb.fn.max("id").as("id"))
    .executeTakeFirst();
  return row?.id == null ? 0 : Number(row.id);
}

/**
 * Takes the relay lock for the rest of `trx`, without waiting: false when another relay holds
 * it. Only the holder reads and publishes, so events go out once and in order however many
 * relays run.
 */
export async function tryLockRelay(trx: Transaction<Database>): Promise<boolean> {
  const { rows } = await sql<{
    locked: boolean;
  }>`select pg_try_advisory_xact_lock(${RELAY_LOCK[0]}::int, ${RELAY_LOCK[1]}::int) as locked`.execute(
    trx,
  );
  return rows[0]?.locked === true;
}

/** The oldest `limit` events not yet published, in id order. */
export async function unpublishedEvents(
  db: Kysely<Database>,
  limit: number,
): Promise<RegistryEvent[]> {
  const rows = await db
    .selectFrom("registry_events")
    .select(COLUMNS)
    .where("published_at", "is", null)
    .orderBy("id")
    .limit(limit)
    .execute();
  return rows.map(eventFromRow);
}

/** Records that RabbitMQ confirmed the events `ids`. */
export async function markPublished(db: Kysely<Database>, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) {
    return;
  }
  await sql`update registry_events set published_at = now()
            where id = any(${ids.map(String)}::bigint[])`.execute(db);
}

/** How many events wait for the relay (for operators and tests). */
export async function countUnpublished(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom("registry_events")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("published_at", "is", null)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}
