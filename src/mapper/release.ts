import { randomUUID } from "node:crypto";

import type { OutgoingMessage } from "../bus/publisher.js";
import { PermanentError } from "../core/errors.js";
import { messageKey, parseMessage, type NormalisedMessage } from "../core/message.js";
import type { Db } from "../db/database.js";
import {
  claimHeld,
  countHeld,
  lockRelease,
  markReleased,
  reclaimInterrupted,
  unclaim,
  unlockRelease,
  UNRECORDED_REASON,
  type ClaimedMessage,
  type HeldSelection,
} from "../db/repositories/held-messages.js";
import { recordLogicalSightings } from "../db/repositories/routes.js";
import { LTS_ROUTING_KEY, newestPerLogicalDevice, type HoldReason } from "./route.js";

/**
 * Releasing held messages: each goes to the logical device of the mapping whose period holds its
 * timestamp, on the logical exchange, in timestamp order per device, with the release marked in
 * AMQP headers (the body stays the normalised message with l_uid, as the mapper sends it).
 *
 * Exactly once: per round of up to `chunkSize` messages, under the device's release lock (a
 * PostgreSQL session advisory lock, so two releases of one device take turns and a crashed one
 * frees it), a release (1) claims rows: logical_uid and its release id, committed; (2) publishes
 * them and waits for RabbitMQ's confirms; (3) marks them released_at, committed, and unlocks. A
 * message is marked released once only (step 3 commits once per row, under the lock). A release
 * that dies between (1) and (3) leaves claimed rows; the next release of the device, under the
 * lock, publishes them again first (header `x-broker-release-retry: true`) and marks them. So a
 * message is never lost, and is published twice only when a release died after RabbitMQ took it
 * and before the mark committed: then both copies carry the same message_id (msg_key), correlation
 * id and body, and writers, idempotent by msg_key, store it once.
 */

/** Header naming the release (a UUID) on every released message. */
export const RELEASE_HEADER = "x-broker-release";
/** Header giving why the message had been held. */
export const HOLD_REASON_HEADER = "x-broker-hold-reason";
/** Header set on a message published again after an interrupted release (it may be a repeat). */
export const RELEASE_RETRY_HEADER = "x-broker-release-retry";

/** Hold reason of a stored message a release found invalid (it is not published). */
export const INVALID_MESSAGE_REASON = "invalid_message";

/** Reasons a release takes when none are named: clock-held messages wait for an explicit request. */
export const DEFAULT_RELEASE_REASONS: readonly string[] = [
  "no_mapping",
  "paused",
  UNRECORDED_REASON,
] satisfies readonly (HoldReason | typeof UNRECORDED_REASON)[];

/** Publishes to the logical exchange, resolving on RabbitMQ's confirms. */
export interface ReleasePublisher {
  publish(messages: readonly OutgoingMessage[]): Promise<void>;
}

export interface ReleaseRequest extends HeldSelection {
  /** Reasons to release; default {@link DEFAULT_RELEASE_REASONS}. */
  readonly reasons?: readonly string[];
}

export interface ReleaseSummary {
  readonly puid: number;
  /** This release's id, as in its messages' `x-broker-release` header. */
  readonly release_id: string;
  /** Messages published and marked released (including those resumed). */
  readonly released: number;
  /** Of those, messages an interrupted release had claimed, published again. */
  readonly resumed: number;
  /** Messages of the selection still held (no mapping holds them, or it is current and paused). */
  readonly still_held: number;
}

export interface ReleaseOptions {
  /** Messages per round (one claim, one confirmed publish, one mark). Default 500. */
  readonly chunkSize?: number;
  /** Called after each round with the running total, for progress output. */
  readonly onProgress?: (released: number) => void;
  /** Epoch ms regarded as now (caps last_seen). Default Date.now(). */
  readonly now?: () => number;
}

/** IoTa's key order for a normalised message, with l_uid last (as the mapper adds it). */
const LEADING_KEYS = ["broker_correlation_id", "p_uid", "timestamp", "timeseries"] as const;

/** The message as it is published: the stored copy (jsonb loses key order) with l_uid last. */
export function releasedMessage(
  stored: Record<string, unknown>,
  logicalUid: number,
): NormalisedMessage & { l_uid: number } {
  const out: Record<string, unknown> = {};
  for (const key of LEADING_KEYS) {
    if (key in stored) {
      out[key] = stored[key];
    }
  }
  for (const [key, value] of Object.entries(stored)) {
    if (!(key in out) && key !== "l_uid") {
      out[key] = value;
    }
  }
  out.l_uid = logicalUid;
  return parseMessage(out) as NormalisedMessage & { l_uid: number };
}

