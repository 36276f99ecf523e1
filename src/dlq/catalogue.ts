import { deadLetterQueueName, QUEUE_NAMES } from "../bus/topology.js";

/** A dead-letter queue and what feeds it. */
export interface DeadLetterQueue {
  /** Full queue name (QUEUE_PREFIX included). */
  readonly name: string;
  /** A consumer's queue (full name) or a source that dead-letters raw bodies it could not take. */
  readonly feed:
    | { readonly kind: "queue"; readonly queue: string }
    | {
        readonly kind: "source";
        readonly source: string;
      };
}

/**
 * Each source's dead-letter queue (without QUEUE_PREFIX), keyed by `sources.source_name`; the
 * same names the sources declare (a unit test checks that every one declared here is listed).
 */
export const SOURCE_DEAD_LETTER_QUEUES: Readonly<Record<string, string>> = {
  ttn: "ttn_webhook.dead",
  ydoc: "ydoc_ingest.dead",
  wombat: "wombat_ingest.dead",
  dragino_json: "dragino_ingest.dead",
  ict_mqtt: "ict_mqtt_ingest.dead",
  greenbrain: "greenbrain_ingest.dead",
  ict_eagleio: "ict_eagleio_ingest.dead",
  axistech: "axistech_ingest.dead",
};

/**
 * Every dead-letter queue the system declares, behind `prefix`: one per consuming queue
 * (`QUEUE_NAMES`, so a new writer's queue is included when it is named there) and one per
 * source. Listing needs the names because AMQP cannot enumerate queues.
 */
export function knownDeadLetterQueues(prefix: string): DeadLetterQueue[] {
  const consumers = Object.values(QUEUE_NAMES).map((q) => ({
    name: deadLetterQueueName(prefix + q),
    feed: { kind: "queue" as const, queue: prefix + q },
  }));
  const sources = Object.entries(SOURCE_DEAD_LETTER_QUEUES).map(([source, q]) => ({
    name: prefix + q,
    feed: { kind: "source" as const, source },
  }));
  return [...consumers, ...sources];
}

/**
 * The dead-letter queue an operator means by `given`: its full name, its name without the
 * prefix, or the name of the queue (or source) it collects for. An unknown name ending in
 * `.dead` is taken as a consumer's dead-letter queue the catalogue does not know yet.
 */
export function resolveDeadLetterQueue(
  given: string,
  prefix: string,
  known: readonly DeadLetterQueue[],
): DeadLetterQueue | undefined {
  const found = known.find(
    (q) =>
      q.name === given ||
      q.name === prefix + given ||
      (q.feed.kind === "queue" && (q.feed.queue === given || q.feed.queue === prefix + given)) ||
      (q.feed.kind === "source" && q.feed.source === given),
  );
  if (found) {
    return found;
  }
  if (!given.endsWith(".dead") || given.length <= ".dead".length) {
    return undefined;
  }
  const name = prefix !== "" && given.startsWith(prefix) ? given : prefix + given;
  return { name, feed: { kind: "queue", queue: name.slice(0, -".dead".length) } };
}
