import { sql, type RawBuilder } from "kysely";

import type { Db } from "../database.js";
import { withPlainPlans } from "../plain-plans.js";

/**
 * Replays' records (replay_runs, migration 013) and the raw messages they select. A replay takes
 * raw messages in uid order up to the last uid present when it started; its row says how far the
 * replaced rows are stored and how far they are published, so an interrupted replay resumes.
 */

/** Which raw messages: every criterion given must hold (see src/replay/selection.ts). */
export interface RawSelection {
  /** raw_messages.source_name (IoTa's names: ttn, ydoc, dragino_json, wombat). */
  readonly sources?: readonly string[];
  /** Physical devices: raw messages linked to one, or that produced a row of one. */
  readonly puids?: readonly number[];
  /** TTN application ids (`end_device_ids.application_ids.application_id`). */
  readonly apps?: readonly string[];
  /** raw_messages.correlation_id. */
  readonly correlationIds?: readonly string[];
  /** ISO-8601 instant with offset, inclusive, on raw_messages.ts. */
  readonly from?: string;
  /** ISO-8601 instant with offset, exclusive, on raw_messages.ts. */
  readonly to?: string;
}

/** A stored raw message as a replay reads it. */
export interface RawRecord {
  readonly uid: number;
  readonly correlationId: string;
  readonly sourceName: string;
  readonly ts: string;
  /** The parsed copy (jsonb: key order is PostgreSQL's). */
  readonly json: unknown;
  /** The received text, when it was kept (not JSON, or a number JSON.parse would round). */
  readonly text: string | null;
  readonly physicalUid: number | null;
}

export interface ReplayRun {
  readonly id: string;
  readonly lastRawUid: number;
  readonly total: number;
  readonly storedThrough: number;
  readonly publishedThrough: number;
  readonly done: number;
  readonly changed: number;
  readonly failed: number;
  readonly startedAt: string;
}

function where(s: RawSelection): RawBuilder<unknown> {
  const parts: RawBuilder<unknown>[] = [];
  if (s.sources) {
    parts.push(sql`r.source_name = any(${[...s.sources]}::text[])`);
  }
  if (s.apps) {
    parts.push(
      sql`r.json_msg->'end_device_ids'->'application_ids'->>'application_id' = any(${[...s.apps]}::text[])`,
    );
  }
  if (s.correlationIds) {
    parts.push(sql`r.correlation_id = any(${[...s.correlationIds]}::uuid[])`);
  }
  if (s.from !== undefined) {
    parts.push(sql`r.ts >= ${s.from}::timestamptz`);
  }
  if (s.to !== undefined) {
    parts.push(sql`r.ts < ${s.to}::timestamptz`);
  }
  if (s.puids) {
    // A raw message is linked to one device; one about several (YDOC) produced rows of each.
    const puids = [...s.puids];
    parts.push(sql`(r.physical_uid = any(${puids}::int[]) or exists (
      select 1 from physical_timeseries p
      where p.raw_correlation_id = r.correlation_id and p.physical_uid = any(${puids}::int[])))`);
  }
  return parts.length === 0 ? sql`true` : sql.join(parts, sql` and `);
}

/** How many raw messages the selection holds, and the highest uid among them. */
export async function measureSelection(
  db: Db,
  selection: RawSelection,
): Promise<{ count: number; lastUid: number }> {
  const { rows } = await sql<{ n: string; last: number | null }>`
    select count(*) as n, max(r.uid) as last from raw_messages r where ${where(selection)}`.execute(
    db,
  );
  return { count: Number(rows[0]?.n ?? 0), lastUid: rows[0]?.last ?? 0 };
}

