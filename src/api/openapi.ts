import { createRequire } from "node:module";
import { dirname } from "node:path";

import express from "express";
import { createDocument, type ZodOpenApiPathsObject } from "zod-openapi";

import type { Route } from "./route.js";

/**
 * The OpenAPI 3.1 document, generated from the routes' own zod schemas, and an interactive docs
 * page (Swagger UI, served from the swagger-ui-dist package: no CDN, works offline). Both are
 * public, as in IoTa, at `/broker/api/openapi.json` and `/broker/api/docs`, and also at IoTa's
 * own `/openapi.json` and `/docs`, so IoTa's nginx configuration keeps working.
 */

export function openApiDocument(routes: readonly Route[], prefix: string): object {
  const paths: ZodOpenApiPathsObject = {};
  for (const r of routes) {
    paths[r.path] = { ...paths[r.path], [r.method]: r.operation };
  }
  return createDocument({
    openapi: "3.1.0",
    info: {
      title: "IoT Device Broker",
      version: "1.0.0",
      description:
        "IoTa-compatible management API: physical and logical devices, mappings, notes and " +
        "messages, with IoTa's paths, bodies and status codes, plus additive extensions. " +
        "Log in with GET /token (Basic) and send the token as `Authorization: Bearer <token>`.",
    },
    servers: [{ url: prefix }],
    components: {
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer" },
        basicAuth: { type: "http", scheme: "basic" },
      },
    },
    paths,
  });
}

const ASSETS = new Set([
  "swagger-ui.css",
  "swagger-ui-bundle.js",
  "favicon-32x32.png",
  "favicon-16x16.png",
]);

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>IoT Device Broker API</title>
<link rel="icon" type="image/png" href="docs-assets/favicon-32x32.png">
<link rel="stylesheet" href="docs-assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs-assets/swagger-ui-bundle.js"></script>
<script src="docs-assets/init.js"></script>
</body>
</html>
`;

// The document sits beside the page, whichever prefix (or none) the page was reached under.
const INIT = `window.ui = SwaggerUIBundle({
  url: window.location.pathname.replace(/docs$/, "openapi.json"),
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default validator badge calls an online service; the page stays offline.
  validatorUrl: null,
});
`;

/** GET routes for the document, the page and its assets, under `prefix` and at the root. */
export function docsRouter(document: object, prefix: string): express.Router {
  const assetsDir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const body = JSON.stringify(document);
  const router = express.Router({ strict: true });
  for (const base of [prefix, ""]) {
    router.get(`${base}/openapi.json`, (_req, res) => {
      res.type("application/json").send(body);
    });
    router.get(`${base}/docs`, (_req, res) => {
      res.type("html").send(PAGE);
    });
    router.get(`${base}/docs/`, (_req, res) => {
      res.redirect(301, `${base}/docs`);
    });
    router.get(`${base}/docs-assets/init.js`, (_req, res) => {
      res.type("application/javascript").send(INIT);
    });
    router.get(`${base}/docs-assets/:file`, (req, res, next) => {
      const file = req.params.file;
      if (!ASSETS.has(file)) {
        next();
        return;
      }
      res.sendFile(file, { root: assetsDir, maxAge: "1d" });
    });
  }
  return router;
}
