import { sql } from "kysely";

import type { Db } from "../database.js";
import { preparedAs } from "../prepared.js";

/**
 * The writers' waiting room (`delivery_queue`, db/migrations/012_delivery.sql): messages a
 * writer took from RabbitMQ and has not delivered yet, plus, for a while, the keys of those it
 * delivered. Rows are claimed with a lease, so several copies of one writer share the work and a
 * crashed copy's claims come back when the lease runs out.
 */

/** A message to keep for `writer`. */
export interface QueuedMessageInput {
  readonly msgKey: string;
  readonly lUid: number;
  readonly pUid: number;
  readonly correlationId: string;
  /** The message as received. */
  readonly body: string;
}

/** A claimed row. */
export interface ClaimedRow {
  readonly id: string;
  readonly msgKey: string;
  readonly lUid: number;
  readonly pUid: number;
  readonly correlationId: string;
  readonly body: string;
  /** ISO-8601. */
  readonly receivedAt: string;
  /** Failed attempts so far. */
  readonly attempts: number;
}

export interface ClaimOptions {
  /** Most rows returned. */
  readonly limit: number;
  /** How long the claim holds before another copy may take the rows, in ms. */
  readonly leaseMs: number;
  /** Only rows of one logical device (the one whose oldest due row comes first). */
  readonly oneDevice?: boolean;
}

/** A row to try again later. */
export interface Reschedule {
  readonly id: string;
  /** From now, in ms. */
  readonly delayMs: number;
  readonly error: string;
  /** Whether this counts as a failed attempt (a suspended writer's rows do not). */
  readonly failed: boolean;
}

/**
 * Inserts the messages in one statement. A message already kept for the writer (same msg_key:
 * a redelivery, or a republish of one delivered within the remembered window) is skipped.
 * Returns how many rows were new.
 */
export async function enqueueDeliveries(
  db: Db,
  writer: string,
  items: readonly QueuedMessageInput[],
): Promise<number> {
  if (items.length === 0) {
    return 0;
  }
  const result = await sql`${sql.raw(preparedAs("delivery_enqueue"))}
    insert into delivery_queue (writer, msg_key, l_uid, p_uid, correlation_id, body)
    select ${writer}, k, l, p, c, b
    from unnest(${items.map((i) => i.msgKey)}::uuid[], ${items.map((i) => i.lUid)}::int[],
                ${items.map((i) => i.pUid)}::int[], ${items.map((i) => i.correlationId)}::text[],
                ${items.map((i) => i.body)}::text[]) as t(k, l, p, c, b)
    on conflict (writer, msg_key) do nothing`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** A row {@link enqueueClaimedDeliveries} inserted. */
export interface InsertedRow {
  readonly id: string;
  readonly msgKey: string;
}

/**
 * As {@link enqueueDeliveries}, but the new rows are claimed by the caller in the same statement
 * (leased for `leaseMs`, as {@link claimDeliveries} would), so a process that took messages in
 * while it had nothing to deliver hands them on without claiming them in a second statement.
 * Returns the new rows (skipped keys are not among them), in no particular order.
 */
export async function enqueueClaimedDeliveries(
  db: Db,
  writer: string,
  items: readonly QueuedMessageInput[],
  leaseMs: number,
): Promise<InsertedRow[]> {
  if (items.length === 0) {
    return [];
  }
  const { rows } = await sql<{ id: string; msg_key: string }>`${sql.raw(
    preparedAs("delivery_enqueue_claimed"),
  )}
    insert into delivery_queue (writer, msg_key, l_uid, p_uid, correlation_id, body, claimed_until)
    select ${writer}, k, l, p, c, b, now() + ${leaseMs}::int * interval '1 millisecond'
    from unnest(${items.map((i) => i.msgKey)}::uuid[], ${items.map((i) => i.lUid)}::int[],
                ${items.map((i) => i.pUid)}::int[], ${items.map((i) => i.correlationId)}::text[],
                ${items.map((i) => i.body)}::text[]) as t(k, l, p, c, b)
    on conflict (writer, msg_key) do nothing
    returning id::text as id, msg_key::text as msg_key`.execute(db);
  return rows.map((r) => ({ id: r.id, msgKey: r.msg_key }));
}

interface ClaimedDbRow {
  id: string;
  msg_key: string;
  l_uid: number;
  p_uid: number;
  correlation_id: string;
  body: string;
  received_at: string;
  attempts: number;
}

/**
 * Claims due, unclaimed, undelivered rows of `writer` in arrival order (rows waiting for a retry
 * are skipped until due). With `oneDevice`, only rows of the logical device whose oldest due row
 * comes first. Rows another transaction is claiming are skipped, never waited for.
 */
export async function claimDeliveries(
  db: Db,
  writer: string,
  options: ClaimOptions,
): Promise<ClaimedRow[]> {
  const due = sql`writer = ${writer} and delivered_at is null and next_attempt_at <= now()
    and (claimed_until is null or claimed_until < now())`;
  const picked = options.oneDevice
    ? sql`select id from delivery_queue
          where ${due} and l_uid = (
            select l_uid from delivery_queue where ${due} order by id limit 1 for update skip locked)
          order by id limit ${options.limit} for update skip locked`
    : sql`select id from delivery_queue where ${due} order by id limit ${options.limit}
          for update skip locked`;
  // Two fixed texts, each sent as a prepared statement: a claim runs per batch, and at a steady
  // flow batches are a few messages each, so parsing and planning it every time cost more
  // PostgreSQL CPU than the rows it claims.
  const name = options.oneDevice ? "delivery_claim_device" : "delivery_claim";
  const { rows } = await sql<ClaimedDbRow>`${sql.raw(preparedAs(name))}
    with picked as (${picked})
    update delivery_queue q set claimed_until = now() + ${options.leaseMs} * interval '1 millisecond'
    from picked where q.id = picked.id
    returning q.id::text as id, q.msg_key::text as msg_key, q.l_uid, q.p_uid, q.correlation_id,
              q.body,
              q.received_at, q.attempts`.execute(db);
  return rows
    .map((r) => ({
      id: r.id,
      msgKey: r.msg_key,
      lUid: r.l_uid,
      pUid: r.p_uid,
      correlationId: r.correlation_id,
      body: r.body,
      receivedAt: r.received_at,
      attempts: r.attempts,
    }))
    .sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
}

/** Marks rows delivered: the body goes, the key stays remembered until pruned. */
export async function markDelivered(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) {
    return;
  }
  await sql`${sql.raw(preparedAs("delivery_delivered"))}
    update delivery_queue set delivered_at = now(), body = null, claimed_until = null,
      last_error = null
    where id = any(${[...ids]}::bigint[])`.execute(db);
}