function outgoing(
  row: ClaimedMessage,
  message: NormalisedMessage,
  releaseId: string,
  retry: boolean,
): OutgoingMessage {
  return {
    body: Buffer.from(JSON.stringify(message), "utf8"),
    // Rows stored before msg_key existed get it computed, as the mapper would have.
    messageId: row.msgKey ?? messageKey(message),
    correlationId: message.broker_correlation_id,
    routingKey: LTS_ROUTING_KEY,
    headers: {
      [RELEASE_HEADER]: releaseId,
      [HOLD_REASON_HEADER]: row.holdReason ?? UNRECORDED_REASON,
      ...(retry ? { [RELEASE_RETRY_HEADER]: true } : {}),
    },
  };
}

/** The claimed row's message as published, or undefined when the stored copy fails the gate. */
function readClaimed(row: ClaimedMessage): (NormalisedMessage & { l_uid: number }) | undefined {
  try {
    return releasedMessage(JSON.parse(row.json) as Record<string, unknown>, row.logicalUid);
  } catch (err) {
    if (err instanceof PermanentError) {
      return undefined;
    }
    throw err;
  }
}

/**
 * Publishes and marks one round of claimed rows; returns how many were released. A stored copy
 * that no longer passes the message gate (rows written by IoTa before it) is not published: it
 * goes back to held with reason `invalid_message`, where a default release does not take it.
 */
async function publishRound(
  conn: Db,
  publisher: ReleasePublisher,
  rows: readonly ClaimedMessage[],
  releaseId: string,
  retry: boolean,
  now: number,
): Promise<number> {
  const valid: { row: ClaimedMessage; message: NormalisedMessage & { l_uid: number } }[] = [];
  const invalid: number[] = [];
  for (const row of rows) {
    const message = readClaimed(row);
    if (message) {
      valid.push({ row, message });
    } else {
      invalid.push(row.uid);
    }
  }
  await publisher.publish(valid.map((v) => outgoing(v.row, v.message, releaseId, retry)));
  const sightings = newestPerLogicalDevice(
    valid.map(({ row, message }) => {
      const at = Date.parse(row.ts);
      const capped = at > now;
      return {
        kind: "forward" as const,
        stored: message,
        logicalUid: row.logicalUid,
        lastSeen: capped ? new Date(now).toISOString() : row.ts,
        lastSeenMs: capped ? now : at,
      };
    }),
  );
  await conn.transaction().execute(async (trx) => {
    await markReleased(
      trx,
      releaseId,
      valid.map((v) => v.row.uid),
    );
    await unclaim(trx, releaseId, invalid, INVALID_MESSAGE_REASON);
    await recordLogicalSightings(trx, sightings);
  });
  return valid.length;
}

/**
 * Releases the held messages of one physical device (see the guarantee above). Interrupted
 * claims of the device are completed first, whatever the selection. Throws what the database or
 * RabbitMQ throws; running it again continues where it stopped.
 */
export async function releaseHeld(
  db: Db,
  publisher: ReleasePublisher,
  request: ReleaseRequest,
  options: ReleaseOptions = {},
): Promise<ReleaseSummary> {
  const chunkSize = options.chunkSize ?? 500;
  const now = options.now ?? Date.now;
  const selection: HeldSelection = {
    ...request,
    // Invalid stored copies would only fail again (and be claimed again, for ever).
    reasons: (request.reasons ?? DEFAULT_RELEASE_REASONS).filter(
      (r) => r !== INVALID_MESSAGE_REASON,
    ),
  };
  const releaseId = randomUUID();
  let released = 0;
  let resumed = 0;
  await db.connection().execute(async (conn) => {
    for (;;) {
      await lockRelease(conn, request.puid);
      let done = false;
      try {
        const interrupted = await reclaimInterrupted(conn, request.puid, releaseId, chunkSize);
        const rows =
          interrupted.length > 0
            ? interrupted
            : await claimHeld(conn, selection, releaseId, chunkSize);
        if (rows.length === 0) {
          done = true;
        } else {
          const sent = await publishRound(
            conn,
            publisher,
            rows,
            releaseId,
            interrupted.length > 0,
            now(),
          );
          released += sent;
          resumed += interrupted.length > 0 ? sent : 0;
        }
      } finally {
        // A broken connection has already dropped the lock with its session.
        await unlockRelease(conn, request.puid).catch(() => undefined);
      }
      if (done) {
        break;
      }
      options.onProgress?.(released);
    }
  });
  const left = await countHeld(db, selection);
  const stillHeld = Object.values(left).reduce((a, b) => a + b, 0);
  return { puid: request.puid, release_id: releaseId, released, resumed, still_held: stillHeld };
}
