import { createHash } from "node:crypto";

import { v5 as uuidv5 } from "uuid";

/** Namespace of the correlation ids pollers derive from content (a fixed, arbitrary UUID). */
const POLLER_NAMESPACE = "b1f7a3e2-5c4d-4e8f-9a6b-3d2c1e0f9a87";

/**
 * BLAKE2b-512 hex digest of a text's UTF-8 bytes: IoTa's change-detection hash (Python's
 * `hashlib.blake2b(text.encode()).hexdigest()`), so GreenBrain hashes carried over from an IoTa
 * database still match.
 */
export function contentHash(text: string): string {
  return createHash("blake2b512").update(text, "utf8").digest("hex");
}

/**
 * The broker_correlation_id of polled data, derived from what it is: the same response (or
 * record) polled again gets the same id, so the raw store keeps one copy and the mapper's msg_key
 * stores one row, whatever the poller repeats after a crash.
 */
export function pollCorrelationId(source: string, deviceKey: string, content: string): string {
  return uuidv5([source, deviceKey, content].join("\u0000"), POLLER_NAMESPACE);
}
