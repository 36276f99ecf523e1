import type express from "express";
import type { z } from "zod";
import type {
  ZodObjectInput,
  ZodOpenApiOperationObject,
  ZodOpenApiResponsesObject,
} from "zod-openapi";

import type { Logger } from "../core/logger.js";
import type { Db } from "../db/database.js";
import type { User } from "../db/repositories/users.js";
import { withActor } from "../events/actor.js";
import { unprocessable, toValidationIssues } from "./errors.js";
import { failure, validationErrorOutput } from "./schemas/common.js";

/**
 * One place declares each route: its method, path, who may call it, the zod schemas of its path
 * parameters, query and body, and its responses. The same declaration validates requests and
 * becomes the route's entry in the OpenAPI document, so the two cannot drift apart.
 */

/**
 * Who may call a route. `public`: anyone (the token endpoint, the docs). `read`: any valid
 * token. `self`: any valid token, for changes to one's own account. `admin`: a valid token of a
 * user who is not read-only (IoTa's rule for every method but GET).
 */
export type Access = "public" | "read" | "self" | "admin";

export type Method = "get" | "post" | "patch" | "delete";

export interface RequestContext<P, Q, B> {
  readonly req: express.Request;
  readonly res: express.Response;
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  /** The caller; undefined only on public routes. */
  readonly user: User | undefined;
  /**
   * The database. For a change made by a user it is a transaction whose registry events name
   * the user as actor (`api:<username>`); the reply is sent only after it commits.
   */
  readonly db: Db;
}

/** What a handler answers; `body` undefined means no body. */
export interface Reply {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** The uid of a resource just created: answered in IoTa's `Location` header. */
  readonly created?: number | string;
}

export const ok = (body: unknown): Reply => ({ status: 200, body });
export const NO_CONTENT: Reply = { status: 204 };

/** 201 with IoTa's `Location`: the request URL (with a trailing slash) plus the uid. */
export function created(uid: number | string, body: unknown): Reply {
  return { status: 201, body, created: uid };
}

/** IoTa's Location: `origin` (see location.ts), the request path with a trailing slash, the uid. */
function locationOf(req: express.Request, origin: string, uid: number | string): string {
  const path = req.originalUrl.split("?")[0] ?? "/";
  const base = path.endsWith("/") ? path : `${path}/`;
  return `${origin}${base}${encodeURIComponent(String(uid))}`;
}

/** What a mounted route needs besides the request: who calls, the database, the public origin. */
export interface RouteEnvironment {
  /** The caller; undefined only on public routes. */
  readonly user: User | undefined;
  readonly db: Db;
  /** The origin `Location` headers start with ("" for a relative Location). */
  readonly origin: string;
  readonly logger: Logger;
}

export interface RouteSpec<P, Q, B> {
  readonly method: Method;
  /** OpenAPI form (`/physical/devices/{uid}`), relative to the API prefix. */
  readonly path: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  readonly access: Access;
  readonly params?: z.ZodType<P, Record<string, unknown>>;
  readonly query?: z.ZodType<Q, Record<string, unknown>>;
  readonly body?: z.ZodType<B>;
  readonly responses: ZodOpenApiResponsesObject;
  /** Extra OpenAPI fields (e.g. more request content types). */
  readonly openapi?: Partial<ZodOpenApiOperationObject>;
  /** Answers with a Reply, or undefined when it wrote the response itself (streaming). */
  readonly handler: (ctx: RequestContext<P, Q, B>) => Promise<Reply | undefined>;
}

/** A declared route with its types erased, ready to mount and to document. */
export interface Route {
  readonly method: Method;
  readonly path: string;
  /** The same path in Express's syntax (`/physical/devices/:uid`). */
  readonly expressPath: string;
  readonly access: Access;
  readonly takesBody: boolean;
  readonly operation: ZodOpenApiOperationObject;
  run(req: express.Request, res: express.Response, env: RouteEnvironment): Promise<void>;
}

