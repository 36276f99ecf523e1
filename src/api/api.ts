import type { IncomingMessage, Server } from "node:http";

import express from "express";

import type { Component, Dependencies } from "../runtime/component.js";
import { closeServer, listen, portOf } from "../runtime/http.js";
import { ConfirmedPublisher } from "../bus/publisher.js";
import { createOpsRouter } from "../runtime/ops.js";
import type { Logger } from "../core/logger.js";
import { createDeadLetterService, type DeadLetterService } from "../dlq/service.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../bus/topology.js";
import { QueueSweeper } from "../bus/queue-sweep.js";
import { mqttSettings } from "../mqtt/settings.js";
import { RetainedTopics } from "../mqtt/retained-topics.js";
import { HealthProbe, type WatchedQueue } from "./health.js";
import { operationsSettings } from "./operations-settings.js";
import { authorise } from "./auth.js";
import { ApiError, bodyReadError, errorHandler } from "./errors.js";
import { docsRouter, openApiDocument } from "./openapi.js";
import { publicOrigin } from "./location.js";
import type { Route } from "./route.js";
import { accountRoutes } from "./routes/account.js";
import { dlqRoutes } from "./routes/dlq.js";
import { eventRoutes } from "./routes/events.js";
import { healthRoutes } from "./routes/health.js";
import { logicalDeviceRoutes } from "./routes/logical-devices.js";
import { mappingRoutes, type ReleaseDependencies } from "./routes/mappings.js";
import { messageRoutes } from "./routes/messages.js";
import { noteRoutes } from "./routes/notes.js";
import { physicalDeviceRoutes } from "./routes/physical-devices.js";
import { rawMessageRoutes } from "./routes/raw-messages.js";
import { sourceRoutes } from "./routes/sources.js";
import { traceRoutes } from "./routes/trace.js";
import { userRoutes } from "./routes/users.js";
import { wombatRoutes, type RetainedScripts } from "./routes/wombats.js";
import { Semaphore } from "./semaphore.js";
import { apiSettings, type ApiSettings } from "./settings.js";

/** IoTa's prefix: every API route lives under it. */
export const API_PREFIX = "/broker/api";

/** What the operator endpoints (web app pages) are built on. */
interface OperatorParts {
  readonly deadLetters: DeadLetterService;
  readonly wombatScripts: RetainedScripts;
  readonly health: HealthProbe;
}

/** Every queue the health page counts: the consumers' queues and every dead-letter queue. */
function watchedQueues(prefix: string, deadLetters: DeadLetterService): WatchedQueue[] {
  const consumers = Object.values(QUEUE_NAMES).map((q) => prefix + q);
  const dead = new Set(deadLetters.queues.map((q) => q.name));
  for (const q of consumers) {
    dead.add(deadLetterQueueName(q));
  }
  return [
    ...consumers.map((name) => ({ name, kind: "consumer" as const })),
    ...[...dead].map((name) => ({ name, kind: "dead letters" as const })),
  ];
}

/** Every route, in matching order: fixed paths before the `{uid}` paths they would match. */
function allRoutes(
  deps: Dependencies,
  settings: ApiSettings,
  logger: Logger,
  releases: ReleaseDependencies,
  operator: OperatorParts,
): Route[] {
  const limits = {
    maxFailures: settings.loginMaxFailures,
    maxFailuresPerUser: settings.loginMaxFailuresPerUser,
    windowSeconds: settings.loginWindowSeconds,
    lockoutSeconds: settings.loginLockoutSeconds,
    maxLockoutSeconds: settings.loginMaxLockoutSeconds,
    trustedSeconds: settings.loginTrustedSeconds,
  };
  const prefix = deps.config.amqp.queuePrefix;
  return [
    ...accountRoutes(limits, settings.tokenTtlSeconds),
    ...noteRoutes(),
    ...physicalDeviceRoutes(),
    ...logicalDeviceRoutes(),
    ...mappingRoutes(releases),
    ...messageRoutes(deps.database, new Semaphore(settings.maxStreams), logger),
    ...rawMessageRoutes(),
    ...sourceRoutes(),
    ...userRoutes(settings.tokenTtlSeconds),
    ...eventRoutes(),
    ...dlqRoutes(operator.deadLetters, prefix),
    ...traceRoutes(operator.deadLetters),
    ...healthRoutes(operator.health),
    ...wombatRoutes(operator.wombatScripts),
  ];
}

/** A body without Content-Type is read as JSON too (FastAPI did); other types are refused. */
function isJson(req: IncomingMessage): boolean {
  const type = req.headers["content-type"];
  return type === undefined || /^application\/([\w.+-]+\+)?json\b/i.test(type.trim());
}

