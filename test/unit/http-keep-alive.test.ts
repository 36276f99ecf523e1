import { get } from "node:http";

import express from "express";
import { describe, expect, it } from "vitest";

import { closeServer, KEEP_ALIVE_TIMEOUT_MS, listen, portOf } from "../../src/runtime/http.js";

describe("listen (every server: TTN webhook, API, web, ops)", () => {
  it("keeps idle connections longer than Go's 90 s and says so in Keep-Alive", async () => {
    const app = express();
    app.get("/", (_req, res) => {
      res.send("ok");
    });
    const server = await listen(app, 0, "127.0.0.1");
    try {
      expect(server.keepAliveTimeout).toBe(KEEP_ALIVE_TIMEOUT_MS);
      expect(KEEP_ALIVE_TIMEOUT_MS).toBeGreaterThan(90_000);
      // Node 20 refuses a server whose headersTimeout exceeds its requestTimeout.
      expect(server.headersTimeout).toBeLessThanOrEqual(server.requestTimeout);
      const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
        get({ host: "127.0.0.1", port: portOf(server), path: "/" }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.headers));
        }).on("error", reject);
      });
      expect(headers["keep-alive"]).toBe(`timeout=${KEEP_ALIVE_TIMEOUT_MS / 1000}`);
    } finally {
      await closeServer(server);
    }
  });
});
