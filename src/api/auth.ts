import type express from "express";

import type { Db } from "../db/database.js";
import type { User } from "../db/repositories/users.js";
import { userForToken } from "./credentials.js";
import { ApiError } from "./errors.js";
import type { Access } from "./route.js";

/**
 * Bearer-token checks in front of every non-public route. Headers are never logged; a database
 * failure here is a 503, not (as in IoTa) a 401 that would send clients back to log in.
 */

const BEARER_CHALLENGE = { "WWW-Authenticate": "Bearer" };

function unauthenticated(detail: string): ApiError {
  return new ApiError(401, detail, BEARER_CHALLENGE);
}

/** The token of an `Authorization: Bearer <token>` header, or an ApiError saying what is wrong. */
export function bearerToken(header: string | undefined): string {
  if (header === undefined || header.trim() === "") {
    throw unauthenticated("Not authenticated");
  }
  const match = /^\s*(\S+)\s+(\S+)\s*$/.exec(header);
  if (!match || match[1]!.toLowerCase() !== "bearer") {
    throw unauthenticated("Invalid authorization header: expected 'Bearer <token>'");
  }
  return match[2]!;
}

/** Resolves the caller of a request and checks they may use a route of `access`. */
export async function authorise(
  db: Db,
  req: express.Request,
  access: Access,
): Promise<User | undefined> {
  if (access === "public") {
    return undefined;
  }
  const token = bearerToken(req.get("authorization"));
  const user = await userForToken(db, token);
  if (!user) {
    throw unauthenticated("Invalid or expired token");
  }
  if (access === "admin" && user.read_only) {
    throw new ApiError(403, "Read-only users may only read (GET) and change their own password");
  }
  return user;
}

/** The `user:password` of an `Authorization: Basic …` header (the password may contain `:`). */
export function basicCredentials(header: string | undefined): {
  username: string;
  password: string;
} {
  const challenge = { "WWW-Authenticate": "Basic" };
  const match = header === undefined ? null : /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!match) {
    throw new ApiError(401, "Not authenticated", challenge);
  }
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) {
    throw new ApiError(401, "Invalid authentication credentials", challenge);
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
