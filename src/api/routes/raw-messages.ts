import { z } from "zod";

import { getRawMessage, listRawMessages, type RawMessage } from "../../db/repositories/messages.js";
import { notFound } from "../errors.js";
import { ok, route, type Route } from "../route.js";
import { failure, json } from "../schemas/common.js";
import { instantParam, intParam, offsetParam, textParam } from "../schemas/params.js";

/** Raw messages as they arrived (extension): by correlation id, device, source and time. */

const tags = ["raw messages"];

const rawMessageOutput = z
  .object({
    uid: z.number().int(),
    source_name: z.string(),
    physical_uid: z.number().int().nullable(),
    correlation_id: z.string().meta({ format: "uuid" }),
    ts: z.string().meta({ format: "date-time" }),
    json_msg: z.unknown().meta({ description: "The message when it arrived as JSON, else null." }),
    text_msg: z.string().nullable().meta({ description: "The message when it was not JSON." }),
  })
  .meta({ id: "RawMessage" });

function rawBody(raw: RawMessage) {
  return {
    uid: raw.uid,
    source_name: raw.source_name,
    physical_uid: raw.physical_uid,
    correlation_id: raw.correlation_id,
    ts: raw.ts,
    json_msg: raw.json_msg,
    text_msg: raw.text_msg,
  };
}

export function rawMessageRoutes(): Route[] {
  return [
    route({
      method: "get",
      path: "/raw-messages",
      summary: "Raw messages in arrival order (extension)",
      description:
        "Pages by uid: pass the last uid of a page as `after` to get the next one. " +
        "`start` is inclusive and `end` exclusive.",
      tags,
      access: "read",
      query: z.object({
        p_uid: intParam
          .optional()
          .meta({ description: "Only messages from this physical device." }),
        source_name: textParam.optional(),
        start: instantParam.optional(),
        end: instantParam.optional(),
        after: offsetParam.optional().meta({ description: "Only messages with a larger uid." }),
        limit: intParam
          .pipe(z.number().min(1, "must be at least 1").max(1000, "must be at most 1000"))
          .optional()
          .meta({ description: "Page size, 1 to 1000. Default 100." }),
      }),
      responses: { "200": json("Raw messages.", z.array(rawMessageOutput)) },
      handler: async ({ db, query }) => {
        const rows = await listRawMessages(db, {
          ...(query.p_uid !== undefined ? { puid: query.p_uid } : {}),
          ...(query.source_name !== undefined ? { source: query.source_name } : {}),
          ...(query.start !== undefined ? { start: query.start } : {}),
          ...(query.end !== undefined ? { end: query.end } : {}),
          ...(query.after !== undefined ? { afterUid: query.after } : {}),
          limit: query.limit ?? 100,
        });
        return ok(rows.map(rawBody));
      },
    }),
    route({
      method: "get",
      path: "/raw-messages/{correlation_id}",
      summary: "The raw message with this correlation id (extension)",
      tags,
      access: "read",
      params: z.object({ correlation_id: z.uuid("must be a UUID") }),
      responses: {
        "200": json("The raw message.", rawMessageOutput),
        "404": failure("No raw message has this correlation id."),
      },
      handler: async ({ db, params }) => {
        const raw = await getRawMessage(db, params.correlation_id);
        if (!raw) {
          throw notFound("Raw message not found");
        }
        return ok(rawBody(raw));
      },
    }),
  ];
}