/** Releases rows to be tried again after their delay. */
export async function rescheduleDeliveries(db: Db, items: readonly Reschedule[]): Promise<void> {
  if (items.length === 0) {
    return;
  }
  await sql`${sql.raw(preparedAs("delivery_reschedule"))}
    update delivery_queue q set
      attempts = q.attempts + case when t.f then 1 else 0 end,
      next_attempt_at = now() + t.d * interval '1 millisecond',
      claimed_until = null,
      last_error = t.e
    from unnest(${items.map((i) => i.id)}::bigint[], ${items.map((i) => Math.max(0, Math.round(i.delayMs)))}::int[],
                ${items.map((i) => i.error.slice(0, 2000))}::text[], ${items.map((i) => i.failed)}::bool[])
      as t(id, d, e, f)
    where q.id = t.id`.execute(db);
}

/** Deletes rows (their dead letters are confirmed). */
export async function removeDeliveries(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) {
    return;
  }
  await sql`delete from delivery_queue where id = any(${[...ids]}::bigint[])`.execute(db);
}

/**
 * Ends this process's claim on rows it has not handed to the destination: they are due again
 * at once (for any copy), with no attempt counted and no error recorded.
 */
export async function releaseDeliveries(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) {
    return;
  }
  await sql`update delivery_queue set claimed_until = null
    where id = any(${[...ids]}::bigint[]) and delivered_at is null`.execute(db);
}

/**
 * Age in seconds of the writer's oldest undelivered message (0 when there is none), measured on
 * the database's clock.
 */
export async function oldestPendingAgeSeconds(db: Db, writer: string): Promise<number> {
  const { rows } = await sql<{ age: number | null }>`
    select extract(epoch from now() - received_at)::float8 as age from delivery_queue
    where writer = ${writer} and delivered_at is null order by id limit 1`.execute(db);
  return Math.max(0, rows[0]?.age ?? 0);
}

/**
 * How many messages wait for the writer (undelivered rows), counted on the pending rows' partial
 * index alone, so a caller may ask every few seconds while delivered rows pile up.
 */
export async function pendingDeliveries(db: Db, writer: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from delivery_queue
    where writer = ${writer} and delivered_at is null`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Forgets delivered rows older than `olderThanMs` (at most `limit` per call); returns how many. */
export async function pruneDelivered(
  db: Db,
  writer: string,
  olderThanMs: number,
  limit = 10_000,
): Promise<number> {
  const result = await sql`
    delete from delivery_queue where id in (
      select id from delivery_queue
      where writer = ${writer} and delivered_at is not null
        and delivered_at < now() - ${olderThanMs} * interval '1 millisecond'
      limit ${limit})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** One writer's backlog in delivery_queue: how far behind its destination is. */
export interface WriterBacklog {
  readonly writer: string;
  /** Messages taken from RabbitMQ and not yet delivered. */
  readonly pending: number;
  /** Seconds since the oldest of them arrived (0 when none), on the database's clock. */
  readonly oldestPendingAgeSeconds: number;
  /** Pending messages that failed at least once. */
  readonly retrying: number;
  /** The newest error recorded on a pending message, if any. */
  readonly lastError: string | null;
  /** Messages delivered in the last hour (delivered rows are kept for a while). */
  readonly deliveredLastHour: number;
}

/** The backlog of every writer that has rows, by writer name; one query. */
export async function writerBacklogs(db: Db): Promise<WriterBacklog[]> {
  const { rows } = await sql<{
    writer: string;
    pending: string;
    age: number | null;
    retrying: string;
    last_error: string | null;
    delivered: string;
  }>`
    select writer,
           count(*) filter (where delivered_at is null) as pending,
           extract(epoch from now() - min(received_at) filter (where delivered_at is null))::float8
             as age,
           count(*) filter (where delivered_at is null and attempts > 0) as retrying,
           (array_agg(last_error order by id desc)
             filter (where delivered_at is null and last_error is not null))[1] as last_error,
           count(*) filter (where delivered_at > now() - interval '1 hour') as delivered
    from delivery_queue group by writer order by writer`.execute(db);
  return rows.map((r) => ({
    writer: r.writer,
    pending: Number(r.pending),
    oldestPendingAgeSeconds: Math.max(0, r.age ?? 0),
    retrying: Number(r.retrying),
    lastError: r.last_error,
    deliveredLastHour: Number(r.delivered),
  }));
}
