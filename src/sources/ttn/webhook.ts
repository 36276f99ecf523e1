import type { Server } from "node:http";

import express from "express";

import type { Component, Dependencies } from "../../runtime/component.js";
import { closeServer, listen, portOf } from "../../runtime/http.js";
import { createOpsRouter } from "../../runtime/ops.js";
import { Batcher } from "../../core/batcher.js";
import { IngestPipeline, type IngestItem, type IngestResult } from "../pipeline.js";
import { Admission } from "./admission.js";
import { TtnApiClient } from "./api-client.js";
import { authConfigured, openWebhookWarning, webhookAuthMiddleware } from "./auth.js";
import { DecoderNames } from "./decoder-names.js";
import { DecoderPool } from "./decoders/decoder-pool.js";
import { MetadataFetcher } from "./metadata-fetcher.js";
import { readBody, TOO_LARGE } from "./read-body.js";
import { loadTtnSettings } from "./settings.js";
import { buildWebhookItem, oversizedWebhookItem } from "./webhook-items.js";

/**
 * Queue (behind QUEUE_PREFIX, on the dead-letter exchange) that receives every rejected webhook
 * body with its reason; the only record besides the raw store of uplinks answered 204 whose
 * local decoding failed.
 */
export const TTN_DEAD_LETTER_QUEUE = "ttn_webhook.dead";

/** Rejections that are answered 204: valid TTN traffic that The Things Stack must not retry. */
const ANSWERED_204 = /^decoder_/;

/** Devices this process has seen; a device not among them may be new and need metadata. */
const SEEN_LIMIT = 100_000;

/**
 * The Things Stack webhook (IoTa's `POST /ttn/webhook/up`, port 5688). Each request is answered
 * only when its effect is durable: 204 once the raw body is stored and its normalised message
 * is confirmed by RabbitMQ or, while RabbitMQ cannot take it, committed to the outbox (published
 * in order once RabbitMQ is back, src/sources/outbox-relay.ts); 400 with a reason for a body that is not an uplink (its raw copy is
 * kept); 204 too for an uplink whose local decoder failed (raw kept, dead-lettered with the
 * reason: The Things Stack sent nothing wrong); 503 when PostgreSQL cannot take it now (or
 * RabbitMQ, for a body that must be dead-lettered), so the sender retries; 401 before anything is read when credentials are configured and
 * missing; 503 too, unread and unstored, while TTN_WEBHOOK_MAX_WAITING requests are held already
 * (src/sources/ttn/admission.ts). Requests are gathered into small batches so a burst costs a few queries.
 * `POST /ttn/webhook/<anything else>` accepts every TTN message type and stores it raw. New
 * devices' names and locations are fetched from The Things Stack API in the background.
 */
