import { Counter } from "prom-client";

import type { Component, Dependencies } from "../runtime/component.js";
import { backoffDelay, sleep } from "../core/backoff.js";
import { Batcher } from "../core/batcher.js";
import { PermanentError } from "../core/errors.js";
import type { Metrics } from "../core/metrics.js";
import { mqttCorrelationId, type Decoded } from "../mqtt/payload.js";
import { mqttSettings, type MqttSourceNames } from "../mqtt/settings.js";
import { MqttSubscriber, type MqttDelivery } from "../mqtt/subscriber.js";
import {
  IngestPipeline,
  MQTT_TOPIC_HEADER,
  type IngestItem,
  type IngestResult,
  type Normalised,
} from "./pipeline.js";

/** One MQTT message as a normaliser sees it. */
export interface MqttArrival {
  readonly topic: string;
  readonly correlationId: string;
  /** Receipt time, ISO-8601 UTC. */
  readonly arrivedAt: string;
}

/** A point, record or device left out of the output, and why (logged and counted, never silent). */
export interface DropNote {
  readonly reason: string;
  readonly detail: string;
}

/** What a source's pure normaliser makes of one MQTT message. */
export interface MqttNormalisation {
  /** One entry per device the message speaks for (YDOC: several). Empty: kept raw only. */
  readonly devices: readonly Normalised[];
  readonly notes: readonly DropNote[];
}

/** A source on MQTT: its names, how its payload decodes, and its pure rules. */
export interface MqttSourceSpec<T> extends MqttSourceNames {
  /** `sources.source_name` (IoTa's: `ydoc`, `wombat`, `dragino_json`, `ict_mqtt`). */
  readonly sourceName: string;
  /** Queue (behind QUEUE_PREFIX) that receives rejected payloads with their reason. */
  readonly deadLetterQueue: string;
  readonly decode: (payload: Buffer, maxBytes: number) => Decoded<T>;
  /** The message's own time for `raw_messages.ts`, when it has a plausible one. */
  readonly rawTime: (value: T) => string | undefined;
  /** Throws PermanentError for content that can never be used. */
  readonly normalise: (value: T, arrival: MqttArrival) => MqttNormalisation;
  /** Extra work at start (after the pipeline) and stop (before it closes). */
  readonly start?: () => Promise<void>;
  readonly stop?: () => Promise<void>;
}

/** Retry delays while PostgreSQL or RabbitMQ cannot take a message. */
const RETRY = { initialMs: 500, maxMs: 30_000 };

/** Counter of points and records the MQTT normalisers left out, by reason (one per registry). */
function droppedCounter(metrics: Metrics): Counter<"component" | "reason"> {
  const name = "broker_points_dropped_total";
  const existing = metrics.registry.getSingleMetric(name);
  if (existing) {
    return existing as Counter<"component" | "reason">;
  }
  return new Counter({
    name,
    help: "Points or records a source left out of its normalised messages, by reason",
    labelNames: ["component", "reason"],
    registers: [metrics.registry],
  });
}

/**
 * The pipeline items for one delivery. Everything that could fail on content runs here, in
 * memory, but its failure is only raised from `normalise`, which the pipeline calls after the
 * raw copy is committed: raw first. A message about several devices becomes one item per device,
 * all carrying the same raw copy (stored once: its correlation id is unique).
 */
export function mqttItems<T>(
  spec: Pick<MqttSourceSpec<T>, "decode" | "rawTime" | "normalise">,
  delivery: Pick<MqttDelivery, "topic" | "payload">,
  arrival: MqttArrival,
  maxPayloadBytes: number,
): { items: IngestItem[]; notes: readonly DropNote[] } {
  const decoded = spec.decode(delivery.payload, maxPayloadBytes);
  const raw = (ts: string) => ({ correlationId: arrival.correlationId, ts, ...decoded.raw });
  // The topic travels with a dead letter: a replay needs it (correlation id, normalisers).
  const replayHeaders = { [MQTT_TOPIC_HEADER]: delivery.topic };
  if (!decoded.ok) {
    const error = new PermanentError(decoded.reason, decoded.error);
    return {
      items: [{ raw: raw(arrival.arrivedAt), normalise: () => failWith(error), replayHeaders }],
      notes: [],
    };
  }
  let ts = arrival.arrivedAt;
  try {
    ts = spec.rawTime(decoded.value) ?? ts;
  } catch {
    // no usable device time: the arrival time stands
  }
  let result: MqttNormalisation;
  try {
    result = spec.normalise(decoded.value, arrival);
  } catch (err) {
    return { items: [{ raw: raw(ts), normalise: () => failWith(err), replayHeaders }], notes: [] };
  }
  const items: IngestItem[] =
    result.devices.length === 0
      ? [{ raw: raw(ts), normalise: () => undefined }]
      : result.devices.map((device) => ({ raw: raw(ts), normalise: () => device, replayHeaders }));
  return { items, notes: result.notes };
}

