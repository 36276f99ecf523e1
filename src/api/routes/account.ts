import { z } from "zod";

import { basicCredentials } from "../auth.js";
import { changePasswordAndToken, login, type LoginLimits } from "../credentials.js";
import { ApiError, invalidParam } from "../errors.js";
import { ok, route, type Route } from "../route.js";
import { failure, json } from "../schemas/common.js";
import { password, userOutput } from "../schemas/users.js";
import { userBody } from "./users.js";

const tags = ["auth"];
const tokenOutput = z.string().meta({ description: "A bearer token (128 hex characters)." });

/** IoTa's GET /token and POST /change-password, and GET /me. */
export function accountRoutes(limits: LoginLimits, ttlSeconds: number | undefined): Route[] {
  return [
    route({
      method: "get",
      path: "/token",
      summary: "Log in: exchange Basic credentials for a bearer token",
      description:
        "Each successful login issues a new token; earlier ones stay valid (until TOKEN_TTL, " +
        "if set, or until revoked). Failed attempts are limited per user name and client " +
        "address, and per user name across addresses other than those the user recently " +
        "logged in from (429 with a Retry-After that grows with each lock-out); successful " +
        "ones are not.",
      tags,
      access: "public",
      openapi: { security: [{ basicAuth: [] }] },
      responses: {
        "200": json("The token, as a JSON string.", tokenOutput),
        "401": failure("Incorrect username or password (or no Basic credentials)."),
        "403": failure("The user is disabled."),
        "429": failure("Too many failed attempts; retry after Retry-After seconds."),
      },
      handler: async ({ db, req }) => {
        const { username, password: given } = basicCredentials(req.get("authorization"));
        const rejected = new ApiError(401, "Incorrect username or password", {
          "WWW-Authenticate": "Basic",
        });
        if (username.includes("\u0000") || username.length > 256) {
          throw rejected;
        }
        // Never empty: '' names the counter of the user name across addresses.
        const client = req.ip || req.socket.remoteAddress || "unknown";
        const result = await login(db, { username, password: given, client }, limits, ttlSeconds);
        switch (result.kind) {
          case "ok":
            return ok(result.token);
          case "limited":
            throw new ApiError(429, "Too many failed login attempts; retry later", {
              "Retry-After": String(result.retryAfterSeconds),
            });
          case "disabled":
            throw new ApiError(403, "This user is disabled");
          case "rejected":
            throw rejected;
        }
      },
    }),
    route({
      method: "post",
      path: "/change-password",
      summary: "Change one's own password; returns a new token",
      description:
        "The new password comes in the `password` query parameter (IoTa's form) or a JSON body " +
        '`{"password": …}`. Read-only users may use it too. Every earlier token of the user is revoked.',
      tags,
      access: "self",
      query: z.object({ password: password.optional() }),
      body: z.object({ password }).optional(),
      openapi: {
        requestBody: {
          required: false,
          content: { "application/json": { schema: z.object({ password }) } },
        },
      },
      responses: { "200": json("The new token, as a JSON string.", tokenOutput) },
      handler: async ({ db, query, body, user }) => {
        const newPassword = body?.password ?? query.password;
        if (newPassword === undefined) {
          throw invalidParam("query", "password", "field required");
        }
        return ok(await changePasswordAndToken(db, user!, newPassword, ttlSeconds));
      },
    }),
    route({
      method: "get",
      path: "/me",
      summary: "The user the token belongs to (extension)",
      tags,
      access: "read",
      responses: { "200": json("The user.", userOutput) },
      handler: async ({ user }) => {
        return ok(userBody(user!));
      },
    }),
  ];
}
