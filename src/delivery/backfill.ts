import { PermanentError } from "../core/errors.js";
import { messageKey, type LogicalMessage } from "../core/message.js";
import { parseInstantMicros } from "../core/time.js";
import type { Db } from "../db/database.js";
import {
  countBackfill,
  finishBackfill,
  getBackfillProgress,
  queueBackfillBatch,
  readBackfill,
  resetBackfillProgress,
  type BackfillSelection,
} from "../db/repositories/backfill.js";
import type { QueuedMessageInput } from "../db/repositories/delivery-queue.js";
import { releasedMessage } from "../mapper/release.js";

/**
 * `broker backfill <writer>`: sends stored logical messages to ONE writer, so a destination added
 * later receives the history without the others receiving anything. The messages go straight
 * into that writer's rows of `delivery_queue` (never through the logical fanout exchange, which
 * would hand every writer a copy), exactly as its intake would have kept them: the same body the
 * mapper published (stored copy, IoTa's key order, `l_uid` last) and the same `msg_key`. A
 * message the writer still holds or remembers delivering is skipped; the position is kept in
 * `backfill_progress`, so an interrupted run resumes without sending anything twice.
 */

/** The writers a backfill may target (their `delivery_queue.writer` names). */
export const BACKFILL_WRITERS = ["frred", "ubidots", "influxdb"] as const;

export interface BackfillRequest extends BackfillSelection {
  /** The writer's name (`delivery_queue.writer`). */
  readonly writer: string;
  /** Start again from the beginning even if an earlier run finished or stopped part-way. */
  readonly restart?: boolean;
  /** Messages per batch (one read, one insert, one position update). Default 1 000. */
  readonly batchSize?: number;
  /** Called after each batch with done/total of this run, for progress output. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Checked between batches: when aborted, the run stops after the batch in hand. */
  readonly signal?: AbortSignal;
}

export interface BackfillSummary {
  readonly writer: string;
  readonly from: string;
  readonly to: string;
  readonly luids: readonly number[];
  /** Stored messages this run went through. */
  readonly selected: number;
  /** Of those, messages new to the writer's queue (the rest it held or remembered already). */
  readonly queued: number;
  /** Stored messages that are no longer valid messages: not sent, counted here. */
  readonly invalid: number;
  /** Whether this run continued an interrupted one. */
  readonly resumed: boolean;
  /** Whether the selection is exhausted (false after an abort). */
  readonly finished: boolean;
}

/**
 * The canonical text of a selection: the same instants written differently, or the same devices
 * in another order, name the same backfill.
 */
export function selectionKey(selection: BackfillSelection): string {
  const micros = (t: string): string => {
    const m = parseInstantMicros(t);
    if (m === undefined) {
      throw new PermanentError(
        "invalid_time",
        `${JSON.stringify(t)} is not ISO-8601 with an offset`,
      );
    }
    return m.toString();
  };
  const luids = [...new Set(selection.luids ?? [])].sort((a, b) => a - b);
  return JSON.stringify({ from: micros(selection.from), to: micros(selection.to), luids });
}

/** The message as the mapper published it, or undefined when the stored copy is not valid. */
function storedMessage(json: string, logicalUid: number): LogicalMessage | undefined {
  try {
    return releasedMessage(JSON.parse(json) as Record<string, unknown>, logicalUid);
  } catch (err) {
    if (err instanceof PermanentError) {
      return undefined;
    }
    throw err;
  }
}

/** Queues the selection's stored messages for the writer; see the module comment. */
export async function backfill(db: Db, request: BackfillRequest): Promise<BackfillSummary> {
  const key = selectionKey(request);
  const luids = [...new Set(request.luids ?? [])].sort((a, b) => a - b);
  const base = { writer: request.writer, from: request.from, to: request.to, luids };
  if (request.restart) {
    await resetBackfillProgress(db, request.writer, key);
  }
  const earlier = await getBackfillProgress(db, request.writer, key);
  if (earlier?.finishedAt !== undefined) {
    return { ...base, selected: 0, queued: 0, invalid: 0, resumed: true, finished: true };
  }
  let position = earlier?.position;
  const total = await countBackfill(db, request, position);
  const batchSize = request.batchSize ?? 1_000;
  let selected = 0;
  let queued = 0;
  let invalid = 0;
  request.onProgress?.(0, total);
  for (;;) {
    if (request.signal?.aborted) {
      return {
        ...base,
        selected,
        queued,
        invalid,
        resumed: earlier !== undefined,
        finished: false,
      };
    }
    const rows = await readBackfill(db, request, position, batchSize);
    if (rows.length === 0) {
      break;
    }
    const items: QueuedMessageInput[] = [];
    for (const row of rows) {
      const message = storedMessage(row.json, row.logicalUid);
      if (message === undefined) {
        invalid++;
        continue;
      }
      items.push({
        msgKey: messageKey(message),
        lUid: row.logicalUid,
        pUid: message.p_uid,
        correlationId: message.broker_correlation_id,
        body: JSON.stringify(message),
      });
    }
    const last = rows[rows.length - 1]!;
    position = { ts: last.ts, uid: last.uid };
    queued += await queueBackfillBatch(db, request.writer, key, items, position);
    selected += rows.length;
    request.onProgress?.(Math.min(selected, total), Math.max(total, selected));
  }
  await finishBackfill(db, request.writer, key);
  return { ...base, selected, queued, invalid, resumed: earlier !== undefined, finished: true };
}