export function createTtnWebhook(deps: Dependencies): Component {
  const logger = deps.logger.child({ component: "ttn-webhook" });
  const settings = loadTtnSettings(deps.config);
  const pipeline = new IngestPipeline(deps, "ttn", {
    deadLetterQueue: TTN_DEAD_LETTER_QUEUE,
    outbox: true,
  });
  const batcher = new Batcher<IngestItem, IngestResult>({
    process: (items) => pipeline.ingest(items),
    maxSize: 200,
    maxWaitMs: 2,
    // Two batches in flight: while one waits for PostgreSQL or RabbitMQ the next fills. Four
    // made batches half as large for the same load and cost 18 % more CPU per request (webhook
    // and PostgreSQL, measured on 2 cores, issue 11) for no more throughput. The second starts
    // only beside 32 waiting requests: at 500-1,000 req/s batches then grow from 2 to 5 and
    // the machine spends 10-25 % less CPU per request (PostgreSQL most); three or four in
    // flight gave no more at full load.
    concurrency: 2,
    overlapAt: 32,
  });
  const { dir: decodersDir, ...limits } = settings.decoders;
  const decoders =
    decodersDir === undefined
      ? undefined
      : new DecoderPool({
          dir: decodersDir,
          ...limits,
          logger: logger.child({ part: "decoders" }),
        });
  const decoderNames = decoders && new DecoderNames({ db: deps.database.db, logger });
  const api = settings.api;
  const fetcher =
    api.authorization === undefined
      ? undefined
      : new MetadataFetcher({
          db: deps.database.db,
          client: new TtnApiClient({
            url: api.url,
            authorization: api.authorization,
            timeoutMs: api.timeoutMs,
          }),
          logger: logger.child({ part: "metadata" }),
          ratePerSecond: api.ratePerSecond,
          retryInitialMs: api.retryInitialMs,
          retryMaxMs: api.retryMaxMs,
        });
  const seen = new Set<number>();
  const { maxBodyBytes, maxWaiting } = deps.config.ttnWebhook;
  const admission = new Admission({
    maxWaiting,
    onShed: () => deps.metrics.shed.inc({ component: "ttn-webhook" }),
    logger,
  });
  let server: Server | undefined;
  let stopping = false;

  function sawDevice(uid: number | undefined): void {
    if (uid === undefined || seen.has(uid)) {
      return;
    }
    if (seen.size >= SEEN_LIMIT) {
      seen.clear();
    }
    seen.add(uid);
    fetcher?.nudge();
  }

  const handle =
    (uplinkOnly: boolean): express.RequestHandler =>
    async (req, res) => {
      if (stopping) {
        res
          .status(503)
          .set("Retry-After", "5")
          .json({ error: "stopping", message: "shutting down; retry" });
        return;
      }
      const started = process.hrtime.bigint();
      deps.metrics.messagesIn.inc({ component: "ttn-webhook" });
      const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const submitted =
        res.locals[TOO_LARGE] === true
          ? oversizedWebhookItem(bytes, maxBodyBytes)
          : buildWebhookItem(bytes, uplinkOnly, {
              acceptSimulated: settings.acceptSimulated,
              decodeLocally: settings.decoders.locally,
              decoders,
              decoderNames,
            });
      try {
        const pending = batcher.submit(submitted);
        admission.track(res, pending);
        const result = await pending;
        if (result.status === "rejected" && !ANSWERED_204.test(result.reason)) {
          res
            .status(result.reason === "too_large" ? 413 : 400)
            .json({ error: result.reason, message: result.error });
        } else {
          if (result.status === "accepted") {
            sawDevice(result.physicalUid);
          }
          res.status(204).end();
        }
      } catch (err) {
        deps.metrics.retried.inc({ component: "ttn-webhook" });
        logger.warn(
          { err, broker_correlation_id: submitted.raw.correlationId },
          "uplink not durable; answered 503",
        );
        res.status(503).set("Retry-After", "5").json({
          error: "unavailable",
          message: "the message could not be stored now; retry later",
        });
      } finally {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        deps.metrics.processingSeconds.observe({ component: "ttn-webhook" }, seconds);
      }
    };

  const app = express();
  app.disable("x-powered-by");
  const raw = readBody(maxBodyBytes);
  // Credentials are checked before the body is read: a refused request leaves no trace.
  const auth: express.RequestHandler[] = authConfigured(settings.auth)
    ? [webhookAuthMiddleware(settings.auth, logger)]
    : [];
  // Admission after credentials (a stranger learns nothing of our load) and before the body is
  // read (a shed request costs no body and no item).
  const admit = admission.middleware;
  app.post("/ttn/webhook/up", ...auth, admit, raw, handle(true));
  app.post("/ttn/webhook/:event", ...auth, admit, raw, handle(false));
  const component: Component = {
    name: "ttn-webhook",
    async start() {
      await pipeline.start();
      await decoderNames?.start();
      decoders?.warm();
      fetcher?.start();
      server = await listen(app, deps.config.ttnWebhook.port);
      logger.info({ port: portOf(server) }, "TTN webhook listening on /ttn/webhook/up");
      const open = openWebhookWarning(settings.openWebhook, deps.config.production);
      if (open !== undefined) {
        logger.warn(open);
      }
      if (fetcher === undefined) {
        logger.warn(
          "TTN_API_TOKEN is unset: new devices keep their TTN device id as name and get no location; they are fetched once a token is set",
        );
      }
      if (decoders === undefined) {
        logger.info("TTN_DECODERS_DIR is unset: only TTN's own decoded_payload is used");
      }
    },
    async stop() {
      if (stopping) {
        return;
      }
      stopping = true;
      if (server) {
        await closeServer(server);
      }
      await batcher.drained();
      decoderNames?.stop();
      await Promise.all([fetcher?.stop(), decoders?.close()]);
      await pipeline.close();
    },
    port: () => (server ? portOf(server) : undefined),
    acceptsWithoutBroker: pipeline.acceptsWithoutBroker,
  };
  app.use(createOpsRouter(deps, [component]));
  // Oversized or unreadable bodies: a clear 4xx; anything else a bare 500 (details in the log).
  app.use(
    (err: unknown, _req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (res.headersSent) {
        next(err);
        return;
      }
      const status = (err as { status?: number }).status;
      if (status === 413) {
        res.status(413).json({
          error: "too_large",
          message: `body exceeds ${deps.config.ttnWebhook.maxBodyBytes} bytes`,
        });
      } else if (status !== undefined && status >= 400 && status < 500) {
        res.status(status).json({ error: "bad_request", message: (err as Error).message });
      } else {
        logger.error({ err }, "webhook request failed");
        res.status(500).json({ error: "internal", message: "internal error" });
      }
    },
  );
  return component;
}
