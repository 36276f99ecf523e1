import type { Transaction } from "kysely";

import type { Dependencies } from "../runtime/component.js";
import { ConfirmedPublisher, type OutgoingMessage } from "../bus/publisher.js";
import { declareStandaloneDeadLetterQueue, topologyOptions } from "../bus/topology.js";
import type { JsonObject, NewPhysicalDevice } from "../core/devices.js";
import { classifyError, PermanentError, TransientError } from "../core/errors.js";
import {
  messageKey,
  parseMessage,
  RAW_CORRELATION_HEADER,
  type NormalisedMessage,
} from "../core/message.js";
import {
  findOrCreatePhysicalDeviceUids,
  findPhysicalDeviceUids,
  recordSightings,
  type Sighting,
} from "../db/repositories/physical-devices.js";
import {
  flagConflictingUplinks,
  insertRawMessages,
  linkRawMessages,
  type RawMessageInput,
} from "../db/repositories/raw-messages.js";
import { insertOutbox, type OutboxMessage } from "../db/repositories/ingest-outbox.js";
import { addSource } from "../db/repositories/sources.js";
import type { Db } from "../db/database.js";
import type { Database } from "../db/tables.js";
import { withActor } from "../events/actor.js";
import { OutboxRelay } from "./outbox-relay.js";

/** IoTa's routing key for physical messages (ignored by the fanout exchange). */
const PTS_ROUTING_KEY = "physical_timeseries";

/** What a source's pure normaliser makes of one raw message. */
export interface Normalised {
  readonly device: {
    /** source_ids subset that identifies the device (jsonb containment). */
    readonly lookup: JsonObject;
    /** The device to create when none matches (source_name is filled in by the pipeline). */
    readonly create: Omit<NewPhysicalDevice, "source_name">;
    /** News for the device: last_seen (never moves back), source_ids keys, properties.last_msg. */
    readonly sighting: {
      readonly lastSeen: string;
      readonly sourceIds?: JsonObject;
      readonly lastMsg?: unknown;
    };
  };
  /** Builds the normalised messages once the device uid is known (the source decides key order). */
  readonly messages: (pUid: number) => unknown[];
}

export interface IngestItem {
  readonly raw: Omit<RawMessageInput, "sourceName">;
  /**
   * Runs after the raw copy is durable. Returns undefined for content that is kept raw only
   * (e.g. a TTN join-accept); throws (or rejects with) PermanentError for bad content. May be
   * async: work begun before the item was submitted (a local decoder) overlaps the raw store.
   */
  readonly normalise: () => Normalised | undefined | Promise<Normalised | undefined>;
  /**
   * Headers its dead letter carries besides the reason, so that `broker dlq replay` can run it
   * through this ingest path again: {@link MQTT_TOPIC_HEADER}, {@link POLL_CONTEXT_HEADER}.
   */
  readonly replayHeaders?: Readonly<Record<string, string>>;
  /**
   * The device's `lookup` (what {@link Normalised} will say), when the source can tell it
   * cheaply before normalising. A device found by it is stored in the raw row itself, so the
   * row needs no link update afterwards (one statement and one dead row fewer per message).
   * The raw insert looks it up; should that insert fail, the item is stored again as text
   * without it (see `#ingestAsText`): the raw copy never depends on a hint.
   */
  readonly deviceHint?: JsonObject | undefined;
}

/** Dead-letter header: the MQTT topic a rejected payload arrived on. */
export const MQTT_TOPIC_HEADER = "x-broker-mqtt-topic";
/** Dead-letter header: what a poller's normaliser needs besides the stored answer (JSON). */
export const POLL_CONTEXT_HEADER = "x-broker-poll-context";

export type IngestResult =
  | { readonly status: "accepted"; readonly published: number; readonly physicalUid?: number }
  | {
      readonly status: "rejected";
      readonly reason: string;
      /** What is wrong, in our words, for the sender (an HTTP 400 body): never a value or SQL. */
      readonly error: string;
      /** The underlying error text (e.g. PostgreSQL's), for the log and the dead letter only. */
      readonly detail?: string;
    };

