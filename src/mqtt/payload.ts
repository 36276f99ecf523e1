import { createHash } from "node:crypto";

import { v5 as uuidv5 } from "uuid";

import { jsonTooDeep, TOO_DEEP, TOO_DEEP_ERROR } from "../sources/json-depth.js";

/**
 * What an MQTT payload is, decided before anything can fail on its content: the copy that goes
 * to `raw_messages`, and either the decoded value or the reason it cannot be used. Pure.
 */

/** Namespace of the correlation ids derived for MQTT sources (a fixed, arbitrary UUID). */
export const MQTT_NAMESPACE = "b7d0c3e2-5a41-4f0e-8c6d-2e9f1a7b3c58";

/** The raw copy: `json` (parsed) and/or `text` (the received characters). */
export interface RawCopy {
  readonly json?: unknown;
  readonly text?: string;
}

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
 * or that PostgreSQL's jsonb cannot hold (NUL in a string), are kept as text.
 */
export function decodeJson(payload: Buffer, maxBytes: number): Decoded<unknown> {
  const t = textOrReason(payload, maxBytes);
  if ("reason" in t) {
    return { ok: false, raw: { text: t.text }, reason: t.reason, error: t.error };
  }
  if (jsonTooDeep(t.text)) {
    return { ok: false, raw: { text: t.text }, reason: TOO_DEEP, error: TOO_DEEP_ERROR };
  }
  let value: unknown;
  try {
    value = JSON.parse(t.text) as unknown;
  } catch (err) {
    return {
      ok: false,
      raw: { text: t.text },
      reason: "invalid_json",
      error: `payload is not JSON: ${(err as Error).message}`,
    };
  }
  if (containsNul(value)) {
    return {
      ok: false,
      raw: { text: t.text },
      reason: "nul_character",
      error: "a string in the payload contains U+0000, which PostgreSQL cannot store",
    };
  }
  return {
    ok: true,
    value,
    raw: hasLossyNumber(t.text) ? { json: value, text: t.text } : { json: value },
  };
}

function containsNul(value: unknown): boolean {
  if (typeof value === "string") {
    return value.includes("\u0000");
  }
  if (Array.isArray(value)) {
    return value.some(containsNul);
  }
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).some(([k, v]) => k.includes("\u0000") || containsNul(v));
  }
  return false;
}

/** Strings (skipped) or number tokens of a JSON text. */
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/**
 * True when some number in a valid JSON text has more significant digits than a double keeps
 * (more than 15) or overflows it. A false positive only costs a second (text) copy.
 */
export function hasLossyNumber(json: string): boolean {
  for (const [token] of json.matchAll(TOKENS)) {
    if (token.startsWith('"')) {
      continue;
    }
    if (!Number.isFinite(Number(token))) {
      return true;
    }
    const mantissa = token.replace(/^-/, "").replace(/[eE].*$/, "");
    const digits = mantissa.replace(".", "").replace(/^0+/, "");
    const significant = mantissa.includes(".") ? digits : digits.replace(/0+$/, "");
    if (significant.length > 15) {
      return true;
    }
  }
  return false;
}
