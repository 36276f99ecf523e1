import express from "express";

import type { Component, Dependencies } from "./component.js";
import { Readiness } from "./readiness.js";

/**
 * /healthz (the process is alive), /readyz (PostgreSQL answers, RabbitMQ is connected unless every
 * component works without it, and every component is serving; the database answer is reused for about a second, see Readiness) and
 * /metrics (Prometheus). Mounted on every HTTP port a process has.
 */
export function createOpsRouter(
  deps: Dependencies,
  components: readonly Component[],
): express.Router {
  const router = express.Router();
  const readiness = new Readiness({
    pingDatabase: () => deps.database.ping(1_000),
    amqpConnected: () => deps.amqp.isConnected,
    components,
  });
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    const { ready, postgres, rabbitmq, components: serving } = await readiness.check();
    res.status(ready ? 200 : 503).json({
      status: ready ? "ready" : "not ready",
      postgres,
      rabbitmq,
      components: serving,
    });
  });
  router.get("/metrics", async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  return router;
}
