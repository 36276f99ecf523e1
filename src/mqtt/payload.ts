import { createHash } from "node:crypto";

import { v5 as uuidv5 } from "uuid";

import { decodeJsonText, type RawCopy } from "../sources/raw-copy.js";

/**
 * What an MQTT payload is, decided before anything can fail on its content: the copy that goes
 * to `raw_messages`, and either the decoded value or the reason it cannot be used. Pure.
 */

/** Namespace of the correlation ids derived for MQTT sources (a fixed, arbitrary UUID). */
export const MQTT_NAMESPACE = "b7d0c3e2-5a41-4f0e-8c6d-2e9f1a7b3c58";

export type { RawCopy };

export type Decoded<T> =
  | { readonly ok: true; readonly value: T; readonly raw: RawCopy }
  | { readonly ok: false; readonly raw: RawCopy; readonly reason: string; readonly error: string };

/**
 * The correlation id of an MQTT message: derived from the source, the topic and the payload
 * bytes, so a redelivery (no PUBACK reached the broker, or the device sent it again) gets the
 * same id and is stored once; `raw_messages.correlation_id` is unique.
 */
export function mqttCorrelationId(source: string, topic: string, payload: Buffer): string {
  const digest = createHash("sha256").update(payload).digest("hex");
  return uuidv5(`${source}\u0000${topic}\u0000${digest}`, MQTT_NAMESPACE);
}

/** A correlation id derived from what identifies a reading (used for Dragino's buffered records). */
export function derivedCorrelationId(...parts: string[]): string {
  return uuidv5(parts.join("\u0000"), MQTT_NAMESPACE);
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

/** PostgreSQL text cannot hold NUL: such characters are stored as U+FFFD. */
function storableText(bytes: Buffer): string {
  return bytes.toString("utf8").replaceAll("\u0000", "\uFFFD");
}

function textOrReason(
  payload: Buffer,
  maxBytes: number,
): { text: string } | { text: string; reason: string; error: string } {
  if (payload.length > maxBytes) {
    return {
      text: storableText(payload.subarray(0, maxBytes)),
      reason: "payload_too_large",
      error: `payload of ${payload.length} bytes exceeds MQTT_MAX_PAYLOAD_BYTES (${maxBytes}); the first ${maxBytes} bytes are kept`,
    };
  }
  if (payload.length === 0) {
    return { text: "", reason: "empty_payload", error: "the payload is empty" };
  }
  try {
    fatalUtf8.decode(payload);
  } catch {
    return {
      text: storableText(payload),
      reason: "invalid_utf8",
      error: "the payload is not valid UTF-8 (kept with U+FFFD replacements)",
    };
  }
  if (payload.includes(0)) {
    return {
      text: storableText(payload),
      reason: "nul_character",
      error: "the payload contains NUL bytes (kept as U+FFFD)",
    };
  }
  return { text: payload.toString("utf8") };
}

/** Decodes a text payload (ICT's CSV); the raw copy is always the received text. */
export function decodeText(payload: Buffer, maxBytes: number): Decoded<string> {
  const t = textOrReason(payload, maxBytes);
  if ("reason" in t) {
    return { ok: false, raw: { text: t.text }, reason: t.reason, error: t.error };
  }
  return { ok: true, value: t.text, raw: { text: t.text } };
}

/**
 * Decodes a JSON payload. The raw copy is the parsed JSON, plus the received text when parsing
 * lost something (integers beyond 2^53, like YDOC's SIM numbers); payloads that are not JSON,
 * or that PostgreSQL's jsonb cannot hold (U+0000 or a lone surrogate in a string), are kept as
 * text (sources/raw-copy.ts).
 */
export function decodeJson(payload: Buffer, maxBytes: number): Decoded<unknown> {
  const t = textOrReason(payload, maxBytes);
  if ("reason" in t) {
    return { ok: false, raw: { text: t.text }, reason: t.reason, error: t.error };
  }
  return decodeJsonText(t.text, "the payload");
}
