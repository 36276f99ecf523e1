import { sql, type RawBuilder } from "kysely";

import type { Db } from "../database.js";

/**
 * Held messages: physical_timeseries rows with logical_uid NULL, and the claims a release puts on
 * them (migration 014). A release claims rows by giving them the logical uid of the mapping that
 * holds their timestamp and its release id (one committed statement), publishes them, then marks
 * them released (a second commit). A claim without released_at is a release that was interrupted
 * in between; whoever next holds the device's release lock publishes it again.
 */

/** `hold_reason` of rows stored before migration 014, which recorded none. */
export const UNRECORDED_REASON = "unrecorded";

/** What is held for one physical device. */
export interface HeldSummary {
  readonly puid: number;
  /** Held messages (logical_uid NULL). */
  readonly count: number;
  /** Timestamp of the oldest and newest held message; null when only `releasing` rows exist. */
  readonly oldest: string | null;
  readonly newest: string | null;
  /** Held messages per reason (`unrecorded` for rows stored before reasons were kept). */
  readonly reasons: Record<string, number>;
  /** Messages claimed by a release that was interrupted before it finished; a release resumes them. */
  readonly releasing: number;
}

/** Held messages per physical device (one device, or every one that holds any), uid ascending. */
export async function listHeld(
  db: Db,
  filter: { puid?: number; from?: string } = {},
): Promise<HeldSummary[]> {
  const device = filter.puid === undefined ? sql`true` : sql`physical_uid = ${filter.puid}`;
  const since = filter.from === undefined ? sql`true` : sql`ts >= ${filter.from}::timestamptz`;
  const { rows } = await sql<{
    puid: number;
    count: string;
    oldest: string | null;
    newest: string | null;
    reasons: Record<string, string | number>;
    releasing: string;
  }>`
    with held as (
      select physical_uid, coalesce(hold_reason, ${UNRECORDED_REASON}) as reason, count(*) as n,
             min(ts) as oldest, max(ts) as newest
      from physical_timeseries where logical_uid is null and ${device} and ${since}
      group by 1, 2),
    per_device as (
      select physical_uid, sum(n) as count, min(oldest) as oldest, max(newest) as newest,
             jsonb_object_agg(reason, n) as reasons
      from held group by 1),
    releasing as (
      select physical_uid, count(*) as n from physical_timeseries
      where release_id is not null and released_at is null and ${device}
      group by 1)
    select physical_uid as puid, coalesce(d.count, 0) as count, d.oldest, d.newest,
           coalesce(d.reasons, '{}'::jsonb) as reasons, coalesce(r.n, 0) as releasing
    from per_device d full join releasing r using (physical_uid)
    order by 1`.execute(db);
  return rows.map((r) => ({
    puid: r.puid,
    count: Number(r.count),
    oldest: r.oldest,
    newest: r.newest,
    reasons: Object.fromEntries(Object.entries(r.reasons).map(([k, v]) => [k, Number(v)])),
    releasing: Number(r.releasing),
  }));
}

/** Which held rows of one device a count or a release takes. */
export interface HeldSelection {
  readonly puid: number;
  /** Only messages stamped at or after this instant (ISO-8601). */
  readonly from?: string;
  /** Only messages stamped before this instant (ISO-8601). */
  readonly to?: string;
  /** Only these hold reasons; `unrecorded` selects rows stored before reasons were kept. */
  readonly reasons?: readonly string[];
}

function selectionCondition(s: HeldSelection): RawBuilder<unknown> {
  const parts = [sql`pt.physical_uid = ${s.puid}`, sql`pt.logical_uid is null`];
  if (s.from !== undefined) {
    parts.push(sql`pt.ts >= ${s.from}::timestamptz`);
  }
  if (s.to !== undefined) {
    parts.push(sql`pt.ts < ${s.to}::timestamptz`);
  }
  if (s.reasons !== undefined) {
    const named = s.reasons.filter((r) => r !== UNRECORDED_REASON);
    const unrecorded = s.reasons.includes(UNRECORDED_REASON);
    parts.push(
      sql`(pt.hold_reason = any(${named}::text[]) or (${unrecorded} and pt.hold_reason is null))`,
    );
  }
  return sql.join(parts, sql` and `);
}

/** Held messages of the selection, per reason. */
export async function countHeld(db: Db, selection: HeldSelection): Promise<Record<string, number>> {
  const { rows } = await sql<{ reason: string | null; n: string }>`
    select pt.hold_reason as reason, count(*) as n from physical_timeseries pt
    where ${selectionCondition(selection)} group by pt.hold_reason`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.reason ?? UNRECORDED_REASON, Number(r.n)]));
}

/** Every held message, per reason (the partial index on held rows serves it). */
export async function countAllHeld(db: Db): Promise<Record<string, number>> {
  const { rows } = await sql<{ reason: string | null; n: string }>`
    select hold_reason as reason, count(*) as n from physical_timeseries
    where logical_uid is null group by hold_reason`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.reason ?? UNRECORDED_REASON, Number(r.n)]));
}

