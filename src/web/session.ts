import { createHash, timingSafeEqual } from "node:crypto";

/**
 * The web session, without I/O. The session cookie holds the user's API bearer token (HttpOnly,
 * so page scripts never see it); the CSRF token is derived from it, so it needs no storage, is
 * the same on every copy of the web app, and dies with the API token.
 */

export const SESSION_COOKIE = "iota_session";
export const COOKIE_PATH = "/iota";

/** An API token is 128 hex characters; anything else in the cookie is ignored. */
const TOKEN_SHAPE = /^[0-9a-f]{32,256}$/i;

/** The value of one cookie in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) {
    return undefined;
  }
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

/** The API token of a request's session cookie, when it has the shape of one. */
export function sessionToken(cookieHeader: string | undefined): string | undefined {
  const value = cookieValue(cookieHeader, SESSION_COOKIE);
  return value !== undefined && TOKEN_SHAPE.test(value) ? value : undefined;
}

/** The CSRF token of a session: a one-way function of its API token. */
export function csrfToken(apiToken: string): string {
  return createHash("sha256").update(`iota-web-csrf\u0000${apiToken}`).digest("hex");
}

/** True when `given` is the session's CSRF token (constant-time). */
export function csrfMatches(apiToken: string, given: string | undefined): boolean {
  if (given === undefined) {
    return false;
  }
  const expected = Buffer.from(csrfToken(apiToken));
  const actual = Buffer.from(given);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A Set-Cookie value for the session (empty token and maxAge 0 clear it). */
export function sessionCookie(
  token: string,
  options: { secure: boolean; clear?: boolean },
): string {
  const parts = [
    `${SESSION_COOKIE}=${options.clear ? "" : token}`,
    `Path=${COOKIE_PATH}`,
    "HttpOnly",
    "SameSite=Strict",
  ];
  if (options.secure) {
    parts.push("Secure");
  }
  if (options.clear) {
    parts.push("Max-Age=0");
  }
  return parts.join("; ");
}

/**
 * True when a state-changing request comes from our own pages: an `Origin` header (every browser
 * sends one on POST/PATCH/DELETE) must name this host; without one, `Sec-Fetch-Site` must not
 * say cross-site. Non-browser clients send neither and rely on the CSRF token alone.
 */
export function sameOrigin(headers: {
  origin?: string | undefined;
  host?: string | undefined;
  fetchSite?: string | undefined;
}): boolean {
  if (headers.origin !== undefined && headers.origin !== "null") {
    try {
      return new URL(headers.origin).host === headers.host;
    } catch {
      return false;
    }
  }
  if (headers.origin === "null") {
    return false;
  }
  return headers.fetchSite === undefined || ["same-origin", "none"].includes(headers.fetchSite);
}