/** The next `limit` raw messages of the selection with afterUid < uid <= uptoUid, in uid order. */
export async function selectRawBatch(
  db: Db,
  selection: RawSelection,
  afterUid: number,
  uptoUid: number,
  limit: number,
): Promise<RawRecord[]> {
  const query = sql<{
    uid: number;
    correlation_id: string;
    source_name: string;
    ts: string;
    json_msg: unknown;
    text_msg: string | null;
    physical_uid: number | null;
  }>`
    select r.uid, r.correlation_id::text, r.source_name, r.ts, r.json_msg, r.text_msg,
           r.physical_uid
    from raw_messages r
    where r.uid > ${afterUid} and r.uid <= ${uptoUid} and ${where(selection)}
    order by r.uid
    limit ${limit}`;
  // PostgreSQL cannot estimate how many rows the selection's filters keep, so on a large table
  // it plans this walk along the uid index as a parallel scan, and starting its workers cost
  // ten times the walk itself (60 ms against 6 ms per batch at 1,000,000 raw rows).
  const { rows } = await withPlainPlans(db, (trx) => query.execute(trx));
  return rows.map((r) => ({
    uid: r.uid,
    correlationId: r.correlation_id,
    sourceName: r.source_name,
    ts: r.ts,
    json: r.json_msg,
    text: r.text_msg,
    physicalUid: r.physical_uid,
  }));
}

type RunRow = {
  id: string;
  last_raw_uid: number;
  total: number;
  stored_through: number;
  published_through: number;
  done: number;
  changed: number;
  failed: number;
  started_at: string;
};

function toRun(r: RunRow): ReplayRun {
  return {
    id: r.id,
    lastRawUid: r.last_raw_uid,
    total: r.total,
    storedThrough: r.stored_through,
    publishedThrough: r.published_through,
    done: r.done,
    changed: r.changed,
    failed: r.failed,
    startedAt: r.started_at,
  };
}

const RUN_COLUMNS = sql`id::text, last_raw_uid, total, stored_through, published_through, done,
  changed, failed, started_at`;

/** The unfinished replay of exactly this selection (canonical form), if one was interrupted. */
export async function findUnfinishedRun(db: Db, selection: object): Promise<ReplayRun | undefined> {
  const { rows } = await sql<RunRow>`
    select ${RUN_COLUMNS} from replay_runs
    where finished_at is null and selection = ${JSON.stringify(selection)}::jsonb
    order by started_at desc limit 1`.execute(db);
  return rows[0] && toRun(rows[0]);
}

export async function createRun(
  db: Db,
  run: { id: string; selection: object; lastRawUid: number; total: number },
): Promise<ReplayRun> {
  const { rows } = await sql<RunRow>`
    insert into replay_runs (id, selection, last_raw_uid, total)
    values (${run.id}::uuid, ${JSON.stringify(run.selection)}::jsonb, ${run.lastRawUid}, ${run.total})
    returning ${RUN_COLUMNS}`.execute(db);
  return toRun(rows[0]!);
}

/**
 * Records a batch whose rows are replaced; run it in the transaction that replaced them.
 * `publishedThrough`, when given, also records what RabbitMQ has confirmed of earlier batches
 * (a pipelined replay records it here rather than in a commit of its own).
 */
export async function recordStored(
  db: Db,
  id: string,
  batch: {
    through: number;
    done: number;
    changed: number;
    failed: number;
    publishedThrough?: number;
  },
): Promise<void> {
  await sql`
    update replay_runs set stored_through = ${batch.through}, done = done + ${batch.done},
      changed = changed + ${batch.changed}, failed = failed + ${batch.failed},
      published_through = greatest(published_through, ${batch.publishedThrough ?? 0})
    where id = ${id}::uuid`.execute(db);
}

/** Records that the replaced rows up to `through` are confirmed by RabbitMQ. */
export async function recordPublished(db: Db, id: string, through: number): Promise<void> {
  await sql`update replay_runs set published_through = ${through} where id = ${id}::uuid`.execute(
    db,
  );
}

export async function finishRun(db: Db, id: string): Promise<void> {
  await sql`update replay_runs set finished_at = now() where id = ${id}::uuid`.execute(db);
}

/** Arbitrary constant: the advisory lock one replay at a time holds. */
const REPLAY_LOCK = 4_715_1013;

/**
 * Takes the replay lock for the session of `conn` (one connection: Kysely's `connection()`), or
 * returns false when another replay holds it. A crashed replay's session ends and frees it.
 */
export async function tryLockReplay(conn: Db): Promise<boolean> {
  const { rows } = await sql<{
    ok: boolean;
  }>`select pg_try_advisory_lock(${REPLAY_LOCK}) as ok`.execute(conn);
  return rows[0]?.ok === true;
}

export async function unlockReplay(conn: Db): Promise<void> {
  await sql`select pg_advisory_unlock(${REPLAY_LOCK})`.execute(conn);
}
