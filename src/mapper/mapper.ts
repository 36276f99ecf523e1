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
import { decodeMessage, messageKey, type NormalisedMessage } from "../core/message.js";
import { parseInstantMicros } from "../core/time.js";
import type { Db } from "../db/database.js";
import {
  insertPhysicalTimeseries,
  type TimeseriesRow,
} from "../db/repositories/physical-timeseries.js";
import { loadRoutes, recordLogicalSightings } from "../db/repositories/routes.js";
import {
  decideRoute,
  LTS_ROUTING_KEY,
  newestPerLogicalDevice,
  type RouteDecision,
} from "./route.js";
import { mapperSettings } from "./settings.js";

/** What the mapper needs from its process; wired by the composition root. */
export interface MapperDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Db;
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
  { ok: true; message: NormalisedMessage; key: string } | { ok: false; error: PermanentError };

function parse(delivery: Delivery): Parsed {
  try {
    const message = decodeMessage(delivery.body);
    return { ok: true, message, key: messageKey(message) };
  } catch (err) {
    if (err instanceof PermanentError) {
      return { ok: false, error: err };
    }
    throw err;
  }
}

/** The earliest and latest message time of a batch, to fetch only the mappings that matter. */
function timeWindow(parsed: readonly Parsed[]): { from: string; to: string } | undefined {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const p of parsed) {
    const micros = p.ok ? parseInstantMicros(p.message.timestamp) : undefined;
    if (micros !== undefined) {
      min = Math.min(min, micros);
      max = Math.max(max, micros);
    }
  }
  if (min > max) {
    return undefined;
  }
  // Whole milliseconds around the exact instants: the window only narrows the query.
  return {
    from: new Date(Math.floor(min / 1000)).toISOString(),
    to: new Date(Math.ceil(max / 1000)).toISOString(),
  };
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
    const routes = await loadRoutes(db, [...uids], timeWindow(parsed));
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

    const rows: TimeseriesRow[] = [];
    const forwards: Extract<RouteDecision, { kind: "forward" }>[] = [];
    const outgoing: OutgoingMessage[] = [];
    decisions.forEach((d, i) => {
      const p = parsed[i]!;
      if (d instanceof PermanentError || d.kind === "reject" || !p.ok) {
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
      });
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

    await db.transaction().execute(async (trx) => {
      await insertPhysicalTimeseries(trx, rows);
      await recordLogicalSightings(trx, newestPerLogicalDevice(forwards));
    });
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
