import { z } from "zod";
import type { ZodOpenApiResponseObject } from "zod-openapi";

/** Error bodies and response shorthands shared by every route's OpenAPI description. */

export const errorOutput = z
  .object({ detail: z.string() })
  .meta({ id: "Error", description: "IoTa's error body: a message naming the problem." });

export const validationErrorOutput = z
  .object({
    detail: z.array(
      z.object({
        loc: z.array(z.union([z.string(), z.number()])),
        msg: z.string(),
        type: z.string(),
      }),
    ),
  })
  .meta({ id: "ValidationError", description: "FastAPI's 422 body: one entry per problem." });

/** A JSON response of `schema`. */
export function json(description: string, schema: z.ZodType): ZodOpenApiResponseObject {
  return { description, content: { "application/json": { schema } } };
}

/** An error response with IoTa's `{"detail": ...}` body. */
export function failure(description: string): ZodOpenApiResponseObject {
  return json(description, errorOutput);
}

export const noContentResponse: ZodOpenApiResponseObject = { description: "Done; no body." };

/** `null`, the body IoTa answers some writes with. */
export const nullBody = z.null().meta({ id: "Null" });
