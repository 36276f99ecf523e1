import { z } from "zod";

import { addSource, listSources } from "../../db/repositories/sources.js";
import { notFound } from "../errors.js";
import { created, ok, route, type Route } from "../route.js";
import { failure, json } from "../schemas/common.js";
import { text } from "../schemas/devices.js";
import { pageQuery } from "../schemas/params.js";
import { page } from "./lists.js";

/** Sources as a resource (extension; IoTa only listed their names at /physical/sources/). */

const tags = ["sources"];

const sourceOutput = z.object({ source_name: z.string() }).meta({ id: "Source" });
const sourceName = text
  .min(1, "must not be empty")
  .max(100, "must be at most 100 characters")
  .regex(/^[A-Za-z0-9_.-]+$/, "may contain only letters, digits, '_', '.' and '-'");

export function sourceRoutes(): Route[] {
  return [
    route({
      method: "get",
      path: "/sources",
      summary: "Every source, alphabetical (extension)",
      tags,
      access: "read",
      query: z.object(pageQuery),
      responses: { "200": json("Sources.", z.array(sourceOutput)) },
      handler: async ({ db, query }) => {
        const names = page(await listSources(db), query);
        return ok(names.map((source_name) => ({ source_name })));
      },
    }),
    route({
      method: "get",
      path: "/sources/{source_name}",
      summary: "One source (extension)",
      tags,
      access: "read",
      params: z.object({ source_name: z.string() }),
      responses: { "200": json("The source.", sourceOutput), "404": failure("Source not found") },
      handler: async ({ db, params }) => {
        if (!(await listSources(db)).includes(params.source_name)) {
          throw notFound("Source not found");
        }
        return ok({ source_name: params.source_name });
      },
    }),
    route({
      method: "post",
      path: "/sources",
      summary: "Add a source (extension); 200 when it already exists",
      tags,
      access: "admin",
      body: z.object({ source_name: sourceName }).meta({ id: "SourceInput" }),
      responses: {
        "201": json("Added.", sourceOutput),
        "200": json("It already existed.", sourceOutput),
      },
      handler: async ({ db, body }) => {
        const existed = (await listSources(db)).includes(body.source_name);
        await addSource(db, body.source_name);
        const out = { source_name: body.source_name };
        if (existed) {
          return ok(out);
        } else {
          return created(body.source_name, out);
        }
      },
    }),
  ];
}
