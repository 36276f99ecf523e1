import type { Server } from "node:http";

import express from "express";

import type { Component, Dependencies } from "../../app/component.js";
import { closeServer, listen, portOf } from "../../app/http.js";
import { createOpsRouter } from "../../app/ops.js";
import { Batcher } from "../../core/batcher.js";
import { PermanentError } from "../../core/errors.js";
import { parseInstant } from "../../core/time.js";
import { IngestPipeline, type IngestItem, type IngestResult } from "../pipeline.js";
import {
  normaliseTtnUplink,
  parseUplink,
  ttnCorrelationId,
  ttnMessageType,
  uplinkTime,
} from "./normalise.js";

/** Decoded request body: JSON when it parses, otherwise text for the raw store. */
interface Body {
  readonly json: unknown;
  readonly text: string | undefined;
}

function decodeBody(bytes: Buffer): Body {
  // PostgreSQL text and jsonb cannot hold NUL; such bodies are kept as text with NUL replaced.
  const text = bytes.toString("utf8").replaceAll("\u0000", "\uFFFD");
  if (text.includes("\\u0000")) {
    return { json: safeParse(text), text };
  }
  const json = safeParse(text);
  return json === undefined ? { json, text } : { json, text: undefined };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The Things Stack webhook (IoTa's `POST /ttn/webhook/up`, port 5688). Each request is answered
 * only when its effect is durable: 204 once the raw uplink is stored and its normalised message
 * is confirmed by RabbitMQ; 400 with a reason for a body that is not an uplink (its raw copy is
 * kept); 503 when PostgreSQL or RabbitMQ cannot take it now, so the sender retries. Requests are
 * gathered into small batches so a burst costs a few queries, not a few per uplink.
 * `POST /ttn/webhook/<anything else>` accepts every TTN message type and stores it raw.
 */
export function createTtnWebhook(deps: Dependencies): Component {
  const logger = deps.logger.child({ component: "ttn-webhook" });
  const pipeline = new IngestPipeline(deps, "ttn");
  const batcher = new Batcher<IngestItem, IngestResult>({
    process: (items) => pipeline.ingest(items),
    maxSize: 200,
    maxWaitMs: 2,
    concurrency: 4,
  });
  let server: Server | undefined;
  let stopping = false;

  function item(bytes: Buffer, uplinkOnly: boolean): IngestItem {
    const arrivedAt = new Date().toISOString();
    const { json, text } = decodeBody(bytes);
    const correlationId = ttnCorrelationId(json, bytes);
    let ts = arrivedAt;
    if (json !== undefined) {
      try {
        const t = uplinkTime(parseUplink(json));
        if (t !== undefined && parseInstant(t) !== undefined) {
          ts = t;
        }
      } catch {
        // not an uplink: the arrival time stands
      }
    }
    return {
      raw: { correlationId, ts, ...(text === undefined ? { json } : { text }) },
      normalise: () => {
        if (json === undefined) {
          throw new PermanentError("invalid_json", "body is not JSON");
        }
        if (uplinkOnly) {
          return normaliseTtnUplink(json, correlationId, arrivedAt);
        }
        const type = ttnMessageType(json);
        if (type === undefined) {
          throw new PermanentError(
            "not_ttn_message",
            "body is not a The Things Stack webhook message",
          );
        }
        return type === "uplink_message"
          ? normaliseTtnUplink(json, correlationId, arrivedAt)
          : undefined;
      },
    };
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
      const submitted = item(bytes, uplinkOnly);
      try {
        const result = await batcher.submit(submitted);
        if (result.status === "rejected") {
          res.status(400).json({ error: result.reason, message: result.error });
        } else {
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
  const raw = express.raw({ type: () => true, limit: deps.config.ttnWebhook.maxBodyBytes });
  app.post("/ttn/webhook/up", raw, handle(true));
  app.post("/ttn/webhook/:event", raw, handle(false));
  const component: Component = {
    name: "ttn-webhook",
    async start() {
      await pipeline.start();
      server = await listen(app, deps.config.ttnWebhook.port);
      logger.info({ port: portOf(server) }, "TTN webhook listening on /ttn/webhook/up");
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
      await pipeline.close();
    },
    port: () => (server ? portOf(server) : undefined),
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
