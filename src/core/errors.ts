/**
 * The two failure behaviours every component knows about. Each error class means exactly one
 * behaviour; {@link classifyError} is the one place that maps an arbitrary error to it.
 *
 * - {@link TransientError}: infrastructure or a destination is unavailable. Keep the message,
 *   retry with backoff, answer the sender with something retryable (HTTP 503, no ack).
 * - {@link PermanentError}: the content is bad and will never succeed. Dead-letter it with its
 *   reason (or answer HTTP 4xx), keep the raw copy, carry on with the next message.
 */
export class TransientError extends Error {
  override readonly name = "TransientError";
}

export class PermanentError extends Error {
  override readonly name = "PermanentError";
  /** Short machine-readable reason, e.g. `invalid_message`, `unknown_device`. */
  readonly reason: string;
  constructor(reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

/** Turns anything thrown into an Error without losing what it was. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) {
    return thrown;
  }
  return new Error(typeof thrown === "string" ? thrown : JSON.stringify(thrown));
}

export type Classification =
  | { kind: "transient"; error: Error }
  | { kind: "permanent"; error: Error; reason: string }
  | { kind: "unknown"; error: Error };

/** Node and libpq error codes that mean "the other side is unavailable right now". */
const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ENOSPC",
  "EROFS",
  "EACCES",
  "EPERM",
  "ENOENT",
  "EIO",
  "EMFILE",
  "ENFILE",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "40001", // serialization_failure
  "40P01", // deadlock_detected
]);

/** PostgreSQL SQLSTATE classes that are about the connection or server resources, not content. */
const TRANSIENT_SQLSTATE_CLASSES = ["08", "53", "57", "58"];

/** PostgreSQL SQLSTATE classes that mean the data itself is wrong. */
const PERMANENT_SQLSTATE_CLASSES = ["22", "23"];

function errorCode(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Decides what a failure means. `unknown` is returned for errors that carry no evidence either
 * way (a bug, or a driver error without a code); callers resolve it by checking whether their
 * infrastructure is healthy: if it is not, the failure is transient.
 */
export function classifyError(thrown: unknown): Classification {
  const error = coerceError(thrown);
  if (error instanceof TransientError) {
    return { kind: "transient", error };
  }
  if (error instanceof PermanentError) {
    return { kind: "permanent", error, reason: error.reason };
  }
  const code = errorCode(error);
  if (code !== undefined) {
    if (TRANSIENT_CODES.has(code)) {
      return { kind: "transient", error };
    }
    if (/^[0-9A-Z]{5}$/.test(code)) {
      const cls = code.slice(0, 2);
      if (TRANSIENT_SQLSTATE_CLASSES.includes(cls)) {
        return { kind: "transient", error };
      }
      if (PERMANENT_SQLSTATE_CLASSES.includes(cls)) {
        return { kind: "permanent", error, reason: `database_rejected_${code}` };
      }
    }
  }
  return { kind: "unknown", error };
}
