import { z } from "zod";

import type { JsonObject } from "./devices.js";

/**
 * What PostgreSQL can store as given, for values from users (API bodies and CLI JSON alike):
 * jsonb cannot hold NUL, and JSON.parse reads 1e400 as Infinity, which jsonb would keep as null.
 */

const MAX_JSON_DEPTH = 64;

/** A lone UTF-16 surrogate: jsonb refuses it, and a text column would get U+FFFD in its place. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string cannot be stored as given, or undefined. */
export function textProblem(value: string): string | undefined {
  if (value.includes("\u0000")) {
    return "contains a NUL character";
  }
  return LONE_SURROGATE.test(value) ? "contains a lone UTF-16 surrogate" : undefined;
}

/**
 * Why a JSON value cannot be stored as given, or undefined: NUL, an infinite number, too deep
 * nesting, or a `__proto__` key (JavaScript objects built from it lose or misread that key).
 */
function jsonProblem(value: unknown, depth = 0): string | undefined {
  if (depth > MAX_JSON_DEPTH) {
    return `is nested more than ${MAX_JSON_DEPTH} levels deep`;
  }
  if (typeof value === "string") {
    return textProblem(value);
  }
  if (typeof value === "number") {
    // JSON.parse reads 1e400 as Infinity, which would be stored as null without a word.
    return Number.isFinite(value) ? undefined : "contains a number too large to store";
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = jsonProblem(item, depth + 1);
      if (problem) {
        return problem;
      }
    }
    return undefined;
  }
  if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      const problem =
        textProblem(key) ??
        (key === "__proto__"
          ? "contains the key __proto__, which is not allowed"
          : jsonProblem(item, depth + 1));
      if (problem) {
        return problem;
      }
    }
  }
  return undefined;
}

/**
 * A JSON object that PostgreSQL's jsonb can hold. Checked before zod copies it: the copy would
 * silently drop an own `__proto__` key.
 */
export const jsonObjectInput = z.preprocess(
  (value, ctx) => {
    const problem =
      typeof value === "object" && value !== null && !Array.isArray(value)
        ? jsonProblem(value)
        : undefined;
    if (problem) {
      ctx.addIssue({ code: "custom", message: problem });
    }
    return value;
  },
  z.record(z.string(), z.unknown()),
) as unknown as z.ZodType<JsonObject, Record<string, unknown>>;

/** Text that PostgreSQL's `text` can hold as given (no NUL, no lone surrogate). */
export const text = z.string().superRefine((v, ctx) => {
  const problem = textProblem(v);
  if (problem !== undefined) {
    ctx.addIssue({ code: "custom", message: problem });
  }
});