/** One claimed row, ready to publish. */
export interface ClaimedMessage {
  readonly uid: number;
  readonly logicalUid: number;
  /** The stored message (jsonb rendered as text: PostgreSQL's key order, not the producer's). */
  readonly json: string;
  /** The stored timestamp, as PostgreSQL prints it. */
  readonly ts: string;
  readonly msgKey: string | null;
  readonly holdReason: string | null;
}

/** Arbitrary constant: the first half of every release lock's key (the second is the device uid). */
const RELEASE_LOCK_CLASS = 4_715_1014;

/**
 * Waits for and takes the session-level release lock of a device. `db` must be one connection
 * (Kysely's `connection()`): the lock belongs to it until {@link unlockRelease} or until the
 * session ends (a crashed release frees it).
 */
export async function lockRelease(db: Db, puid: number): Promise<void> {
  await sql`select pg_advisory_lock(${RELEASE_LOCK_CLASS}, ${puid})`.execute(db);
}

export async function unlockRelease(db: Db, puid: number): Promise<void> {
  await sql`select pg_advisory_unlock(${RELEASE_LOCK_CLASS}, ${puid})`.execute(db);
}

type ClaimRow = {
  uid: number;
  logical_uid: number;
  json: string;
  ts: string;
  msg_key: string | null;
  hold_reason: string | null;
  n: string;
};

/**
 * Sets the release id, and the logical uid when `picked` chooses one, on the rows `picked`
 * selects (uid, logical_uid or NULL, n = time rank), and returns them in time order.
 */
async function claim(
  db: Db,
  picked: RawBuilder<unknown>,
  releaseId: string,
): Promise<ClaimedMessage[]> {
  const { rows } = await sql<ClaimRow>`
    with picked as (${picked})
    update physical_timeseries pt
    set logical_uid = coalesce(picked.logical_uid, pt.logical_uid), release_id = ${releaseId}::uuid
    from picked where pt.uid = picked.uid
    returning pt.uid, pt.logical_uid, pt.json_msg::text as json, pt.ts, pt.msg_key,
              pt.hold_reason, picked.n`.execute(db);
  return [...rows]
    .sort((a, b) => Number(a.n) - Number(b.n))
    .map((r) => ({
      uid: r.uid,
      logicalUid: r.logical_uid,
      json: r.json,
      ts: r.ts,
      msgKey: r.msg_key,
      holdReason: r.hold_reason,
    }));
}

/**
 * Claims for `releaseId` up to `limit` messages of the device that an interrupted release had
 * claimed, oldest first. Only safe under the device's release lock: then no other release is
 * between its claim and its mark. One statement, committed on its own.
 */
export function reclaimInterrupted(
  db: Db,
  puid: number,
  releaseId: string,
  limit: number,
): Promise<ClaimedMessage[]> {
  return claim(
    db,
    sql`select uid, null::int as logical_uid, row_number() over (order by ts, uid) as n
        from physical_timeseries
        where physical_uid = ${puid} and release_id is not null and released_at is null
        order by ts, uid limit ${limit}`,
    releaseId,
  );
}

/**
 * Claims for `releaseId` up to `limit` held messages of the selection, oldest first, each for the
 * logical device of the mapping whose [start_time, end_time) holds its timestamp. A message whose
 * mapping is current and paused stays held; one whose mapping ended while paused is released (the
 * operator asked, and no resume can reach an ended mapping). Messages no mapping holds stay held.
 * Only under the device's release lock. One statement, committed on its own.
 */
export function claimHeld(
  db: Db,
  selection: HeldSelection,
  releaseId: string,
  limit: number,
): Promise<ClaimedMessage[]> {
  return claim(
    db,
    sql`select pt.uid, m.logical_uid, row_number() over (order by pt.ts, pt.uid) as n
        from physical_timeseries pt
        join physical_logical_map m on m.physical_uid = pt.physical_uid
          and pt.ts >= m.start_time and (m.end_time is null or pt.ts < m.end_time)
        where ${selectionCondition(selection)} and (m.is_active or m.end_time is not null)
        order by pt.ts, pt.uid limit ${limit}`,
    releaseId,
  );
}

/**
 * Marks claimed messages released once RabbitMQ has confirmed them; the stored copy gets the
 * l_uid it was published with, as a forwarded message's does.
 */
export async function markReleased(
  db: Db,
  releaseId: string,
  uids: readonly number[],
): Promise<void> {
  if (uids.length === 0) {
    return;
  }
  await sql`
    update physical_timeseries
    set released_at = now(), json_msg = json_msg || jsonb_build_object('l_uid', logical_uid)
    where uid = any(${[...uids]}::int[]) and release_id = ${releaseId}::uuid
      and released_at is null`.execute(db);
}

/** Returns claimed messages to held, with `reason`: a release decided not to publish them. */
export async function unclaim(
  db: Db,
  releaseId: string,
  uids: readonly number[],
  reason: string,
): Promise<void> {
  if (uids.length === 0) {
    return;
  }
  await sql`
    update physical_timeseries
    set logical_uid = null, release_id = null, hold_reason = ${reason}
    where uid = any(${[...uids]}::int[]) and release_id = ${releaseId}::uuid
      and released_at is null`.execute(db);
}
