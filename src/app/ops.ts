import express from "express";

import type { Component, Dependencies } from "./component.js";

/**
 * /healthz (the process is alive), /readyz (PostgreSQL answers, RabbitMQ is connected and every
 * component is serving) and /metrics (Prometheus). Mounted on every HTTP port a process has.
 */
export function createOpsRouter(
  deps: Dependencies,
  components: readonly Component[],
): express.Router {
  const router = express.Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    const postgres = await deps.database.ping(1_000);
    const rabbitmq = deps.amqp.isConnected;
    const notReady = components.filter((c) => c.isReady && !c.isReady()).map((c) => c.name);
    const ready = postgres && rabbitmq && notReady.length === 0;
    res.status(ready ? 200 : 503).json({
      status: ready ? "ready" : "not ready",
      postgres,
      rabbitmq,
      components: Object.fromEntries(components.map((c) => [c.name, !notReady.includes(c.name)])),
    });
  });
  router.get("/metrics", async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  return router;
}