/** What {@link IngestPipeline}'s raw store learnt of the batch's devices. */
interface StoredRaw {
  /** Per item, the device uid its raw row was stored with (undefined: none, or stored before). */
  readonly prelinked: readonly (number | undefined)[];
  /** Devices found by the hints, by lookup key (JSON text); the pipeline adds the rest. */
  readonly uidOf: Map<string, number>;
  /** Lookup keys the raw insert looked up and found no device for. */
  readonly missed: ReadonlySet<string>;
}

/** A batch's writes once its devices are known. */
interface BatchWrites {
  readonly outgoing: OutgoingMessage[];
  readonly toStore: OutboxMessage[];
  readonly sightings: Sighting[];
  readonly links: { correlationId: string; physicalUid: number }[];
}

/** Reason of an input whose raw copy could not be stored even as text (nothing else failed). */
export const RAW_NOT_STORED = "raw_not_stored";

/** The raw insert failed: the isolation step retries the item as text before rejecting it. */
class RawStoreError extends Error {
  readonly failure: unknown;
  constructor(failure: unknown) {
    super("the raw copy could not be stored", { cause: failure });
    this.failure = failure;
  }
}

/** The raw copy as text only, stamped with the arrival time: what any input can be stored as. */
function textOnly(raw: IngestItem["raw"]): IngestItem["raw"] {
  const { json, text, ...rest } = raw;
  return {
    ...rest,
    ts: new Date().toISOString(),
    // JSON.stringify escapes lone surrogates; NUL cannot be in text.
    text: (text ?? JSON.stringify(json) ?? "").replaceAll("\u0000", "\uFFFD"),
  };
}

/**
 * The shared ingest path of every front-end, for a batch of arrivals:
 * raw store (committed) → normalise → find or create devices, record sightings → validate →
 * publish to the physical exchange, confirmed. Any infrastructure failure throws (the caller
 * answers "retry later"); bad content becomes a per-item rejection, its raw copy kept.
 */
export interface IngestPipelineOptions {
  /**
   * Where rejected inputs go besides the raw store, for sources with nobody to answer (MQTT,
   * pollers): a queue of that name (behind QUEUE_PREFIX) on the dead-letter exchange receives
   * each rejected raw body with `x-broker-reason` and `x-broker-error` headers, confirmed before
   * the batch completes. Unset (the webhook): the caller reports rejections itself (HTTP 400).
   */
  readonly deadLetterQueue?: string;
  /**
   * Longest wait for RabbitMQ when it is down, in ms. Default 0: fail at once so a request-driven
   * caller can answer "retry later" well inside its sender's timeout (The Things Stack: 5-10 s).
   */
  readonly connectWaitMs?: number;
  /**
   * Accept while RabbitMQ is down: when a confirmed publish is not possible (or earlier messages
   * still wait), the normalised messages are stored in the outbox table in the transaction that
   * links the raw rows, and an {@link OutboxRelay} publishes them, in order, once RabbitMQ is
   * back. The batch then succeeds as soon as PostgreSQL has committed. Default false.
   */
  readonly outbox?: boolean;
}

export class IngestPipeline {
  readonly #deps: Dependencies;
  readonly #sourceName: string;
  readonly #publisher: ConfirmedPublisher;
  readonly #deadLetters: ConfirmedPublisher | undefined;
  readonly #deadLetterQueue: string | undefined;
  readonly #outbox: OutboxRelay | undefined;

