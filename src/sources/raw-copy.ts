import { jsonTooDeep, scanOutsideStrings, TOO_DEEP, TOO_DEEP_ERROR } from "./json-depth.js";

/**
 * What a JSON text received by a source becomes in `raw_messages`, decided before anything can
 * fail on its content, pure. Whatever arrives must be storable: jsonb holds the parsed value when
 * it can hold it exactly; the received text is kept beside it when parsing lost something (an
 * integer beyond 2^53), and instead of it when jsonb cannot hold the value at all (U+0000, a lone
 * UTF-16 surrogate), so the exact text is never lost.
 */

/** The raw copy: `json` (parsed) and/or `text` (the received characters). */
export interface RawCopy {
  readonly json?: unknown;
  readonly text?: string;
}

export type DecodedJson =
  | { readonly ok: true; readonly value: unknown; readonly raw: RawCopy }
  | { readonly ok: false; readonly raw: RawCopy; readonly reason: string; readonly error: string };

/** A lone surrogate: a high one not followed by a low one, or a low one not after a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Escapes that can produce what jsonb refuses; a text without them needs no walk. */
const RISKY_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;

function textProblem(s: string): { reason: string; problem: string } | undefined {
  if (s.includes("\u0000")) {
    return { reason: "nul_character", problem: "contains U+0000, which PostgreSQL cannot store" };
  }
  if (LONE_SURROGATE.test(s)) {
    return {
      reason: "lone_surrogate",
      problem: "contains a lone UTF-16 surrogate, which is not Unicode text",
    };
  }
  return undefined;
}

const at = (path: string): string => path || "the body";

/**
 * Where and why jsonb cannot hold `value` exactly, or undefined. Only strings and keys can fail
 * (JSON.parse never yields NaN; a number it rounds is {@link hasLossyNumber}'s business). The
 * value must be nested at most MAX_JSON_DEPTH deep (checked before parsing).
 */
export function jsonbProblem(
  value: unknown,
  path = "",
): { reason: string; error: string } | undefined {
  if (typeof value === "string") {
    const p = textProblem(value);
    return p && { reason: p.reason, error: `${at(path)} ${p.problem}` };
  }
  if (typeof value !== "object" || value === null) {
    return undefined;
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const p = jsonbProblem(item, `${path}[${i}]`);
      if (p) {
        return p;
      }
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const k = textProblem(key);
    if (k) {
      return { reason: k.reason, error: `a key in ${at(path)} ${k.problem}` };
    }
    const p = jsonbProblem(item, path ? `${path}.${key}` : key);
    if (p) {
      return p;
    }
  }
  return undefined;
}

/**
 * Parses a received JSON text and decides its raw copy. Not JSON, nested too deep, or not
 * storable as jsonb: the text alone is the raw copy, and the reason says why it cannot be used.
 * `what` names the input in errors ("body", "payload").
 */
export function decodeJsonText(text: string, what: string): DecodedJson {
  if (jsonTooDeep(text)) {
    return { ok: false, raw: { text }, reason: TOO_DEEP, error: `${what} is ${TOO_DEEP_ERROR}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    // V8's message quotes the text: not echoed (a 400 body says what is wrong, not the value).
    return { ok: false, raw: { text }, reason: "invalid_json", error: `${what} is not JSON` };
  }
  const problem = RISKY_ESCAPE.test(text) ? jsonbProblem(value) : undefined;
  if (problem) {
    return { ok: false, raw: { text }, reason: problem.reason, error: problem.error };
  }
  return { ok: true, value, raw: hasLossyNumber(text) ? { json: value, text } : { json: value } };
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

/**
 * A JSON text without the whitespace between tokens (strings untouched): two texts of the same
 * JSON written with other spacing give the same result, and unlike a re-serialisation every
 * digit of every number is kept. Works on any text.
 */
export function withoutWhitespace(text: string): string {
  let out = "";
  let from = 0;
  scanOutsideStrings(text, (c, i) => {
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      out += text.slice(from, i);
      from = i + 1;
    }
  });
  return out + text.slice(from);
}
