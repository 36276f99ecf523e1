import { MAX_JSON_DEPTH, scanOutsideStrings, TOO_DEEP, TOO_DEEP_ERROR } from "./json-depth.js";

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
  const { tooDeep, longNumber } = inspect(text);
  if (tooDeep) {
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
  const lossy = longNumber && hasLossyNumber(text);
  return { ok: true, value, raw: lossy ? { json: value, text } : { json: value } };
}

/**
 * One pass over a JSON text, strings skipped, on the webhook's hot path: whether it nests deeper
 * than MAX_JSON_DEPTH, and whether some number could be one a double rounds (16 digits or dots in
 * a row, or a 3-digit exponent; {@link hasLossyNumber} decides).
 */
function inspect(text: string): { tooDeep: boolean; longNumber: boolean } {
  let depth = 0;
  let run = 0;
  let longNumber = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: skip to its closing quote
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 0x5c) {
          i++;
        } else if (s === 0x22) {
          break;
        }
      }
      run = 0;
    } else if ((c >= 0x30 && c <= 0x39) || c === 0x2e) {
      if (++run >= 16) {
        longNumber = true;
      }
    } else {
      run = 0;
      if (c === 0x5b || c === 0x7b) {
        if (++depth > MAX_JSON_DEPTH) {
          return { tooDeep: true, longNumber };
        }
      } else if (c === 0x5d || c === 0x7d) {
        depth--;
      } else if ((c === 0x65 || c === 0x45) && /^[+-]?\d{3}/.test(text.slice(i + 1, i + 5))) {
        longNumber = true;
      }
    }
  }
  return { tooDeep: false, longNumber };
}

/**
 * True when jsonb cannot hold the parsed `value` of `text` exactly as JavaScript sees it
 * (U+0000 or a lone surrogate in a string or key). Cheap when the text has no such escape.
 */
export function jsonbRefuses(text: string, value: unknown): boolean {
  return RISKY_ESCAPE.test(text) && jsonbProblem(value) !== undefined;
}

/** What any number a double cannot hold exactly must contain (false positives are checked). */
const MAYBE_LOSSY = /\d[\d.]{15}|[eE][+-]?\d{3}/;

/** Strings (skipped) or number tokens of a JSON text. */
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/**
 * True when some number in a valid JSON text has more significant digits than a double keeps
 * (more than 15) or overflows it. A false positive only costs a second (text) copy.
 */
export function hasLossyNumber(json: string): boolean {
  // Fast path: a rounded number needs 16 digits in a row (a dot among them) or a 3-digit
  // exponent; most bodies have neither, and the token walk below is the costly part.
  if (!MAYBE_LOSSY.test(json)) {
    return false;
  }
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
