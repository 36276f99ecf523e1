import type { Server } from "node:http";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";

import express from "express";

import type { Component, Dependencies } from "../runtime/component.js";
import { closeServer, listen, portOf } from "../runtime/http.js";
import { createOpsRouter } from "../runtime/ops.js";
import { hashToken, tokenPrefix } from "../core/passwords.js";
import { deleteToken } from "../db/repositories/users.js";
import { assetDirs } from "./assets.js";
import { csrfMatches, csrfToken, sameOrigin, sessionCookie, sessionToken } from "./session.js";
import { webSettings, type WebSettings } from "./settings.js";

/** IoTa's path: the whole app lives under it. */
export const WEB_PREFIX = "/iota";

/** The pages IoTa had at their own paths; ours are routes of one page, after a `#`. */
const PAGES =
  /^\/(physical-devices|logical-devices|map|account|wombats|health|dead-letters|events|trace|replace|(physical|logical)-device\/\d+)\/?$/;

/** Response headers the API sends that the browser may see. */
const PASSED_HEADERS = ["content-type", "content-disposition", "retry-after", "location"];

function securityHeaders(settings: WebSettings): express.RequestHandler {
  let tiles = "";
  if (settings.tileUrl?.startsWith("http")) {
    tiles = " " + new URL(settings.tileUrl.replace(/\{[^}]*\}/g, "0")).origin;
  }
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data:${tiles}`,
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
  ].join("; ");
  return (_req, res, next) => {
    res.set({
      "Content-Security-Policy": csp,
      "X-Frame-Options": "DENY",
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "same-origin",
    });
    next();
  };
}

/**
 * The operator's web app (`broker run web`): IoTa's pages under /iota on WEB_PORT (5000). Pages
 * are static files; their data goes through /iota/api/*, which this server forwards to the REST
 * API with the session's bearer token, so the API's users, read-only flag and validation apply
 * unchanged. See doc/webapp.md.
 */
export function createWeb(deps: Dependencies): Component {
  const settings = webSettings(deps.config);
  const logger = deps.logger.child({ component: "web" });
  const dirs = assetDirs();
  let server: Server | undefined;

  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", settings.trustProxy);
  app.use(securityHeaders(settings));

  const secure = (req: express.Request) =>
    settings.secureCookies === "always" || (settings.secureCookies === "auto" && req.secure);

  /** Calls the REST API for a browser, as the client (its address goes in X-Forwarded-For). */
  const callApi = (
    req: express.Request,
    path: string,
    init: { method?: string; token?: string; headers?: Record<string, string>; body?: Buffer },
  ) => {
    const headers: Record<string, string> = {
      "x-forwarded-for": req.ip ?? req.socket.remoteAddress ?? "",
      "x-forwarded-proto": req.protocol,
      ...init.headers,
    };
    if (init.token !== undefined) {
      headers.authorization = `Bearer ${init.token}`;
    }
    return fetch(`${settings.apiUrl}/broker/api${path}`, {
      method: init.method ?? "GET",
      headers,
      redirect: "manual",
      ...(init.body !== undefined && init.body.length > 0 ? { body: init.body } : {}),
    });
  };

  /** A change must come from our pages: same origin and the session's CSRF token. */
  const changeAllowed = (req: express.Request, token: string) =>
    sameOrigin({
      origin: req.get("origin"),
      host: req.get("host"),
      fetchSite: req.get("sec-fetch-site"),
    }) && csrfMatches(token, req.get("x-csrf-token"));

  const refuse = (res: express.Response, status: number, detail: string) => {
    res.status(status).set("Cache-Control", "no-store").json({ detail });
  };

  const router = express.Router();
  const json = express.json({ limit: "16kb" });
  const raw = express.raw({ type: () => true, limit: settings.maxBodyBytes });

  router.get("/", (req, res) => {
    if (!sessionToken(req.get("cookie"))) {
      res.redirect(302, `${WEB_PREFIX}/login`);
      return;
    }
    res.set("Cache-Control", "no-store").sendFile("index.html", { root: dirs.own });
  });
  router.get("/login", (_req, res) => {
    res.set("Cache-Control", "no-store").sendFile("login.html", { root: dirs.own });
  });
  router.get(PAGES, (req, res) => {
    res.redirect(302, `${WEB_PREFIX}/#${req.path.replace(/\/$/, "")}`);
  });
  router.use("/static", express.static(dirs.own, { index: false, fallthrough: false }));
  router.use("/vendor/leaflet", express.static(dirs.leaflet, { index: false, fallthrough: false }));
  router.use("/vendor/uplot", express.static(dirs.uplot, { index: false, fallthrough: false }));

  // Log in: the API checks the password and counts failures against the real client address.
  router.post("/session", json, async (req, res) => {
    const body = req.body as { username?: unknown; password?: unknown } | undefined;
    if (
      !sameOrigin({
        origin: req.get("origin"),
        host: req.get("host"),
        fetchSite: req.get("sec-fetch-site"),
      })
    ) {
      refuse(res, 403, "Cross-site request refused");
      return;
    }
    if (typeof body?.username !== "string" || typeof body.password !== "string") {
      refuse(res, 422, "username and password are required");
      return;
    }
    const basic = Buffer.from(`${body.username}:${body.password}`).toString("base64");
    const answer = await callApi(req, "/token", { headers: { authorization: `Basic ${basic}` } });
    if (answer.status !== 200) {
      const retry = answer.headers.get("retry-after");
      if (retry) {
        res.set("Retry-After", retry);
      }
      const detail = ((await answer.json().catch(() => ({}))) as { detail?: unknown }).detail;
      refuse(res, answer.status, typeof detail === "string" ? detail : "Login failed");
      return;
    }
    const token = (await answer.json()) as string;
    res
      .set("Set-Cookie", sessionCookie(token, { secure: secure(req) }))
      .set("Cache-Control", "no-store")
      .json({ csrf: csrfToken(token) });
  });

  // Who is signed in, with the CSRF token the page sends back on every change.
  router.get("/session", async (req, res) => {
    const token = sessionToken(req.get("cookie"));
    const me = token === undefined ? undefined : await callApi(req, "/me", { token });
    if (!token || !me || me.status !== 200) {
      refuse(res, me?.status === 503 ? 503 : 401, "Not signed in");
      return;
    }
    const user = (await me.json()) as Record<string, unknown>;
    res.set("Cache-Control", "no-store").json({
      username: user.username,
      read_only: user.read_only,
      csrf: csrfToken(token),
      tile_url: settings.tileUrl ?? null,
      tile_attribution: settings.tileAttribution,
      ttn_console_url: settings.ttnConsoleUrl,
    });
  });

  // Sign out: the session's API token is forgotten, so a copied cookie is worthless too.
  router.delete("/session", async (req, res) => {
    const token = sessionToken(req.get("cookie"));
    if (token && !changeAllowed(req, token)) {
      refuse(res, 403, "Missing or wrong CSRF token");
      return;
    }
    if (token) {
      await deleteToken(deps.database.db, {
        prefix: tokenPrefix(token),
        tokenHash: hashToken(token),
      });
    }
    res
      .set("Set-Cookie", sessionCookie("", { secure: secure(req), clear: true }))
      .status(204)
      .end();
  });

  // Change password: the API revokes every token and returns a new one for this session.
  router.post("/session/password", json, async (req, res) => {
    const token = sessionToken(req.get("cookie"));
    if (!token) {
      refuse(res, 401, "Not signed in");
      return;
    }
    if (!changeAllowed(req, token)) {
      refuse(res, 403, "Missing or wrong CSRF token");
      return;
    }
    const password = (req.body as { password?: unknown } | undefined)?.password;
    const answer = await callApi(req, "/change-password", {
      method: "POST",
      token,
      headers: { "content-type": "application/json" },
      body: Buffer.from(JSON.stringify({ password })),
    });
    if (answer.status !== 200) {
      res.status(answer.status).set("Cache-Control", "no-store");
      res.type("application/json").send(Buffer.from(await answer.arrayBuffer()));
      return;
    }
    const fresh = (await answer.json()) as string;
    res
      .set("Set-Cookie", sessionCookie(fresh, { secure: secure(req) }))
      .set("Cache-Control", "no-store")
      .json({ csrf: csrfToken(fresh) });
  });

  // Everything else a page needs is the REST API itself, as the signed-in user.
  router.all(/^\/api\/(.*)$/, raw, async (req, res) => {
    const token = sessionToken(req.get("cookie"));
    if (!token) {
      refuse(res, 401, "Not signed in");
      return;
    }
    const path = req.path.slice("/api".length);
    // Dot segments (plain or escaped) would be resolved by the URL parser into another path.
    if (/(^|\/)(\.|%2e){1,2}(\/|$)|%2f|%5c|\\/i.test(path)) {
      refuse(res, 404, "Not Found");
      return;
    }
    if (/^\/(token|change-password)\/?$/.test(path)) {
      refuse(res, 404, "Not Found");
      return;
    }
    if (!["GET", "HEAD"].includes(req.method) && !changeAllowed(req, token)) {
      refuse(res, 403, "Missing or wrong CSRF token");
      return;
    }
    const query = req.originalUrl.includes("?")
      ? req.originalUrl.slice(req.originalUrl.indexOf("?"))
      : "";
    const headers: Record<string, string> = {};
    for (const name of ["content-type", "accept"]) {
      const value = req.get(name);
      if (value !== undefined) {
        headers[name] = value;
      }
    }
    const answer = await callApi(req, path + query, {
      method: req.method,
      token,
      headers,
      ...(Buffer.isBuffer(req.body) ? { body: req.body } : {}),
    });
    res.status(answer.status).set("Cache-Control", "no-store");
    for (const name of PASSED_HEADERS) {
      const value = answer.headers.get(name);
      if (value !== null) {
        res.set(name, value);
      }
    }
    if (answer.body === null) {
      res.end();
      return;
    }
    const body = Readable.fromWeb(answer.body as WebReadableStream<Uint8Array>);
    body.on("error", (err) => {
      logger.warn({ err: err.message }, "API answer cut short");
      res.destroy(err);
    });
    body.pipe(res);
  });

  router.use((_req, res) => {
    res.status(404).type("text/plain").send("Not Found");
  });

  // Express matches "/iota" and "/iota/" alike; only the bare one is sent on.
  app.get(WEB_PREFIX, (req, res, next) => {
    if (req.originalUrl.split("?")[0] === WEB_PREFIX) {
      res.redirect(302, `${WEB_PREFIX}/`);
    } else {
      next();
    }
  });
  app.use(WEB_PREFIX, router);

  const component: Component = {
    name: "web",
    async start() {
      server = await listen(app, settings.port);
      logger.info({ port: portOf(server), api: settings.apiUrl }, `web app on ${WEB_PREFIX}/`);
    },
    async stop() {
      if (server) {
        await closeServer(server);
        server = undefined;
      }
    },
    isReady: () => server !== undefined,
    port: () => (server ? portOf(server) : undefined),
  };
  app.use(createOpsRouter(deps, [component]));
  app.use((_req, res) => {
    res.status(404).type("text/plain").send("Not Found");
  });
  // The API unreachable (or any other failure) is a 502 with a line in the log, never a stack.
  app.use(
    (err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      const status =
        typeof err === "object" && err !== null && "status" in err && typeof err.status === "number"
          ? err.status
          : 502;
      if (status >= 500) {
        logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "web request failed",
        );
      }
      if (!res.headersSent) {
        const detail =
          status === 502
            ? "The REST API did not answer"
            : status === 404
              ? "Not Found"
              : "Bad request";
        refuse(res, status, detail);
      } else {
        res.destroy();
      }
    },
  );
  return component;
}
