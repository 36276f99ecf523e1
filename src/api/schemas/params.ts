import { z } from "zod";

import { assumeServerZone } from "../../core/datetime-input.js";
import { parseInstant } from "../../core/time.js";
import { text } from "../../core/storable.js";

/**
 * Building blocks for path and query parameters. Values arrive as text; these parse them the way
 * FastAPI did for IoTa (integers, pydantic's boolean words) and document them as their real
 * types in the OpenAPI document.
 */

const INT4_MAX = 2_147_483_647;

/**
 * OpenAPI for an integer parameter that zod reads as text: the rendered schema is replaced (the
 * text pattern used to parse it says nothing useful to a client).
 */
export function integerDoc(extra: Record<string, number> = {}) {
  return {
    override: ({ jsonSchema }: { jsonSchema: Record<string, unknown> }) => {
      for (const key of Object.keys(jsonSchema)) {
        if (key !== "description") {
          delete jsonSchema[key];
        }
      }
      Object.assign(jsonSchema, { type: "integer", format: "int32", ...extra });
    },
  };
}

/** A PostgreSQL `integer` given as text, e.g. a device uid. */
export const intParam = z
  .string()
  .trim()
  .regex(/^[+-]?\d{1,12}$/, "value is not a valid integer")
  .transform(Number)
  .pipe(
    z
      .number()
      .int()
      .min(-INT4_MAX - 1, "value is out of range")
      .max(INT4_MAX, "value is out of range"),
  )
  .meta(integerDoc());

/** A non-negative integer given as text (offsets). */
export const offsetParam = intParam
  .pipe(z.number().min(0, "must not be negative"))
  .meta(integerDoc({ minimum: 0 }));

/** A page size given as text. */
export const limitParam = intParam
  .pipe(z.number().min(1, "must be at least 1").max(100_000, "must be at most 100000"))
  .meta(integerDoc({ minimum: 1, maximum: 100_000 }));

const TRUE_WORDS = new Set(["true", "1", "yes", "on", "t", "y"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off", "f", "n"]);

/** A boolean given as text, in pydantic v1's words (true/false, 1/0, yes/no, on/off, t/f, y/n). */
export const requiredBoolParam = z
  .preprocess((v) => {
    if (typeof v !== "string") {
      return v;
    }
    const word = v.trim().toLowerCase();
    return TRUE_WORDS.has(word) ? true : FALSE_WORDS.has(word) ? false : v;
  }, z.boolean("value could not be parsed to a boolean"))
  .meta({ override: { type: "boolean" } });

/** An optional boolean given as text; undefined when absent. */
export const optionalBoolParam = requiredBoolParam.optional();

/** An optional boolean given as text, `defaultValue` when absent. */
export function boolParam(defaultValue: boolean) {
  return requiredBoolParam
    .optional()
    .transform((v) => v ?? defaultValue)
    .meta({ override: { type: "boolean", default: defaultValue } });
}

/**
 * An ISO-8601 date-time, given as text. A `+` of the offset that arrived as a space (an
 * unencoded `+` in a query string) is put back; one without an offset is in the server's zone.
 */
export const instantParam = z
  .string()
  .trim()
  .transform((v) => v.replace(/(\d{2}:\d{2}:\d{2}(?:[.,]\d+)?) (\d{2}(?::?\d{2})?)$/, "$1+$2"))
  .transform(assumeServerZone)
  .refine((v) => parseInstant(v) !== undefined, "must be an ISO-8601 date-time")
  .meta({ override: { type: "string", format: "date-time" } });

/** `{uid}` in a path. */
export const uidPath = z.object({ uid: intParam });

/** Opt-in paging of a list: without `limit` the whole list, as IoTa. */
export const pageQuery = {
  limit: limitParam.optional().meta({ description: "Return at most this many items (extension)." }),
  offset: offsetParam
    .optional()
    .meta({ description: "Skip this many items first (extension). Default 0." }),
};

/** Free text given as a query parameter, as PostgreSQL's text can hold it. */
export const textParam = text;

/** Opt-in filters of the device lists (extensions). */
export const deviceFilterQuery = {
  name: textParam
    .optional()
    .meta({ description: "Only devices whose name contains this text, ignoring case." }),
  prop_name: textParam
    .optional()
    .meta({ description: "With prop_value: only devices whose property prop_name equals it." }),
  prop_value: textParam
    .optional()
    .meta({ description: "With prop_name: the property value to match, compared as text." }),
  ...pageQuery,
};
