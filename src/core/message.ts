import { hash } from "node:crypto";

import { z } from "zod";

import { PermanentError } from "./errors.js";
import { hasOffset, parseInstant } from "./time.js";

/**
 * The normalised message: the narrow waist every source produces and every writer consumes.
 * {@link parseMessage} is the only gate; producers validate before publishing, consumers validate
 * on receipt, and a message that fails is dead-lettered with the reason, never published.
 */

/** Any JSON value in which every number is finite (JSON cannot carry NaN or Infinity anyway). */
type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([
    z.string(),
    z.number().refine(Number.isFinite, "must be a finite number"),
    z.boolean(),
    z.null(),
    z.array(jsonValue),
    z.record(z.string(), jsonValue),
  ]),
);

// One parse per value: this runs for every message and every point on the hot path.
const timestamp = z.string().superRefine((value, ctx) => {
  if (parseInstant(value) !== undefined) {
    return;
  }
  ctx.addIssue({
    code: "custom",
    message: hasOffset(value)
      ? "is not a valid date-time"
      : "must be an ISO-8601 date-time with an offset (Z or ±hh:mm)",
  });
});

export const timeseriesPointSchema = z.looseObject({
  name: z.string().min(1, "must not be empty"),
  value: jsonValue,
  timestamp: timestamp.optional(),
});

export const normalisedMessageSchema = z.looseObject({
  broker_correlation_id: z.uuid(),
  p_uid: z.number().int().positive(),
  l_uid: z.number().int().positive().optional(),
  timestamp,
  timeseries: z.array(timeseriesPointSchema),
});

export type TimeseriesPoint = z.infer<typeof timeseriesPointSchema>;
export type NormalisedMessage = z.infer<typeof normalisedMessageSchema>;
/** A message after the logical mapper: `l_uid` is always there. */
export type LogicalMessage = NormalisedMessage & { l_uid: number };

/**
 * Validates a decoded JSON value; throws {@link PermanentError} `invalid_message` naming every
 * problem. Returns the value itself, not a copy, so key order and unknown keys pass through
 * byte for byte.
 */
export function parseMessage(value: unknown): NormalisedMessage {
  const result = normalisedMessageSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues
      .map((i) => `${i.path.length ? i.path.join(".") : "(message)"}: ${i.message}`)
      .join("; ");
    throw new PermanentError("invalid_message", `not a valid normalised message: ${problems}`);
  }
  return value as NormalisedMessage;
}

/** Decodes bytes as UTF-8 JSON and validates; bad JSON is a {@link PermanentError} too. */
export function decodeMessage(body: Buffer | string): NormalisedMessage {
  let value: unknown;
  try {
    value = JSON.parse(typeof body === "string" ? body : body.toString("utf8"));
  } catch (err) {
    throw new PermanentError("invalid_json", `body is not JSON: ${(err as Error).message}`);
  }
  return parseMessage(value);
}

/**
 * The idempotency key of a normalised message: a UUID-shaped SHA-256 digest of its correlation id,
 * physical device, timestamp and points. Everything derived from one raw message keeps the
 * correlation id, so two messages get the same key exactly when they say the same thing about the
 * same device: a redelivery or a replay. `l_uid` and unknown top-level keys are not part of it, so
 * the key is the same before and after the mapper. Stored as `physical_timeseries.msg_key`
 * (unique) and used by writers to skip deliveries they already made.
 */
export function messageKey(message: NormalisedMessage): string {
  const digest = hash(
    "sha256",
    `${message.broker_correlation_id}\u0000${message.p_uid}\u0000${message.timestamp}\u0000${JSON.stringify(message.timeseries)}`,
  );
  return `${digest.slice(0, 8)}-${digest.slice(8, 12)}-${digest.slice(12, 16)}-${digest.slice(16, 20)}-${digest.slice(20, 32)}`;
}

/**
 * AMQP header naming the raw message (raw_messages.correlation_id) a physical message came from,
 * set by the sources. It differs from the body's broker_correlation_id for a Dragino record, and
 * one raw message can yield several messages (YDOC, Dragino). The mapper stores it as
 * physical_timeseries.raw_correlation_id, which is how a replay finds what a raw message produced.
 */
export const RAW_CORRELATION_HEADER = "x-broker-raw-correlation-id";

/** AMQP header on every message a replay publishes: the replay's id (replay_runs.id). */
export const REPLAY_HEADER = "x-broker-replay";
