import { parseInstant } from "../../core/time.js";

/**
 * Per-device progress of a poller (table `poller_state`, migration 005). It is written only after
 * the data it stands for is durable (raw stored, normalised messages confirmed by RabbitMQ, or
 * rejected content dead-lettered), so it never runs ahead of what was delivered.
 */
export interface Progress {
  /** Hash of the last content processed for the device, or null. */
  readonly lastHash: string | null;
  /** Time of the newest record processed (ISO-8601), or null. */
  readonly lastTs: string | null;
}

export interface ProgressUpdate {
  readonly deviceKey: string;
  /** Replaces the stored hash. */
  readonly lastHash?: string;
  /** Moves the stored time forward only (never back). */
  readonly lastTs?: string;
}

/** One row per key (an upsert may touch a row once): the last hash and the newest time win. */
export function aggregateProgress(updates: readonly ProgressUpdate[]): ProgressUpdate[] {
  const byKey = new Map<string, { deviceKey: string; lastHash?: string; lastTs?: string }>();
  for (const u of updates) {
    const agg = byKey.get(u.deviceKey) ?? { deviceKey: u.deviceKey };
    if (u.lastHash !== undefined) {
      agg.lastHash = u.lastHash;
    }
    if (
      u.lastTs !== undefined &&
      (agg.lastTs === undefined || (parseInstant(u.lastTs) ?? 0) > (parseInstant(agg.lastTs) ?? 0))
    ) {
      agg.lastTs = u.lastTs;
    }
    byKey.set(u.deviceKey, agg);
  }
  return [...byKey.values()];
}

/**
 * Whether content with hash `hash`, whose newest reading is `newest`, was processed already.
 * Normally that is "the hash is the one recorded". A device whose progress came from an IoTa
 * database without a usable hash (see migration 005) has only IoTa's last_seen: content no newer
 * than that counts as seen, so switching from IoTa does not publish old readings again.
 */
export function alreadyProcessed(
  progress: Progress | undefined,
  hash: string,
  newest: string | undefined,
): boolean {
  if (!progress) {
    return false;
  }
  if (progress.lastHash !== null) {
    return progress.lastHash === hash;
  }
  if (progress.lastTs === null || newest === undefined) {
    return false;
  }
  const seen = parseInstant(progress.lastTs);
  const at = parseInstant(newest);
  return seen !== undefined && at !== undefined && at <= seen;
}
