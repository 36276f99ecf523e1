import { z } from "zod";

import { TransientError } from "../../core/errors.js";
import type { Db } from "../../db/database.js";
import { countHeld, listHeld } from "../../db/repositories/held-messages.js";
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
import { getPhysicalDevice } from "../../db/repositories/physical-devices.js";
import { RegistryError } from "../../db/repositories/registry-error.js";
import { withActor } from "../../events/actor.js";
import {
  releaseHeld,
  type ReleasePublisher,
  type ReleaseRequest,
  type ReleaseSummary,
} from "../../mapper/release.js";
import { ApiError, badRequest, notFound } from "../errors.js";
import { NO_CONTENT, ok, route, type Route } from "../route.js";
import { failure, json, noContentResponse, nullBody } from "../schemas/common.js";
import {
  heldOutput,
  mappingCreatedOutput,
  mappingInput,
  mappingOutput,
  mappingUidsOutput,
  releaseInput,
  releaseOutput,
} from "../schemas/mappings.js";
import {
  boolParam,
  instantParam,
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
      summary: `End the current mapping of a ${kind} device now, or at end_time`,
      tags,
      access: "admin",
      params: uidPath,
      query: z.object({
        end_time: instantParam.optional().meta({
          description:
            "End the mapping at this instant instead of now (extension): after its start, not in the future.",
        }),
      }),
      responses: {
        "204": noContentResponse,
        "400": failure("end_time is before the mapping's start or in the future."),
        "404": failure(notFoundText),
      },
      handler: async ({ db, params, query }) => {
        if (!(await endMapping(db, selector(kind, params.uid), query.end_time))) {
          throw missing(kind, params.uid);
        }
        return NO_CONTENT;
      },
    }),
  ];
}

/** What releasing held messages needs beyond a request's own database handle. */
export interface ReleaseDependencies {
  /**
   * The pool, not a request's transaction: a release commits as it goes, and must see a mapping
   * the same request has just created.
   */
  readonly db: Db;
  /** Confirmed publisher to the logical exchange. */
  readonly publisher: ReleasePublisher;
}

/** Header of POST /mappings/: held messages stamped within the new mapping. */
export const HELD_COVERED_HEADER = "X-Held-Covered";

/** A release, with RabbitMQ's or PostgreSQL's failures answered 503 "run it again". */
async function release(
  deps: ReleaseDependencies,
  request: ReleaseRequest,
): Promise<ReleaseSummary> {
  try {
    return await releaseHeld(deps.db, deps.publisher, request);
  } catch (err) {
    if (err instanceof TransientError) {
      throw new ApiError(
        503,
        `the release stopped: ${err.message}; run it again to continue where it stopped`,
        { "Retry-After": "5" },
      );
    }
    throw err;
  }
}

function sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** IoTa's mapping endpoints (tag "device mapping"), and holding and releasing (extensions). */
export function mappingRoutes(releases: ReleaseDependencies): Route[] {
  return [
    route({
      method: "post",
      path: "/mappings/",
      summary: "Map a physical device to a logical device",
      description:
        "Ends the logical device's current mapping where the new one starts. A physical device " +
        "that is already mapped must be ended first (400), and the new mapping may not overlap " +
        "another of either device (400 naming it). Answers 201 with `null`, as IoTa, and the " +
        `number of held messages stamped within the new mapping in \`${HELD_COVERED_HEADER}\`. ` +
        "With `release=true` (extension) those messages are released and the body says how many.",
      tags,
      access: "admin",
      query: z.object({
        release: optionalBoolParam.meta({
          description:
            "Release the held messages the new mapping covers (extension; see POST /mappings/release/).",
        }),
      }),
      body: mappingInput,
      responses: {
        "201": json(
          "Created: `null`, or with `release=true` what was released.",
          z.union([nullBody, mappingCreatedOutput]),
        ),
        "400": failure(
          "The physical device is already mapped, or the mapping would overlap another of either device.",
        ),
        "404": failure("A device does not exist."),
        "503": failure("The release stopped (RabbitMQ or PostgreSQL unavailable); run it again."),
      },
      handler: async ({ db, body, query, user }) => {
        const create = (trx: Db) => startMapping(trx, body.pd, body.ld, body.start_time);
        let mapping;
        try {
          // To release, the mapping must be committed first: the release runs on the pool.
          mapping = query.release
            ? await withActor(releases.db, `api:${user!.username}`, create)
            : await create(db);
        } catch (err) {
          // IoTa answered every refused mapping with 400.
          if (err instanceof RegistryError && err.code !== "not_found") {
            throw badRequest(err.message);
          }
          throw err;
        }
        const covered = sum(await countHeld(db, { puid: body.pd, from: mapping.start_time }));
        const headers = { [HELD_COVERED_HEADER]: String(covered) };
        if (!query.release) {
          return { status: 201, body: null, headers };
        }
        const summary = await release(releases, { puid: body.pd, from: mapping.start_time });
        return { status: 201, body: { held_covered: covered, release: summary }, headers };
      },
    }),
    route({
      method: "get",
      path: "/mappings/held/",
      summary: "Held messages per physical device (extension)",
      description:
        "Messages stored but not sent to any logical device: no mapping held their timestamp, " +
        "their mapping was paused, or their timestamp was too far from now. Only devices that " +
        "hold any, uid ascending.",
      tags,
      access: "read",
      query: z.object({
        puid: intParam.optional().meta({ description: "Only this physical device." }),
        from: instantParam.optional().meta({
          description:
            "Only messages stamped at or after this instant (what a mapping from then covers).",
        }),
      }),
      responses: { "200": json("Held messages per device (`[]` when none).", z.array(heldOutput)) },
      handler: async ({ db, query }) =>
        ok(
          await listHeld(db, {
            ...(query.puid !== undefined ? { puid: query.puid } : {}),
            ...(query.from !== undefined ? { from: query.from } : {}),
          }),
        ),
    }),
    route({
      method: "post",
      path: "/mappings/release/",
      summary: "Release a physical device's held messages (extension)",
      description:
        "Sends each selected held message to the logical device of the mapping whose period " +
        "holds its timestamp, in timestamp order, on the logical exchange with the headers " +
        "`x-broker-release` (this release's id) and `x-broker-hold-reason`. Messages no mapping " +
        "holds, or whose current mapping is paused, stay held. Each message is released once, " +
        "also when two releases run at once; a release that stopped part-way is completed by the " +
        "next (doc/architecture.md, Hold and release).",
      tags,
      access: "admin",
      body: releaseInput,
      responses: {
        "200": json("What was released.", releaseOutput),
        "404": failure("The physical device does not exist."),
        "503": failure("The release stopped (RabbitMQ or PostgreSQL unavailable); run it again."),
      },
      handler: async ({ db, body }) => {
        if (!(await getPhysicalDevice(db, body.puid))) {
          throw notFound(`physical device ${body.puid} not found`);
        }
        return ok(
          await release(releases, {
            puid: body.puid,
            ...(body.from !== undefined ? { from: body.from } : {}),
            ...(body.to !== undefined ? { to: body.to } : {}),
            ...(body.reasons !== undefined ? { reasons: body.reasons } : {}),
          }),
        );
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
