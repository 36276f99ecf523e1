import { sql, type Kysely, type Transaction } from "kysely";

import type { Database } from "../tables.js";

/** One normalised message waiting in the outbox for RabbitMQ (see 017_ingest_outbox.sql). */
export interface OutboxMessage {
  readonly correlationId: string;
  /** The raw message it was made from, published as `x-broker-raw-correlation-id`. */
  readonly rawCorrelationId: string;
  /** The message's msg_key, published as its AMQP message_id. */
  readonly msgKey: string;
  readonly physicalUid: number;
  /** The exact JSON text to publish. */
  readonly body: string;
}

/** A stored outbox row: the message and its id (the publishing order). */
export interface OutboxRow extends OutboxMessage {
  readonly id: string;
}

/** Stores `messages` in the outbox of `sourceName`, in the given order (one statement). */
export async function insertOutbox(
  db: Kysely<Database>,
  sourceName: string,
  messages: readonly OutboxMessage[],
): Promise<void> {
  if (messages.length === 0) {
    return;
  }
  // unnest keeps the arrays' order, and bigserial hands out ids in the order rows are inserted.
  await sql`
    insert into ingest_outbox
      (source_name, correlation_id, raw_correlation_id, msg_key, physical_uid, body)
    select ${sourceName}, * from unnest(
      ${messages.map((m) => m.correlationId)}::uuid[],
      ${messages.map((m) => m.rawCorrelationId)}::uuid[],
      ${messages.map((m) => m.msgKey)}::uuid[],
      ${messages.map((m) => m.physicalUid)}::int[],
      ${messages.map((m) => m.body)}::text[])`.execute(db);
}

/**
 * Takes the relay lock of `sourceName` for the transaction, without waiting: false when another
 * relay (another process of the same source) holds it, which then publishes instead.
 */
export async function tryLockOutbox(
  trx: Transaction<Database>,
  sourceName: string,
): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`
    select pg_try_advisory_xact_lock(hashtextextended('ingest_outbox:' || ${sourceName}::text, 0)) as locked`.execute(
    trx,
  );
  return rows[0]?.locked === true;
}

/** The oldest `limit` outbox rows of `sourceName`, id ascending. */
export async function oldestOutbox(
  db: Kysely<Database>,
  sourceName: string,
  limit: number,
): Promise<OutboxRow[]> {
  const { rows } = await sql<{
    id: string;
    correlation_id: string;
    raw_correlation_id: string;
    msg_key: string;
    physical_uid: number;
    body: string;
  }>`
    select o.id::text, o.correlation_id::text, o.raw_correlation_id::text, o.msg_key::text, o.physical_uid, o.body
    from ingest_outbox o where o.source_name = ${sourceName} order by o.id limit ${limit}`.execute(
    db,
  );
  return rows.map((r) => ({
    id: r.id,
    correlationId: r.correlation_id,
    rawCorrelationId: r.raw_correlation_id,
    msgKey: r.msg_key,
    physicalUid: r.physical_uid,
    body: r.body,
  }));
}

/** Removes published rows. */
export async function deleteOutbox(db: Kysely<Database>, ids: readonly string[]): Promise<void> {
  if (ids.length > 0) {
    await sql`delete from ingest_outbox where id = any(${ids}::bigint[])`.execute(db);
  }
}

/** How many rows wait in the outbox of `sourceName`. */
export async function countOutbox(db: Kysely<Database>, sourceName: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from ingest_outbox where source_name = ${sourceName}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}
