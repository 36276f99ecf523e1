import type { Delivery, Outcome } from "../bus/consumer.js";
import type {
  OpenPublisherOptions,
  OpenQueueOptions,
  Publisher,
  QueueIntake,
} from "../bus/ports.js";
import type { OutgoingMessage } from "../bus/publisher.js";
import { QUEUE_NAMES } from "../bus/topology.js";
import type { Config } from "../core/config.js";
import { PermanentError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { Metrics } from "../core/metrics.js";
import {
  decodeMessage,
  messageKey,
  RAW_CORRELATION_HEADER,
  type NormalisedMessage,
} from "../core/message.js";
import type { Db } from "../db/database.js";
import { countAllHeld } from "../db/repositories/held-messages.js";
import {
  insertMappedBatch,
  replayedRawMessages,
  type TimeseriesRow,
} from "../db/repositories/physical-timeseries.js";
import { loadRoutes } from "../db/repositories/routes.js";
import {
  decideRoute,
  LTS_ROUTING_KEY,
  messageWindow,
  newestPerLogicalDevice,
  type RouteDecision,
} from "./route.js";
import { heldMetrics } from "./held-metrics.js";
import { mapperSettings } from "./settings.js";

/** What the mapper needs from its process; wired by the composition root. */
export interface MapperDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Db;
  readonly metrics: Metrics;
  openQueue(options: OpenQueueOptions): QueueIntake;
  openPublisher(options: OpenPublisherOptions): Publisher;
}

/** The mapper as a runnable component. */
export interface MapperComponent {
  readonly name: "mapper";
  start(): Promise<void>;
  stop(): Promise<void>;
  isReady(): boolean;
}

type Parsed =
  | { ok: true; message: NormalisedMessage; key: string; rawId: string }
  | { ok: false; error: PermanentError };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The raw message's id from the source's header; without one, the message's own id. */
function rawIdOf(delivery: Delivery, message: NormalisedMessage): string {
  const header = delivery.headers[RAW_CORRELATION_HEADER];
  const text = Buffer.isBuffer(header) ? header.toString("utf8") : header;
  return typeof text === "string" && UUID.test(text) ? text : message.broker_correlation_id;
}

function parse(delivery: Delivery): Parsed {
  try {
    const message = decodeMessage(delivery.body);
    return { ok: true, message, key: messageKey(message), rawId: rawIdOf(delivery, message) };
  } catch (err) {
    if (err instanceof PermanentError) {
      return { ok: false, error: err };
    }
    throw err;
  }
}

/**
 * The logical mapper: consumes physical messages in batches, stores each in
 * physical_timeseries (idempotently, by msg_key), moves logical devices' last_seen and last_msg,
 * and republishes each message to the logical device whose mapping holds its timestamp, with
 * l_uid, to the logical exchange; the others are held (route.ts). Per batch: one registry query,
 * one insert, one update, one transaction, one confirmed publish round and one ack.
 */
export function createMapper(deps: MapperDeps): MapperComponent {
  const { config, db } = deps;
  const logger = deps.logger.child({ component: "mapper" });
  const settings = mapperSettings(config);
  const held = heldMetrics({
    metrics: deps.metrics,
    logger,
    count: () => countAllHeld(db),
    maxAgeMs: settings.heldCountSeconds * 1000,
  }).held;
  const lts = deps.openPublisher({
    exchange: config.amqp.ltsExchange,
    logger,
    // A logical message nobody subscribes to is still stored in physical_timeseries.
    mandatory: false,
  });
  async function handle(batch: readonly Delivery[]): Promise<Outcome[]> {
    const parsed = batch.map(parse);
    const uids = new Set<number>();
    for (const p of parsed) {
      if (p.ok) {
        uids.add(p.message.p_uid);
      }
    }
    const routes = await loadRoutes(
      db,
      [...uids],
      messageWindow(parsed.flatMap((p) => (p.ok ? [p.message] : []))),
    );
    const now = Date.now();
    const options = {
      now,
      futureToleranceMs: config.futureToleranceSeconds * 1000,
      pastToleranceMs:
        settings.pastToleranceSeconds === undefined
          ? undefined
          : settings.pastToleranceSeconds * 1000,
    };
    const decisions: (RouteDecision | PermanentError)[] = parsed.map((p) =>
      p.ok ? decideRoute(p.message, routes.get(p.message.p_uid), options) : p.error,
    );

    // A raw message a replay has re-normalised since: this earlier normalisation of it (late, or
    // redelivered) is superseded, and is neither stored beside the replay's rows nor forwarded.
    const superseded = await replayedRawMessages(
      db,
      parsed.flatMap((p) => (p.ok ? [p.rawId] : [])),
    );
    const rows: TimeseriesRow[] = [];
    const forwards: Extract<RouteDecision, { kind: "forward" }>[] = [];
    const outgoing: OutgoingMessage[] = [];
    decisions.forEach((d, i) => {
      const p = parsed[i]!;
      if (d instanceof PermanentError || d.kind === "reject" || !p.ok) {
        return;
      }
      if (superseded.has(p.rawId)) {
        logger.info(
          { broker_correlation_id: p.message.broker_correlation_id, raw_correlation_id: p.rawId },
          "message superseded by a replay of its raw message; not stored or forwarded",
        );
        return;
      }
      // Serialised once: the same text is stored and published.
      const json = JSON.stringify(d.stored);
      rows.push({
        physicalUid: d.stored.p_uid,
        logicalUid: d.kind === "forward" ? d.logicalUid : null,
        ts: d.stored.timestamp,
        json,
        msgKey: p.key,
        holdReason: d.kind === "hold" ? d.reason : null,
        rawCorrelationId: p.rawId,
      });
      if (d.kind === "hold") {
        held.inc({ reason: d.reason });
      }
      if (d.kind === "forward") {
        forwards.push(d);
        outgoing.push({
          body: Buffer.from(json, "utf8"),
          messageId: p.key,
          correlationId: d.stored.broker_correlation_id,
          routingKey: LTS_ROUTING_KEY,
        });
      }
    });

    await insertMappedBatch(db, rows, newestPerLogicalDevice(forwards));
    // Stored first, then published: a crash in between republishes on redelivery, and the
    // msg_key makes the second insert a no-op.
    await lts.publish(outgoing);

    return decisions.map((d, i): Outcome => {
      const p = parsed[i]!;
      if (d instanceof PermanentError) {
        return { action: "dead-letter", reason: d.reason, error: d.message };
      }
      if (d.kind === "reject") {
        const correlationId = p.ok ? p.message.broker_correlation_id : undefined;
        return { action: "dead-letter", reason: d.reason, error: d.error, correlationId };
      }
      // A held message is stored (with its reason) and waits for a release: it is done here.
      return { action: "ack" };
    });
  }

  const queue = deps.openQueue({
    component: "mapper",
    queue: QUEUE_NAMES.mapper,
    exchange: config.amqp.ptsExchange,
    handler: handle,
    logger,
  });

  let stopped: Promise<void> | undefined;
  return {
    name: "mapper",
    async start() {
      queue.start();
    },
    stop() {
      stopped ??= queue.stop().then(() => lts.close());
      return stopped;
    },
    isReady: () => queue.isConsuming,
  };
}