/** Query values as FastAPI saw them: a repeated parameter counts with its last value. */
function lastValues(query: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    out[key] = Array.isArray(value) ? value[value.length - 1] : value;
  }
  return out;
}

function parse<T>(schema: z.ZodType<T> | undefined, value: unknown, where: string): T {
  if (schema === undefined) {
    return undefined as T;
  }
  // reportInput: zod 4 leaves the input out of its issues otherwise, and a missing field could
  // not be told from a wrong type (the input is only inspected, never answered).
  const result = schema.safeParse(value, { reportInput: true });
  if (!result.success) {
    throw unprocessable(toValidationIssues(where, result.error));
  }
  return result.data;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Top-level body fields the schema dropped because it does not know them (at most 20 names, each
 * cut to 64 characters: they are the client's text).
 */
export function ignoredFields(input: unknown, parsed: unknown): string[] {
  if (!isPlainObject(input) || !isPlainObject(parsed)) {
    return [];
  }
  return Object.keys(input)
    .filter((key) => !Object.hasOwn(parsed, key))
    .slice(0, 20)
    .map((key) => key.slice(0, 64));
}

function operationId(method: Method, path: string): string {
  const words = path.split(/[^A-Za-z0-9]+/).filter(Boolean);
  return method + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

/** Declares a route. */
export function route<P = undefined, Q = undefined, B = undefined>(
  spec: RouteSpec<P, Q, B>,
): Route {
  const responses: ZodOpenApiResponsesObject = { ...spec.responses };
  if (spec.params || spec.query || spec.body) {
    responses["422"] ??= {
      description: "A parameter or the body is invalid.",
      content: { "application/json": { schema: validationErrorOutput } },
    };
  }
  if (spec.access !== "public") {
    responses["401"] ??= failure(
      "No valid token (missing, malformed, unknown, expired or disabled).",
    );
  }
  if (spec.access === "admin") {
    responses["403"] ??= failure("The user is read-only.");
  }
  const operation: ZodOpenApiOperationObject = {
    summary: spec.summary,
    ...(spec.description ? { description: spec.description } : {}),
    tags: [...spec.tags],
    operationId: operationId(spec.method, spec.path),
    security: spec.access === "public" ? [] : [{ bearerAuth: [] }],
    requestParams: {
      ...(spec.params ? { path: spec.params as ZodObjectInput } : {}),
      ...(spec.query ? { query: spec.query as ZodObjectInput } : {}),
    },
    ...(spec.body
      ? { requestBody: { required: true, content: { "application/json": { schema: spec.body } } } }
      : {}),
    responses,
    ...spec.openapi,
  };
  return {
    method: spec.method,
    path: spec.path,
    expressPath: spec.path.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, ":$1"),
    access: spec.access,
    takesBody: spec.body !== undefined,
    operation,
    async run(req, res, { user, db, origin, logger }) {
      const params = parse(spec.params, req.params, "path");
      const query = parse(spec.query, lastValues(req.query), "query");
      const body = parse(spec.body, req.body, "body");
      const ignored = ignoredFields(req.body, body);
      if (ignored.length > 0) {
        // As IoTa's pydantic models: unknown fields are dropped, not refused (names only logged).
        logger.info(
          { route: `${spec.method.toUpperCase()} ${spec.path}`, fields: ignored },
          "ignored unknown body fields",
        );
      }
      const context = { req, res, params, query, body, user };
      const reply =
        user !== undefined && spec.method !== "get"
          ? await withActor(db, `api:${user.username}`, (trx) =>
              spec.handler({ ...context, db: trx }),
            )
          : await spec.handler({ ...context, db });
      if (reply !== undefined) {
        res.status(reply.status).set(reply.headers ?? {});
        if (reply.created !== undefined) {
          res.set("Location", locationOf(req, origin, reply.created));
        }
        if (reply.body === undefined) {
          res.end();
        } else {
          res.json(reply.body);
        }
      }
    },
  };
}