  constructor(deps: Dependencies, sourceName: string, options: IngestPipelineOptions = {}) {
    this.#deps = deps;
    this.#sourceName = sourceName;
    const logger = deps.logger.child({ component: `${sourceName}-publisher` });
    const connectWaitMs = options.connectWaitMs ?? 0;
    this.#publisher = new ConfirmedPublisher({
      connection: deps.amqp,
      exchange: deps.config.amqp.ptsExchange,
      logger,
      connectWaitMs,
      timeoutMs: 4_000,
    });
    if (options.outbox === true) {
      this.#outbox = new OutboxRelay({
        database: deps.database,
        amqp: deps.amqp,
        exchange: deps.config.amqp.ptsExchange,
        sourceName,
        routingKey: PTS_ROUTING_KEY,
        logger: deps.logger.child({ component: `${sourceName}-outbox` }),
        metrics: deps.metrics,
      });
    }
    if (options.deadLetterQueue !== undefined) {
      this.#deadLetterQueue = deps.config.amqp.queuePrefix + options.deadLetterQueue;
      this.#deadLetters = new ConfirmedPublisher({
        connection: deps.amqp,
        exchange: deps.config.amqp.deadLetterExchange,
        logger,
        connectWaitMs,
        timeoutMs: 4_000,
      });
    }
  }

  /** Makes sure the source exists (IoTa seeds only seven; others are added when they first run). */
  async start(): Promise<void> {
    // PostgreSQL being down at start is not a reason to fail either: ingest retries this first.
    await this.#ensureSource().catch((err: unknown) =>
      this.#deps.logger.warn({ err, source: this.#sourceName }, "cannot register the source yet"),
    );
    this.#outbox?.start();
    const queue = this.#deadLetterQueue;
    if (queue !== undefined) {
      // Declared on every (re)connect; RabbitMQ being down at start is not a reason to fail.
      const declare = (): void => {
        declareDeadLetterQueue(this.#deps, queue).catch((err: unknown) =>
          this.#deps.logger.warn({ err, queue }, "cannot declare the dead-letter queue yet"),
        );
      };
      this.#deps.amqp.on("connected", declare);
      if (this.#deps.amqp.isConnected) {
        declare();
      }
    }
  }

  #sourceReady = false;

  async #ensureSource(): Promise<void> {
    if (!this.#sourceReady) {
      await addSource(this.#deps.database.db, this.#sourceName);
      this.#sourceReady = true;
    }
  }

  /** True when this pipeline accepts while RabbitMQ is down (it has an outbox). */
  get acceptsWithoutBroker(): boolean {
    return this.#outbox !== undefined;
  }

  async close(): Promise<void> {
    await this.#outbox?.stop();
    await this.#publisher.close();
    await this.#deadLetters?.close();
  }

  /** Publishes rejected inputs' raw bodies to the dead-letter queue, when there is one. */
  async #publishRejected(
    items: readonly IngestItem[],
    results: readonly IngestResult[],
  ): Promise<void> {
    if (!this.#deadLetters || this.#deadLetterQueue === undefined) {
      return;
    }
    const queue = this.#deadLetterQueue;
    await this.#deadLetters.publish(
      results.flatMap((r, i) => {
        if (r.status !== "rejected") {
          return [];
        }
        const raw = items[i]!.raw;
        return [
          {
            body: Buffer.from(raw.text ?? JSON.stringify(raw.json), "utf8"),
            messageId: raw.correlationId,
            correlationId: raw.correlationId,
            routingKey: queue,
            headers: {
              "x-broker-reason": r.reason,
              "x-broker-error": (r.detail === undefined
                ? r.error
                : `${r.error}: ${r.detail}`
              ).slice(0, 2000),
              "x-broker-source": this.#sourceName,
              ...items[i]!.replayHeaders,
            },
          },
        ];
      }),
    );
  }

  /**
   * Ingests a batch. When the batch fails for a reason that is not an outage (content the
   * database refuses, a bug), each item is retried alone so only the culprit is rejected.
   */
  async ingest(items: readonly IngestItem[]): Promise<IngestResult[]> {
    // Raw rows reference sources(source_name): without the row every insert would fail as if
    // the content were bad, so an unregistered source is an outage (the caller retries).
    await this.#ensureSource();
    const results = await this.#ingestIsolated(items);
    await this.#publishRejected(items, results);
    // Counted and logged here, once per input: a batch retried item by item decides again.
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        this.#reportRejected(items[i]!, r);
      }
    });
    return results;
  }

  #reportRejected(item: IngestItem, r: Extract<IngestResult, { status: "rejected" }>): void {
    const { reason, error, detail } = r;
    this.#deps.metrics.deadLettered.inc({ component: this.#sourceName, reason });
    const log = {
      broker_correlation_id: item.raw.correlationId,
      source: this.#sourceName,
      reason,
      error,
      ...(detail === undefined ? {} : { detail }),
    };
    if (reason === RAW_NOT_STORED) {
      this.#deps.logger.error(log, "input rejected; its raw copy could NOT be stored");
    } else {
      this.#deps.logger.warn(log, "input rejected; raw copy kept");
    }
  }

  async #ingestIsolated(items: readonly IngestItem[]): Promise<IngestResult[]> {
    try {
      return await this.#ingestBatch(items);
    } catch (thrown) {
      const rawFailed = thrown instanceof RawStoreError;
      const err = rawFailed ? thrown.failure : thrown;
      if (await this.#isOutage(err)) {
        throw err;
      }
      if (items.length === 1) {
        const item = items[0]!;
        // Whatever arrives is kept raw: the database refused this raw row (which our checks
        // should make impossible), so it is kept as text and the item goes on from there.
        return rawFailed ? this.#ingestAsText(item, err) : [this.#reject(err)];
      }
      const results: IngestResult[] = [];
      for (const item of items) {
        results.push(...(await this.#ingestIsolated([item])));
      }
      return results;
    }
  }

  async #ingestAsText(item: IngestItem, refused: unknown): Promise<IngestResult[]> {
    this.#deps.logger.error(
      { err: refused, broker_correlation_id: item.raw.correlationId, source: this.#sourceName },
      "the database refused a raw copy; storing it as text",
    );
    // Without its hint too: the raw copy as text depends on nothing but itself.
    const asText: IngestItem = { ...item, raw: textOnly(item.raw), deviceHint: undefined };
    try {
      return await this.#ingestBatch([asText]);
    } catch (thrown) {
      const err = thrown instanceof RawStoreError ? thrown.failure : thrown;
      if (await this.#isOutage(err)) {
        throw err;
      }
      if (thrown instanceof RawStoreError) {
        return [
          {
            status: "rejected",
            reason: RAW_NOT_STORED,
            error: "the message could not be stored",
            detail: err instanceof Error ? err.message : String(err),
          },
        ];
      }
      return [this.#reject(err)];
    }
  }

  async #ingestBatch(items: readonly IngestItem[]): Promise<IngestResult[]> {
    const { db } = this.#deps.database;
    const source = this.#sourceName;
    const stored = await this.#storeRaw(items);

    const results: (IngestResult | undefined)[] = new Array(items.length).fill(undefined);
    const normalised: (Normalised | undefined)[] = await Promise.all(
      items.map(async (item, i) => {
        try {
          const n = await item.normalise();
          if (!n) {
            results[i] = { status: "accepted", published: 0 };
          }
          return n;
        } catch (err) {
          results[i] = this.#reject(err);
          return undefined;
        }
      }),
    );

    // One lookup per distinct device in the batch not already found by the raw insert; a hint
    // it found nothing for needs no second look (creating re-checks under a lock).
    const keys = normalised.map((n) => (n ? JSON.stringify(n.device.lookup) : undefined));
    const distinct = [...new Set(keys.filter((k): k is string => k !== undefined))];
    const { uidOf } = stored;
    const unknown = distinct.filter((k) => !uidOf.has(k) && !stored.missed.has(k));
    const found = await findPhysicalDeviceUids(
      db,
      source,
      unknown.map((k) => JSON.parse(k) as JsonObject),
    );
    unknown.forEach((key, i) => {
      const uid = found[i];
      if (uid !== undefined) {
        uidOf.set(key, uid);
      }
    });
    const toCreate = distinct.filter((k) => !uidOf.has(k));

    const outbox = this.#outbox;
    // Behind messages already waiting in the outbox, or with RabbitMQ known to be away, the
    // messages go to the outbox in the transaction that records the batch (one commit makes it
    // durable).
    const toOutbox = (outgoing: number): boolean =>
      outbox !== undefined && outgoing > 0 && (outbox.pending || !this.#deps.amqp.isConnected);
    const record = async (trx: Db, batch: BatchWrites, intoOutbox: boolean): Promise<void> => {
      await recordSightings(trx, batch.sightings);
      await linkRawMessages(trx, batch.links);
      if (intoOutbox) {
        await insertOutbox(trx, source, batch.toStore);
      }
    };

    let batch: BatchWrites;
    let intoOutbox = false;
    const outboxFirst = toOutbox(1); // where messages would go, were there any
    if (toCreate.length > 0 && !outboxFirst) {
      // Every new device of the batch in one transaction, and the batch's sightings and links
      // with them: one commit.
      batch = await withActor(db, `component:${source}`, async (trx) => {
        await this.#createDevices(trx, toCreate, keys, normalised, uidOf);
        const writes = this.#assemble(items, normalised, keys, stored.prelinked, uidOf, results);
        await record(trx, writes, false);
        return writes;
      });
    } else {
      if (toCreate.length > 0) {
        await withActor(db, `component:${source}`, (trx) =>
          this.#createDevices(trx, toCreate, keys, normalised, uidOf),
        );
      }
      batch = this.#assemble(items, normalised, keys, stored.prelinked, uidOf, results);
      const writes = batch;
      intoOutbox = toOutbox(writes.outgoing.length);
      const write = async (): Promise<void> => {
        if (writes.links.length === 0 && !intoOutbox) {
          // One statement needs no transaction of its own: two round trips fewer per batch.
          await recordSightings(db, writes.sightings);
          return;
        }
        await db.transaction().execute((trx) => record(trx, writes, intoOutbox));
      };
      if (intoOutbox && outbox !== undefined) {
        await outbox.record(write);
      } else {
        await write();
      }
    }
    if (!intoOutbox) {
      await this.#publishOrStore(batch.outgoing, batch.toStore);
    }
    this.#deps.metrics.messagesOut.inc({ component: source }, batch.outgoing.length);
    return results.map((r) => r ?? { status: "accepted", published: 0 });
  }

  /**
   * Stores the batch's raw rows (committed) and flags conflicting uplinks. Devices named by the
   * items' hints are looked up in the raw insert itself and their rows stored linked: one
   * statement, no link update (and no dead row) afterwards.
   */
  async #storeRaw(items: readonly IngestItem[]): Promise<StoredRaw> {
    const { db } = this.#deps.database;
    const source = this.#sourceName;
    const hintKeys = items.map((i) =>
      i.deviceHint === undefined ? undefined : JSON.stringify(i.deviceHint),
    );
    const distinctHints = [...new Set(hintKeys.filter((k): k is string => k !== undefined))];
    const hintIndex = new Map(distinctHints.map((k, n) => [k, n]));
    const rows = items.map((i, n) => ({
      ...i.raw,
      sourceName: source,
      deviceIndex: hintKeys[n] === undefined ? undefined : hintIndex.get(hintKeys[n]),
    }));
    let linkedAtInsert: Map<string, number | null>;
    try {
      linkedAtInsert = await insertRawMessages(db, rows, {
        sourceName: source,
        lookups: distinctHints.map((k) => JSON.parse(k) as JsonObject),
      });
    } catch (err) {
      throw new RawStoreError(err);
    }
    // A row not stored now (its correlation id was, before) is not in the answer: it goes
    // through the link update, which leaves a row already linked untouched.
    const prelinked = items.map((i) => linkedAtInsert.get(i.raw.correlationId) ?? undefined);
    const uidOf = new Map<string, number>();
    const missed = new Set<string>();
    items.forEach((item, n) => {
      const key = hintKeys[n];
      const uid = linkedAtInsert.get(item.raw.correlationId);
      if (key !== undefined && uid !== undefined) {
        if (uid === null) {
          missed.add(key);
        } else {
          uidOf.set(key, uid);
        }
      }
    });
    // A separate statement, after the insert committed: of two conflicting bodies in concurrent
    // batches, the later one's check sees both.
    const conflicts = await flagConflictingUplinks(db, rows);
    for (const c of conflicts) {
      this.#deps.logger.warn(
        { source, uplink_key: c.uplinkKey, broker_correlation_ids: c.correlationIds },
        "different bodies for one uplink (same application, device, received_at and f_cnt): each kept raw with its own correlation id and flagged conflicting",
      );
    }
    return { prelinked, uidOf, missed };
  }

  /** Creates (or finds, under a lock) the devices of `toCreate`, filling `uidOf`. */
  async #createDevices(
    trx: Transaction<Database>,
    toCreate: readonly string[],
    keys: readonly (string | undefined)[],
    normalised: readonly (Normalised | undefined)[],
    uidOf: Map<string, number>,
  ): Promise<void> {
    const source = this.#sourceName;
    const created = await findOrCreatePhysicalDeviceUids(
      trx,
      source,
      toCreate.map((key) => {
        // The first item of a device describes it.
        const n = normalised[keys.indexOf(key)]!;
        return { lookup: n.device.lookup, create: { ...n.device.create, source_name: source } };
      }),
    );
    created.forEach(({ uid }, i) => uidOf.set(toCreate[i]!, uid));
  }

  /**
   * The batch's writes once every device is known: sightings, links of the raw rows not stored
   * linked, and the messages to publish (validated; a message that fails the gate rejects its
   * item). Fills `results` for the items normalised.
   */
  #assemble(
    items: readonly IngestItem[],
    normalised: readonly (Normalised | undefined)[],
    keys: readonly (string | undefined)[],
    prelinked: readonly (number | undefined)[],
    uidOf: ReadonlyMap<string, number>,
    results: (IngestResult | undefined)[],
  ): BatchWrites {
    const writes: BatchWrites = { outgoing: [], toStore: [], sightings: [], links: [] };
    normalised.forEach((n, i) => {
      const key = keys[i];
      if (!n || key === undefined) {
        return;
      }
      const uid = uidOf.get(key)!;
      const item = items[i]!;
      writes.sightings.push({ uid, ...n.device.sighting });
      if (prelinked[i] !== uid) {
        writes.links.push({ correlationId: item.raw.correlationId, physicalUid: uid });
      }
      let messages: NormalisedMessage[];
      try {
        messages = n.messages(uid).map(parseMessage);
      } catch (err) {
        results[i] = this.#reject(err);
        return;
      }
      for (const message of messages) {
        // Serialised once: the same text goes to RabbitMQ or, when it is away, to the outbox.
        const text = JSON.stringify(message);
        const msgKey = messageKey(message);
        writes.outgoing.push({
          body: Buffer.from(text, "utf8"),
          messageId: msgKey,
          correlationId: message.broker_correlation_id,
          routingKey: PTS_ROUTING_KEY,
          headers: { [RAW_CORRELATION_HEADER]: item.raw.correlationId },
        });
        writes.toStore.push({
          correlationId: message.broker_correlation_id,
          rawCorrelationId: item.raw.correlationId,
          msgKey,
          physicalUid: uid,
          body: text,
        });
      }
      results[i] = { status: "accepted", published: messages.length, physicalUid: uid };
    });
    return writes;
  }

  /**
   * Publishes, confirmed. With an outbox, a publish RabbitMQ did not confirm is stored there
   * instead (some of it may have reached the exchange: the relay publishes it again under the
   * same message ids, which the mapper stores once).
   */
  async #publishOrStore(
    outgoing: readonly OutgoingMessage[],
    toStore: readonly OutboxMessage[],
  ): Promise<void> {
    const outbox = this.#outbox;
    try {
      await this.#publisher.publish(outgoing);
    } catch (err) {
      if (outbox === undefined || !(err instanceof TransientError)) {
        throw err;
      }
      this.#deps.logger.warn(
        { err, count: outgoing.length, source: this.#sourceName },
        "RabbitMQ did not confirm; messages kept in the outbox",
      );
      await outbox.record(() => insertOutbox(this.#deps.database.db, this.#sourceName, toStore));
    }
  }

  /** True when `err` says PostgreSQL or RabbitMQ cannot work now (the caller retries). */
  async #isOutage(err: unknown): Promise<boolean> {
    const c = classifyError(err);
    return c.kind === "transient" || (c.kind === "unknown" && !(await this.#deps.isHealthy()));
  }

  /** The rejection for `err`; counted and logged once, by {@link ingest}. */
  #reject(err: unknown): IngestResult {
    const c = classifyError(err);
    if (err instanceof PermanentError) {
      return { status: "rejected", reason: err.reason, error: err.message };
    }
    // Not our words (PostgreSQL's, a bug's): they go to the log and the dead letter only.
    return {
      status: "rejected",
      reason: c.kind === "permanent" ? c.reason : "processing_failed",
      error:
        c.kind === "permanent"
          ? "the database refused the message's content"
          : "the message could not be processed",
      detail: c.error.message,
    };
  }
}

async function declareDeadLetterQueue(deps: Dependencies, queue: string): Promise<void> {
  const channel = await deps.amqp.createChannel();
  try {
    await declareStandaloneDeadLetterQueue(channel, queue, topologyOptions(deps.config.amqp));
  } finally {
    await channel.close().catch(() => undefined);
  }
}
