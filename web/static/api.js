// The session and every call to the REST API (through /iota/api, which adds the bearer token).

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** Filled by loadSession(): { username, read_only, csrf, tile_url, ttn_console_url, … } */
export const session = {};

function detailOf(body, status) {
  if (typeof body?.detail === "string") {
    return body.detail;
  }
  if (Array.isArray(body?.detail)) {
    return body.detail.map((d) => `${(d.loc ?? []).join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

function toLogin() {
  sessionStorage.setItem("iota-next", location.hash);
  location.assign("/iota/login");
}

export async function loadSession() {
  const answer = await fetch("/iota/session", { headers: { accept: "application/json" } });
  if (answer.status === 401) {
    toLogin();
    throw new ApiError(401, "Not signed in");
  }
  if (!answer.ok) {
    throw new ApiError(answer.status, "The server did not answer");
  }
  Object.assign(session, await answer.json());
  return session;
}

/** Sends a request to /iota<path>; changes carry the CSRF token. Returns the parsed body. */
export async function call(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET") {
    headers["x-csrf-token"] = session.csrf;
  }
  if (body !== undefined) {
    headers["content-type"] = "application/json";
  }
  const answer = await fetch(`/iota${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (answer.status === 401) {
    toLogin();
  }
  const text = await answer.text();
  const parsed = text === "" ? null : JSON.parse(text);
  if (!answer.ok) {
    throw new ApiError(
      answer.status,
      answer.status === 403 && !parsed?.detail?.includes?.("CSRF")
        ? "You do not have sufficient permissions to make this change"
        : detailOf(parsed, answer.status),
    );
  }
  return parsed;
}

export const api = {
  get: (path) => call("GET", `/api${path}`),
  post: (path, body) => call("POST", `/api${path}`, body),
  patch: (path, body) => call("PATCH", `/api${path}`, body),
  delete: (path) => call("DELETE", `/api${path}`),
};

/** A GET that answers undefined on 404 (no mapping, no device). */
export async function getOrNone(path) {
  try {
    return await api.get(path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      return undefined;
    }
    throw err;
  }
}
