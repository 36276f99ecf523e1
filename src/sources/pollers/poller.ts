import { Counter, type Registry } from "prom-client";

import type { Component, Dependencies } from "../../runtime/component.js";
import type { PermanentError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { IngestPipeline, type IngestItem, type IngestResult } from "../pipeline.js";
import { VendorHttp } from "./http.js";
import { contentHash, pollCorrelationId } from "./ids.js";
import { PollLoop, type PollOutcome } from "./loop.js";
import { failed, ingestItem } from "./prepared.js";
import type { Progress, ProgressUpdate } from "./progress.js";
import type { PollerSettings } from "./settings.js";
import { loadProgress, saveProgress } from "./state.js";

/** Longest wait for RabbitMQ inside a poll before it counts as incomplete, in ms. */
const CONNECT_WAIT_MS = 2_000;
/** Remembered whole-response rejections (so a vendor stuck on one bad answer is reported once). */
const REJECTION_MEMORY = 1_000;

/** Polled data plus the progress it completes. */
export interface PolledItem {
  readonly item: IngestItem;
  /** Recorded once the item is durable: accepted (published) or rejected for its content. */
  readonly progress?: ProgressUpdate;
}

/** A vendor response that cannot be used at all, for {@link PollContext.reject}. */
export interface Rejection {
  /** What was asked for (e.g. `nodes`); part of the correlation id. */
  readonly what: string;
  readonly text: string;
  readonly error: PermanentError;
}

/** What a vendor's poll function gets. */
export interface PollContext {
  /** Aborts when the component stops: stop promptly. */
  readonly signal: AbortSignal;
  readonly http: VendorHttp;
  readonly logger: Logger;
  /** Every device's progress, read fresh from the database. */
  loadProgress(): Promise<Map<string, Progress>>;
  /**
   * Raw store → device → confirmed publish, in batches; each batch's progress is recorded after
   * it is durable. Throws (TransientError) when PostgreSQL or RabbitMQ is unavailable.
   */
  submit(items: readonly PolledItem[]): Promise<IngestResult[]>;
  /** Stores an unusable response raw and dead-letters it with its reason. */
  reject(rejection: Rejection): Promise<void>;
}

export interface PollerDefinition {
  /** Component name (`broker run <name>`). */
  readonly component: string;
  /** source_name of its devices and raw messages. */
  readonly source: string;
  /** Queue (behind QUEUE_PREFIX) on the dead-letter exchange for rejected vendor data. */
  readonly deadLetterQueue: string;
  readonly settings: PollerSettings;
  readonly poll: (ctx: PollContext) => Promise<PollOutcome>;
}

function pollsCounter(registry: Registry): Counter<"component" | "result"> {
  const name = "broker_poller_polls_total";
  const existing = registry.getSingleMetric(name);
  if (existing) {
    return existing as Counter<"component" | "result">;
  }
  return new Counter({
    name,
    help: "Polls of a vendor API, by how they ended (complete, incomplete, failed)",
    labelNames: ["component", "result"],
    registers: [registry],
  });
}

/**
 * The component around one vendor's poll function: the schedule, the vendor HTTP client, the
 * ingest pipeline (with a dead-letter queue, nobody being there to answer), and progress that
 * advances only behind durable data. The source is added and the dead-letter queue declared on
 * the first poll that reaches PostgreSQL, so a component started while the database is down
 * waits for it instead of failing.
 */
export function createPoller(deps: Dependencies, def: PollerDefinition): Component {
  const logger = deps.logger.child({ component: def.component });
  const { settings } = def;
  const db = deps.database.db;
  const batchSize = deps.config.amqp.batchSize;
  const pipeline = new IngestPipeline(deps, def.source, {
    deadLetterQueue: def.deadLetterQueue,
    connectWaitMs: CONNECT_WAIT_MS,
  });
  const http = new VendorHttp({
    ...settings,
    logger,
    onRetry: () => deps.metrics.retried.inc({ component: def.component }),
  });
  const polls = pollsCounter(deps.metrics.registry);
  const rejected = new Set<string>();
  let started = false;

  async function submit(items: readonly PolledItem[]): Promise<IngestResult[]> {
    const results: IngestResult[] = [];
    for (let i = 0; i < items.length; i += batchSize) {
      const part = items.slice(i, i + batchSize);
      deps.metrics.messagesIn.inc({ component: def.component }, part.length);
      results.push(...(await pipeline.ingest(part.map((p) => p.item))));
      await saveProgress(
        db,
        def.source,
        part.flatMap((p) => (p.progress ? [p.progress] : [])),
      );
    }
    return results;
  }

  async function reject(rejection: Rejection): Promise<void> {
    const hash = contentHash(rejection.text);
    const cid = pollCorrelationId(def.source, `response ${rejection.what}`, hash);
    if (rejected.has(cid)) {
      logger.warn(
        { broker_correlation_id: cid, reason: rejection.error.reason },
        "the vendor sent the same unusable response again; dead-lettered before",
      );
      return;
    }
    const prepared = failed(rejection.text, rejection.error);
    await submit([{ item: ingestItem(prepared, cid, new Date().toISOString()) }]);
    if (rejected.size >= REJECTION_MEMORY) {
      rejected.clear();
    }
    rejected.add(cid);
  }

  const loop = new PollLoop({
    name: def.component,
    intervalMs: settings.intervalMs,
    retryInitialMs: settings.retryInitialMs,
    retryMaxMs: settings.retryMaxMs,
    logger,
    onPoll: (result) => polls.inc({ component: def.component, result }),
    poll: async (signal) => {
      if (!started) {
        await pipeline.start();
        started = true;
      }
      return def.poll({
        signal,
        http,
        logger,
        loadProgress: () => loadProgress(db, def.source),
        submit,
        reject,
      });
    },
  });

  return {
    name: def.component,
    async start() {
      loop.start();
      logger.info(
        { api: settings.baseUrl, intervalSeconds: settings.intervalMs / 1000 },
        "poller started; first poll now",
      );
    },
    async stop() {
      await loop.stop();
      await pipeline.close();
    },
  };
}
