import { z } from "zod";

import type { Db } from "../../db/database.js";
import {
  deleteUser,
  getUser,
  listUsers,
  updateUserFlags,
  type User,
} from "../../db/repositories/users.js";
import { addUser, changePassword, replaceTokens } from "../credentials.js";
import { notFound } from "../errors.js";
import { created, NO_CONTENT, ok, route, type Route } from "../route.js";
import { failure, json, noContentResponse } from "../schemas/common.js";
import { pageQuery } from "../schemas/params.js";
import { userInput, userOutput, userPatchInput, username } from "../schemas/users.js";

/** Users as a resource, for admins only (extension; IoTa managed users only from its CLI). */

const tags = ["users"];
const NOT_FOUND = "User not found";
const usernamePath = z.object({ username });

export function userBody(user: User) {
  return { uid: user.uid, username: user.username, valid: user.valid, read_only: user.read_only };
}

async function existing(db: Db, name: string): Promise<User> {
  const user = await getUser(db, name);
  if (!user) {
    throw notFound(NOT_FOUND);
  }
  return user;
}

export function userRoutes(ttlSeconds: number | undefined): Route[] {
  return [
    route({
      method: "get",
      path: "/users",
      summary: "Every user, uid ascending (admins only)",
      tags,
      access: "admin",
      query: z.object(pageQuery),
      responses: { "200": json("Users.", z.array(userOutput)) },
      handler: async ({ db, query }) => {
        const users = await listUsers(db, {
          ...(query.limit !== undefined ? { limit: query.limit } : {}),
          ...(query.offset !== undefined ? { offset: query.offset } : {}),
        });
        return ok(users.map(userBody));
      },
    }),
    route({
      method: "post",
      path: "/users",
      summary: "Add a user (admins only)",
      tags,
      access: "admin",
      body: userInput,
      responses: {
        "201": json("The user.", userOutput),
        "409": failure("The user name is taken."),
      },
      handler: async ({ db, body }) => {
        const user = await addUser(db, {
          username: body.username,
          password: body.password,
          ...(body.valid !== undefined ? { valid: body.valid } : {}),
          ...(body.read_only !== undefined ? { readOnly: body.read_only } : {}),
        });
        return created(user.username, userBody(user));
      },
    }),
    route({
      method: "get",
      path: "/users/{username}",
      summary: "One user (admins only)",
      tags,
      access: "admin",
      params: usernamePath,
      responses: { "200": json("The user.", userOutput), "404": failure(NOT_FOUND) },
      handler: async ({ db, params }) => {
        return ok(userBody(await existing(db, params.username)));
      },
    }),
    route({
      method: "patch",
      path: "/users/{username}",
      summary: "Change a user's password, read_only or valid (admins only)",
      description:
        "A new password, and a change of `valid`, revoke every token of the user (IoTa kept them).",
      tags,
      access: "admin",
      params: usernamePath,
      body: userPatchInput,
      responses: { "200": json("The user.", userOutput), "404": failure(NOT_FOUND) },
      handler: async ({ db, params, body }) => {
        const user = await existing(db, params.username);
        if (body.password !== undefined) {
          await changePassword(db, user, body.password);
        }
        const updated = await updateUserFlags(db, user.username, {
          ...(body.valid !== undefined ? { valid: body.valid } : {}),
          ...(body.read_only !== undefined ? { readOnly: body.read_only } : {}),
        });
        if (!updated) {
          throw notFound(NOT_FOUND);
        }
        return ok(userBody(updated));
      },
    }),
    route({
      method: "delete",
      path: "/users/{username}",
      summary: "Remove a user and their tokens (admins only)",
      tags,
      access: "admin",
      params: usernamePath,
      responses: { "204": noContentResponse, "404": failure(NOT_FOUND) },
      handler: async ({ db, params }) => {
        if (!(await deleteUser(db, params.username))) {
          throw notFound(NOT_FOUND);
        }
        return NO_CONTENT;
      },
    }),
    route({
      method: "post",
      path: "/users/{username}/token",
      summary: "Revoke every token of a user and issue a new one (admins only)",
      tags,
      access: "admin",
      params: usernamePath,
      responses: {
        "200": json("The new token, as a JSON string.", z.string()),
        "404": failure(NOT_FOUND),
      },
      handler: async ({ db, params }) => {
        const user = await existing(db, params.username);
        return ok(await replaceTokens(db, user, ttlSeconds));
      },
    }),
  ];
}