/** Mounts each route: token check, then body parsing, then validation and the handler. */
function apiRouter(
  deps: Dependencies,
  routes: readonly Route[],
  settings: ApiSettings,
  logger: Logger,
): express.Router {
  const maxBodyBytes = settings.maxBodyBytes;
  const parseJson = express.json({ limit: maxBodyBytes, type: isJson });
  const readBody = (req: express.Request, res: express.Response) =>
    new Promise<void>((resolve, reject) => {
      parseJson(req, res, (err?: unknown) =>
        err ? reject(bodyReadError(err, req.get("content-encoding"))) : resolve(),
      );
    });
  const router = express.Router();
  for (const r of routes) {
    router[r.method](r.expressPath, async (req, res) => {
      const user = await authorise(deps.database.db, req, r.access);
      if (r.takesBody) {
        const length = req.get("content-length");
        const hasBody =
          req.get("transfer-encoding") !== undefined || (length !== undefined && length !== "0");
        if (hasBody && !isJson(req)) {
          throw new ApiError(415, "the body must be JSON (Content-Type: application/json)");
        }
        if (hasBody) {
          await readBody(req, res);
        }
      }
      const origin = publicOrigin(
        {
          protocol: req.protocol,
          host: req.get("host"),
          encrypted: (req.socket as { encrypted?: boolean }).encrypted === true,
        },
        settings,
      );
      await r.run(req, res, { user, db: deps.database.db, origin, logger });
    });
  }
  // A known path with another method: FastAPI's 405.
  for (const path of new Set(routes.map((r) => r.expressPath))) {
    router.all(path, (_req, res) => {
      res.status(405).json({ detail: "Method Not Allowed" });
    });
  }
  return router;
}

/**
 * The REST API (`broker run api`): IoTa's endpoints under /broker/api on API_PORT (5687), the
 * OpenAPI document and docs page, and /healthz, /readyz and /metrics.
 */
export function createApi(deps: Dependencies): Component {
  const settings = apiSettings(deps.config);
  const logger = deps.logger.child({ component: "api" });
  // Releases of held messages publish to the logical exchange, as the mapper does; mandatory, so
  // a release with no writer queue bound fails and stays releasable instead of vanishing.
  const lts = new ConfirmedPublisher({
    connection: deps.amqp,
    exchange: deps.config.amqp.ltsExchange,
    logger,
  });
  const operations = operationsSettings(deps.config);
  const deadLetters = createDeadLetterService(deps.amqp, deps.config, deps);
  const sweeper = new QueueSweeper(deps.amqp);
  // The Wombats' broker: WOMBAT_MQTT_URL or MQTT_URL, as the wombat source reads it.
  const wombatMqtt = mqttSettings(deps.config, {
    prefix: "WOMBAT",
    component: "wombat",
    defaultTopics: ["wombat"],
  });
  const wombatScripts = new RetainedTopics({
    url: wombatMqtt.url,
    username: wombatMqtt.username,
    password: wombatMqtt.password,
    root: operations.wombatConfigTopic,
    clientIdPrefix: "iota-router-wombat-config",
    logger,
  });
  const health = new HealthProbe({
    targets: operations.healthTargets,
    timeoutMs: operations.healthTimeoutMs,
    queues: watchedQueues(deps.config.amqp.queuePrefix, deadLetters),
    countQueue: (name) => sweeper.count(name),
    db: deps.database.db,
  });
  const routes = allRoutes(
    deps,
    settings,
    logger,
    { db: deps.database.db, publisher: lts },
    { deadLetters, wombatScripts, health },
  );
  const document = openApiDocument(routes, API_PREFIX);
  let server: Server | undefined;

  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", settings.trustProxy);
  // No page of ours may be framed (the docs page could be clickjacked), and no answer sniffed.
  app.use((_req, res, next) => {
    res.set({
      "X-Frame-Options": "DENY",
      "Content-Security-Policy": "frame-ancestors 'none'",
      "X-Content-Type-Options": "nosniff",
    });
    next();
  });
  // One line per request; never headers or query strings (tokens and passwords travel there).
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on("finish", () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      logger.debug({ method: req.method, path: req.path, status: res.statusCode, ms }, "request");
    });
    next();
  });
  app.use(docsRouter(document, API_PREFIX));
  app.use(API_PREFIX, apiRouter(deps, routes, settings, logger));

  const component: Component = {
    name: "api",
    async start() {
      server = await listen(app, settings.port);
      logger.info({ port: portOf(server) }, `REST API listening on ${API_PREFIX}`);
    },
    async stop() {
      if (server) {
        await closeServer(server);
        server = undefined;
      }
      await lts.close();
      await wombatScripts.stop();
    },
    isReady: () => server !== undefined,
    port: () => (server ? portOf(server) : undefined),
  };
  app.use(createOpsRouter(deps, [component]));
  app.use((_req, res) => {
    res.status(404).json({ detail: "Not Found" });
  });
  app.use(errorHandler(logger, settings.maxBodyBytes));
  return component;
}