function failWith(err: unknown): never {
  throw err;
}

/**
 * Builds the component for an MQTT source: a durable subscription whose every message is stored
 * raw, normalised, and confirmed by RabbitMQ (or, while RabbitMQ is away, committed to the
 * outbox, published once it is back) before its PUBACK; bad content is dead-lettered with a
 * reason (and acknowledged); an outage of PostgreSQL (or of RabbitMQ for content that must be
 * dead-lettered) keeps the message in hand, retried with backoff, unacknowledged, so neither a
 * restart nor a broker reconnect can lose it.
 */
export function createMqttSource<T>(deps: Dependencies, spec: MqttSourceSpec<T>): Component {
  const settings = mqttSettings(deps.config, spec);
  const component = spec.component;
  const logger = deps.logger.child({ component });
  const pipeline = new IngestPipeline(deps, spec.sourceName, {
    deadLetterQueue: spec.deadLetterQueue,
    connectWaitMs: 2_000,
    // While RabbitMQ is away a stored message is committed to the outbox and acknowledged.
    outbox: true,
  });
  const batcher = new Batcher<IngestItem, IngestResult>({
    process: (items) => pipeline.ingest(items),
    maxSize: 200,
    maxWaitMs: 5,
    concurrency: 2,
  });
  const dropped = droppedCounter(deps.metrics);
  const stopping = new AbortController();
  /** By correlation id: a redelivery of a message still in hand joins it instead of racing it. */
  const inHand = new Map<string, Promise<void>>();

  async function ingest(delivery: MqttDelivery, correlationId: string): Promise<void> {
    const started = process.hrtime.bigint();
    const arrival = { topic: delivery.topic, correlationId, arrivedAt: new Date().toISOString() };
    const { items, notes } = mqttItems(spec, delivery, arrival, settings.maxPayloadBytes);
    const log = { broker_correlation_id: correlationId, topic: delivery.topic };
    for (const note of notes) {
      dropped.inc({ component, reason: note.reason });
    }
    if (notes.length > 0) {
      logger.info({ ...log, dropped: notes }, "left out of the normalised messages");
    }
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && stopping.signal.aborted) {
        throw new Error("stopping: left unacknowledged for redelivery");
      }
      try {
        const results = await Promise.all(items.map((item) => batcher.submit(item)));
        const published = results.reduce(
          (n, r) => n + (r.status === "accepted" ? r.published : 0),
          0,
        );
        logger.debug({ ...log, published }, "MQTT message durable; PUBACK");
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        deps.metrics.processingSeconds.observe({ component }, seconds);
        return;
      } catch (err) {
        deps.metrics.retried.inc({ component });
        const delay = backoffDelay(attempt, RETRY);
        // Every in-hand message fails alike during an outage: say so, then only now and then.
        (attempt % 10 === 0 ? logger.warn : logger.debug).call(
          logger,
          { ...log, err, attempt, retryInMs: delay },
          "not durable yet; held without PUBACK",
        );
        await sleep(delay, stopping.signal);
      }
    }
  }

  const subscriber = new MqttSubscriber({
    url: settings.url,
    username: settings.username,
    password: settings.password,
    clientId: settings.clientId,
    topics: settings.topics,
    keepaliveSeconds: settings.keepaliveSeconds,
    logger,
    onMessage: (delivery) => {
      deps.metrics.messagesIn.inc({ component });
      const correlationId = mqttCorrelationId(spec.sourceName, delivery.topic, delivery.payload);
      const current = inHand.get(correlationId);
      if (current) {
        return current;
      }
      const work = ingest(delivery, correlationId).finally(() => inHand.delete(correlationId));
      inHand.set(correlationId, work);
      return work;
    },
  });

  let stopped: Promise<void> | undefined;
  return {
    name: component,
    async start() {
      await pipeline.start();
      await spec.start?.();
      subscriber.start();
      logger.info(
        {
          url: settings.url.replace(/:[^:@/]*@/, ":***@"),
          topics: settings.topics,
          clientId: settings.clientId,
        },
        "MQTT source starting",
      );
    },
    stop() {
      stopped ??= (async () => {
        subscriber.pause();
        stopping.abort();
        await Promise.allSettled([...inHand.values()]);
        await batcher.drained();
        await subscriber.close();
        await spec.stop?.();
        await pipeline.close();
      })();
      return stopped;
    },
    isReady: () => subscriber.isReady,
    acceptsWithoutBroker: pipeline.acceptsWithoutBroker,
  };
}
