import { sql, type RawBuilder } from "kysely";
import Cursor from "pg-cursor";

import type { JsonObject } from "../../core/devices.js";
import type { DatabaseHandle, Db } from "../database.js";

/**
 * Reads of stored messages: normalised messages (`physical_timeseries`, IoTa's /messages) streamed
 * through a server-side cursor so an export of any size never sits in memory, and raw messages
 * (`raw_messages`) by correlation id, device, source and time.
 */

/** Which rows of physical_timeseries /messages returns (IoTa's DAO semantics). */
export interface MessageQuery {
  device: { puid: number } | { luid: number };
  /** Exclusive lower bound on the message time: ISO-8601 with offset. */
  start: string;
  /** Inclusive upper bound on the message time: ISO-8601 with offset. */
  end: string;
  /** At most this many rows; undefined means all. */
  limit?: number;
  /** `desc` = newest first (IoTa's only order). */
  order: "asc" | "desc";
}

/** One stored normalised message. */
export interface StoredMessage {
  uid: number;
  /** Message time in UTC truncated to whole seconds, `YYYY-MM-DDTHH:MM:SS+00:00` (IoTa's ts_utc). */
  tsUtc: string;
  /** Arrival time in the same format (IoTa's received_at_utc). */
  receivedAtUtc: string;
  /** The message as stored (`json_msg`). */
  message: JsonObject;
}

type Row = Record<string, unknown>;

const UTC_SECONDS = `YYYY-MM-DD"T"HH24:MI:SS"+00:00"`;

function messagesSql(query: MessageQuery): RawBuilder<Row> {
  const device =
    "puid" in query.device
      ? sql`physical_uid = ${query.device.puid}`
      : sql`logical_uid = ${query.device.luid}`;
  const order = query.order === "asc" ? sql`order by ts, uid` : sql`order by ts desc, uid desc`;
  return sql<Row>`
    select uid, to_char(ts at time zone 'UTC', ${UTC_SECONDS}) as ts_utc,
           to_char(received_at at time zone 'UTC', ${UTC_SECONDS}) as received_at_utc, json_msg
    from physical_timeseries
    where ${device} and ts > ${query.start}::timestamptz and ts <= ${query.end}::timestamptz
    ${order} limit ${query.limit ?? null}`;
}

function messageFromRow(row: Row): StoredMessage {
  return {
    uid: row.uid as number,
    tsUtc: row.ts_utc as string,
    receivedAtUtc: row.received_at_utc as string,
    message: row.json_msg as JsonObject,
  };
}

/**
 * Yields the matching messages in batches of up to `batchSize`, reading them from a server-side
 * cursor on a connection of its own, which is released when the iteration ends, fails or is
 * abandoned (`return()`, e.g. when the HTTP client goes away).
 */
export async function* streamMessages(
  database: Pick<DatabaseHandle, "db" | "pool">,
  query: MessageQuery,
  batchSize = 500,
): AsyncGenerator<StoredMessage[], void, undefined> {
  const compiled = messagesSql(query).compile(database.db);
  const client = await database.pool.connect();
  let failed: Error | undefined;
  const cursor = client.query(new Cursor<Row>(compiled.sql, [...compiled.parameters]));
  try {
    for (;;) {
      const rows = await cursor.read(batchSize);
      if (rows.length === 0) {
        return;
      }
      yield rows.map(messageFromRow);
    }
  } catch (err) {
    failed = err as Error;
    throw err;
  } finally {
    await cursor.close().catch(() => undefined);
    // A connection that failed mid-stream is not given back to other callers.
    client.release(failed);
  }
}

/** A raw message as stored: IoTa's raw_messages columns. */
export interface RawMessage {
  uid: number;
  source_name: string;
  physical_uid: number | null;
  correlation_id: string;
  ts: string;
  json_msg: unknown;
  text_msg: string | null;
}

function rawFromRow(row: Row): RawMessage {
  return {
    uid: row.uid as number,
    source_name: row.source_name as string,
    physical_uid: (row.physical_uid as number | null) ?? null,
    correlation_id: row.correlation_id as string,
    ts: row.ts as string,
    json_msg: row.json_msg ?? null,
    text_msg: (row.text_msg as string | null) ?? null,
  };
}

const RAW_COLUMNS = sql`uid, source_name, physical_uid, correlation_id, ts, json_msg, text_msg`;

/** The raw message with this correlation id (a UUID), or undefined. */
export async function getRawMessage(
  db: Db,
  correlationId: string,
): Promise<RawMessage | undefined> {
  const { rows } = await sql<Row>`
    select ${RAW_COLUMNS} from raw_messages where correlation_id = ${correlationId}::uuid`.execute(
    db,
  );
  return rows[0] && rawFromRow(rows[0]);
}

/** Filters for {@link listRawMessages}; every one is optional. */
export interface RawMessageFilter {
  puid?: number;
  source?: string;
  /** Inclusive lower bound on `ts`, ISO-8601 with offset. */
  start?: string;
  /** Exclusive upper bound on `ts`, ISO-8601 with offset. */
  end?: string;
  /** Only rows with a uid above this (keyset pagination: pass the last uid of the previous page). */
  afterUid?: number;
  limit: number;
}

/** Raw messages matching `filter`, in arrival (uid) order. */
export async function listRawMessages(db: Db, filter: RawMessageFilter): Promise<RawMessage[]> {
  const where: RawBuilder<unknown>[] = [sql`true`];
  if (filter.puid !== undefined) {
    where.push(sql`physical_uid = ${filter.puid}`);
  }
  if (filter.source !== undefined) {
    where.push(sql`source_name = ${filter.source}`);
  }
  if (filter.start !== undefined) {
    where.push(sql`ts >= ${filter.start}::timestamptz`);
  }
  if (filter.end !== undefined) {
    where.push(sql`ts < ${filter.end}::timestamptz`);
  }
  if (filter.afterUid !== undefined) {
    where.push(sql`uid > ${filter.afterUid}`);
  }
  const { rows } = await sql<Row>`
    select ${RAW_COLUMNS} from raw_messages where ${sql.join(where, sql` and `)}
    order by uid limit ${filter.limit}`.execute(db);
  return rows.map(rawFromRow);
}
