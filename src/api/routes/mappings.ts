import { z } from "zod";

import {
  endMapping,
  getCurrentMapping,
  getLatestMapping,
  listMappings,
  queryCurrentMappings,
  setMappingActive,
  startMapping,
  type DeviceSelector,
} from "../../db/repositories/mappings.js";
import { RegistryError } from "../../db/repositories/registry-error.js";
import { ApiError, badRequest, notFound } from "../errors.js";
import { NO_CONTENT, ok, route, type Route } from "../route.js";
import { failure, json, noContentResponse, nullBody } from "../schemas/common.js";
import { mappingInput, mappingOutput, mappingUidsOutput } from "../schemas/mappings.js";
import {
  boolParam,
  intParam,
  optionalBoolParam,
  pageQuery,
  requiredBoolParam,
  uidPath,
} from "../schemas/params.js";
import { page } from "./lists.js";
import { mappingBody, mappingUidsBody } from "./output.js";

const tags = ["device mapping"];

type Kind = "physical" | "logical";

function selector(kind: Kind, uid: number): DeviceSelector {
  return kind === "physical" ? { puid: uid } : { luid: uid };
}

const missing = (kind: Kind, uid: number) =>
  notFound(`Device mapping for ${kind} device ${uid} not found.`);

/** current / latest / all / end for one side of the mapping. */
function sideRoutes(kind: Kind): Route[] {
  const notFoundText = `Device mapping for ${kind} device {uid} not found.`;
  return [
    route({
      method: "get",
      path: `/mappings/${kind}/current/{uid}`,
      summary: `The current mapping of a ${kind} device`,
      tags,
      access: "read",
      params: uidPath,
      responses: { "200": json("The mapping.", mappingOutput), "404": failure(notFoundText) },
      handler: async ({ db, params }) => {
        const mapping = await getCurrentMapping(db, selector(kind, params.uid));
        if (!mapping) {
          throw missing(kind, params.uid);
        }
        return ok(mappingBody(mapping));
      },
    }),
    route({
      method: "get",
      path: `/mappings/${kind}/latest/{uid}`,
      summary: `The newest mapping of a ${kind} device, current or ended`,
      tags,
      access: "read",
      params: uidPath,
      responses: { "200": json("The mapping.", mappingOutput), "404": failure(notFoundText) },
      handler: async ({ db, params }) => {
        const mapping = await getLatestMapping(db, selector(kind, params.uid));
        if (!mapping) {
          throw missing(kind, params.uid);
        }
        return ok(mappingBody(mapping));
      },
    }),
    route({
      method: "get",
      path: `/mappings/${kind}/all/{uid}`,
      summary: `Every mapping of a ${kind} device, newest start_time first`,
      tags,
      access: "read",
      params: uidPath,
      query: z.object(pageQuery),
      responses: { "200": json("Mappings (`[]` when none).", z.array(mappingOutput)) },
      handler: async ({ db, params, query }) => {
        const mappings = await listMappings(db, selector(kind, params.uid));
        return ok(page(mappings, query).map(mappingBody));
      },
    }),
    route({
      method: "patch",
      path: `/mappings/${kind}/end/{uid}`,
      summary: `End the current mapping of a ${kind} device now`,
      tags,
      access: "admin",
      params: uidPath,
      responses: { "204": noContentResponse, "404": failure(notFoundText) },
      handler: async ({ db, params }) => {
        if (!(await endMapping(db, selector(kind, params.uid)))) {
          throw missing(kind, params.uid);
        }
        return NO_CONTENT;
      },
    }),
  ];
}

/** IoTa's mapping endpoints (tag "device mapping"). */
export function mappingRoutes(): Route[] {
  return [
    route({
      method: "post",
      path: "/mappings/",
      summary: "Map a physical device to a logical device",
      description:
        "Ends the logical device's current mapping where the new one starts. A physical device " +
        "that is already mapped must be ended first (400). Answers 201 with `null`, as IoTa.",
      tags,
      access: "admin",
      body: mappingInput,
      responses: {
        "201": json("Created.", nullBody),
        "400": failure(
          "The physical device is already mapped, or a mapping of the logical device starts at that time.",
        ),
        "404": failure("A device does not exist."),
      },
      handler: async ({ db, body }) => {
        try {
          await startMapping(db, body.pd, body.ld, body.start_time);
        } catch (err) {
          // IoTa answered every refused mapping with 400.
          if (err instanceof RegistryError && err.code !== "not_found") {
            throw badRequest(err.message);
          }
          throw err;
        }
        return { status: 201, body: null };
      },
    }),
    route({
      method: "get",
      path: "/mappings/current/",
      summary: "Every current mapping, by logical device uid",
      tags,
      access: "read",
      query: z.object({
        return_uids: boolParam(true).meta({
          description: "true: `pd` and `ld` are uids; false: whole devices.",
        }),
        is_active: optionalBoolParam.meta({
          description: "Only active (true) or only paused (false) mappings (extension).",
        }),
        ...pageQuery,
      }),
      responses: {
        "200": json("Mappings.", z.array(z.union([mappingUidsOutput, mappingOutput]))),
      },
      handler: async ({ db, query }) => {
        const mappings = await queryCurrentMappings(db, {
          ...(query.is_active !== undefined ? { isActive: query.is_active } : {}),
          ...(query.limit !== undefined ? { limit: query.limit } : {}),
          ...(query.offset !== undefined ? { offset: query.offset } : {}),
        });
        return ok(query.return_uids ? mappings.map(mappingUidsBody) : mappings.map(mappingBody));
      },
    }),
    route({
      method: "patch",
      path: "/mappings/toggle-active/",
      summary: "Pause (false) or resume (true) a device's current mapping",
      description: "Give exactly one of `puid` or `luid`. Only the current mapping changes.",
      tags,
      access: "admin",
      query: z.object({
        is_active: requiredBoolParam,
        puid: intParam.optional(),
        luid: intParam.optional(),
      }),
      responses: {
        "204": noContentResponse,
        "400": failure("Both or neither of puid and luid were given."),
        "404": failure("Device with uid provided could not be found"),
      },
      handler: async ({ db, query }) => {
        if (query.puid !== undefined && query.luid !== undefined) {
          throw badRequest("Both physical and logical uid were provided. Only give one");
        }
        const which =
          query.puid !== undefined
            ? { puid: query.puid }
            : query.luid !== undefined
              ? { luid: query.luid }
              : undefined;
        if (!which) {
          throw badRequest("A uid must be provided");
        }
        if (!(await setMappingActive(db, which, query.is_active))) {
          throw new ApiError(404, "Device with uid provided could not be found");
        }
        return NO_CONTENT;
      },
    }),
    ...sideRoutes("physical"),
    ...sideRoutes("logical"),
  ];
}
