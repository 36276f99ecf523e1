import { sql } from "kysely";

import type { Db } from "../database.js";

/** What the database recorded about one reading, by its correlation id (the trace page). */

export interface TracedRaw {
  readonly uid: number;
  readonly sourceName: string;
  readonly physicalUid: number | null;
  readonly ts: string;
  /** The body as it arrived: JSON when it parsed, else the text. */
  readonly json: unknown;
  readonly text: string | null;
}

export interface TracedMessage {
  readonly uid: number;
  readonly physicalUid: number;
  readonly physicalName: string | null;
  /** The logical device it went to; null while held. */
  readonly logicalUid: number | null;
  readonly logicalName: string | null;
  readonly ts: string;
  readonly receivedAt: string;
  readonly holdReason: string | null;
  readonly releasedAt: string | null;
  readonly message: unknown;
}

export interface TracedDelivery {
  readonly writer: string;
  readonly logicalUid: number;
  readonly physicalUid: number;
  readonly receivedAt: string;
  readonly attempts: number;
  readonly nextAttemptAt: string;
  readonly lastError: string | null;
  readonly deliveredAt: string | null;
}

/** The raw message with this correlation id, if the source stored one. */
export async function rawMessageByCorrelationId(
  db: Db,
  correlationId: string,
): Promise<TracedRaw | undefined> {
  const { rows } = await sql<{
    uid: number;
    source_name: string;
    physical_uid: number | null;
    ts: string;
    json_msg: unknown;
    text_msg: string | null;
  }>`
    select uid, source_name, physical_uid, ts, json_msg, text_msg from raw_messages
    where correlation_id = ${correlationId}::uuid`.execute(db);
  const r = rows[0];
  return (
    r && {
      uid: r.uid,
      sourceName: r.source_name,
      physicalUid: r.physical_uid,
      ts: r.ts,
      json: r.json_msg,
      text: r.text_msg,
    }
  );
}

/**
 * The normalised messages made from one arrival, oldest first: the rows stamped with it as their
 * raw message (`raw_correlation_id`, migration 013, indexed), rows stored before 013 whose body
 * carries the id (indexed for rows without a raw id), and, when the raw message's device is known,
 * that device's rows whose body carries the id (a Dragino record's own id). `correlationId` must be
 * a UUID (the route validates it).
 */
export async function messagesByCorrelationId(
  db: Db,
  correlationId: string,
  physicalUid?: number,
): Promise<TracedMessage[]> {
  const ofDevice =
    physicalUid === undefined
      ? sql`false`
      : sql`(pt.physical_uid = ${physicalUid}
             and pt.json_msg->>'broker_correlation_id' = ${correlationId})`;
  const { rows } = await sql<{
    uid: number;
    physical_uid: number;
    pd_name: string | null;
    logical_uid: number | null;
    ld_name: string | null;
    ts: string;
    received_at: string;
    hold_reason: string | null;
    released_at: string | null;
    json_msg: unknown;
  }>`
    select pt.uid, pt.physical_uid, pd.name as pd_name, pt.logical_uid, ld.name as ld_name,
           pt.ts, pt.received_at, pt.hold_reason, pt.released_at, pt.json_msg
    from physical_timeseries pt
    left join physical_devices pd on pd.uid = pt.physical_uid
    left join logical_devices ld on ld.uid = pt.logical_uid
    where pt.raw_correlation_id = ${correlationId}::uuid
       or (pt.raw_correlation_id is null
           and pt.json_msg->>'broker_correlation_id' = ${correlationId})
       or ${ofDevice}
    order by pt.ts, pt.uid`.execute(db);
  return rows.map((r) => ({
    uid: r.uid,
    physicalUid: r.physical_uid,
    physicalName: r.pd_name,
    logicalUid: r.logical_uid,
    logicalName: r.ld_name,
    ts: r.ts,
    receivedAt: r.received_at,
    holdReason: r.hold_reason,
    releasedAt: r.released_at,
    message: r.json_msg,
  }));
}

/** What each writer did with the messages of one correlation id (rows kept in delivery_queue). */
export async function deliveriesByCorrelationId(
  db: Db,
  correlationId: string,
): Promise<TracedDelivery[]> {
  const { rows } = await sql<{
    writer: string;
    l_uid: number;
    p_uid: number;
    received_at: string;
    attempts: number;
    next_attempt_at: string;
    last_error: string | null;
    delivered_at: string | null;
  }>`
    select writer, l_uid, p_uid, received_at, attempts, next_attempt_at, last_error, delivered_at
    from delivery_queue where correlation_id = ${correlationId} order by writer, id`.execute(db);
  return rows.map((r) => ({
    writer: r.writer,
    logicalUid: r.l_uid,
    physicalUid: r.p_uid,
    receivedAt: r.received_at,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastError: r.last_error,
    deliveredAt: r.delivered_at,
  }));
}
