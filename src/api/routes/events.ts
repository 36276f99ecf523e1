import { z } from "zod";

import { listEvents } from "../../db/repositories/events.js";
import { EVENT_ENTITIES, EVENT_OPERATIONS, eventFilterSchema } from "../../events/event.js";
import { forbidden } from "../errors.js";
import { ok, route, type Route } from "../route.js";
import { json } from "../schemas/common.js";

/**
 * The registry event log as a resource (extension): `GET /events?since=&entity=&operation=&limit=`,
 * oldest first. Page by passing the last id received as `since`; an empty array means the reader
 * is up to date. User events are for admins only: read-only callers never see them (asking for
 * them is a 403), so a read-only integration still pages through every device and mapping event.
 */

const eventOutput = z
  .object({
    id: z.number().int(),
    occurred_at: z.string(),
    entity: z.enum(EVENT_ENTITIES),
    operation: z.enum(EVENT_OPERATIONS),
    entity_id: z.string(),
    actor: z.string(),
    data: z.object({
      before: z.record(z.string(), z.unknown()).optional(),
      after: z.record(z.string(), z.unknown()).optional(),
      changed: z.array(z.string()).optional(),
    }),
  })
  .meta({ id: "RegistryEvent" });

export function eventRoutes(): Route[] {
  return [
    route({
      method: "get",
      path: "/events",
      summary: "Registry events, oldest first (extension)",
      tags: ["events"],
      access: "read",
      query: eventFilterSchema,
      responses: { "200": json("A page of events.", z.array(eventOutput)) },
      handler: async ({ db, query, user }) => {
        const readOnly = user?.read_only ?? true;
        if (readOnly && query.entity === "user") {
          throw forbidden("user events are visible to admins only");
        }
        return ok(await listEvents(db, query, { excludeEntities: readOnly ? ["user"] : [] }));
      },
    }),
  ];
}
