import { z } from "zod";

import type { JsonObject } from "./devices.js";

/**
 * What PostgreSQL can store as given, for values from users (API bodies and CLI JSON alike):
 * jsonb cannot hold NUL, and JSON.parse reads 1e400 as Infinity, which jsonb would keep as null.
 */

const MAX_JSON_DEPTH = 64;

/** Why a JSON value cannot be stored, or undefined: NUL, an infinite number, too deep nesting. */
function jsonProblem(value: unknown, depth = 0): string | undefined {
  if (depth > MAX_JSON_DEPTH) {
    return `is nested more than ${MAX_JSON_DEPTH} levels deep`;
  }
  if (typeof value === "string") {
    return value.includes("\u0000") ? "contains a NUL character" : undefined;
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
      const problem = key.includes("\u0000")
        ? "contains a NUL character"
        : jsonProblem(item, depth + 1);
      if (problem) {
        return problem;
      }
    }
  }
  return undefined;
}

/** A JSON object that PostgreSQL's jsonb can hold. */
export const jsonObjectInput = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  const problem = jsonProblem(value);
  if (problem) {
    ctx.addIssue({ code: "custom", message: problem });
  }
}) as z.ZodType<JsonObject, Record<string, unknown>>;

/** Text that PostgreSQL's `text` can hold. */
export const text = z.string().refine((v) => !v.includes("\u0000"), "contains a NUL character");
