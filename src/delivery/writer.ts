import { z } from "zod";

import type { Delivery, Outcome } from "../bus/consumer.js";
import { deadLetterQueueName } from "../bus/topology.js";
import { backoffDelay, sleep } from "../core/backoff.js";
import { parseSection, type Config } from "../core/config.js";
import { classifyError, PermanentError, TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { decodeMessage, messageKey, type LogicalMessage } from "../core/message.js";
import {
  claimDeliveries,
  enqueueClaimedDeliveries,
  enqueueDeliveries,
  markDelivered,
  oldestPendingAgeSeconds,
  pruneDelivered,
  releaseDeliveries,
  removeDeliveries,
  rescheduleDeliveries,
  type ClaimedRow,
  type QueuedMessageInput,
  type Reschedule,
} from "../db/repositories/delivery-queue.js";
import type { Publisher } from "../bus/ports.js";
import type { WriterComponent, WriterDeps } from "./ports.js";
import { writerMetrics, type WriterMetrics } from "./writer-metrics.js";

/** One valid logical message handed to a destination. */
export interface WriterMessage {
  /** The message as received (validated; `l_uid` present; unknown keys kept). */
  readonly message: LogicalMessage;
  /** Its idempotency key, {@link messageKey}: the same for a redelivery or a replay. */
  readonly key: string;
  /** Failed attempts so far (0 on the first try). */
  readonly attempts: number;
}

/** What became of one message at the destination. */
export type DeliveryResult =
  | { readonly status: "delivered" }
  /** Try again later (after at least `retryAfterMs` when the destination said so). */
  | { readonly status: "retry"; readonly error: string; readonly retryAfterMs?: number }
  /** The destination will never take it: dead-letter with a reason. */
  | { readonly status: "dead-letter"; readonly reason: string; readonly error: string };

/**
 * The destination refused the writer's credentials or account (Ubidots 401, 402, 403, 423). The
 * writer stops sending, reports it (log, `broker_writer_suspended`, /readyz), keeps every
 * message, and tries again after `WRITER_SUSPEND_MS`.
 */
export class DestinationRefusedError extends TransientError {}

/** Counts what a destination does, for the writer's metrics. */
export interface DeliveryReport {
  /** Aborts when the writer stops: long waits (rate limits) should end early. */
  readonly signal: AbortSignal;
  /** One request sent; `status` is the HTTP code or an error kind (`timeout`, `network`). */
  request(status: string, seconds: number): void;
  /** Values that could not be sent, e.g. not numeric. */
  skipped(reason: string, count: number): void;
}

/**
 * Delivers a batch and returns one result per message, in order. Throwing means the whole batch
 * failed: a {@link TransientError} (or any error while PostgreSQL/RabbitMQ are down) puts the
 * batch back with backoff and pauses the writer; {@link DestinationRefusedError} suspends it; a
 * {@link PermanentError} makes the writer try each message alone, so only the bad ones are
 * dead-lettered. Deliveries must be idempotent by `key`: a message may be handed over again
 * after a crash or a lost answer.
 */
export type DeliverFunction = (
  messages: readonly WriterMessage[],
  report: DeliveryReport,
) => Promise<DeliveryResult[]>;

export interface WriterOptions {
  /** Component name: `broker run`, logs (`component`), metrics label, `delivery_queue.writer`. */
  name: string;
  /**
   * Queue name without `QUEUE_PREFIX` (IoTa's `<name>_logical_msg_queue`). The queue is durable,
   * bound to the logical timeseries exchange, and dead-letters to `<queue>.dead`.
   */
  queue: string;
  deliver: DeliverFunction;
  logger?: Logger;
  /** Destination readiness on top of "consuming and not suspended" (cheap, synchronous). */
  isReady?: () => boolean;
  onStart?: () => Promise<void>;
  onStop?: () => Promise<void>;
  /** Most messages handed to one `deliver` call. Default 250. */
  batchSize?: number;
  /** Claim only one logical device's messages per batch (for per-device requests). Default false. */
  perDevice?: boolean;
  /** Delivery loops running at once in this process. Default 2. */
  concurrency?: number;
  /**
   * How long a claim holds before another copy may take the messages, in ms: longer than one
   * `deliver` call can take. Default 300 000.
   */
  leaseMs?: number;
}

const writerSchema = z.object({
  WRITER_RETRY_INITIAL_MS: z.coerce.number().int().min(1).default(1_000),
  WRITER_RETRY_MAX_MS: z.coerce.number().int().min(1).default(300_000),
  WRITER_SUSPEND_MS: z.coerce.number().int().min(1).default(60_000),
  WRITER_POLL_MS: z.coerce.number().int().min(1).default(1_000),
  WRITER_REMEMBER_HOURS: z.coerce.number().min(0).default(24),
  WRITER_LEASE_MS: z.coerce.number().int().min(1_000).optional(),
});

/** Settings shared by every writer (environment variables, see .env.example). */
export interface WriterSettings {
  /** First retry delay of a message or a failing destination, in ms. Default 1 000. */
  readonly retryInitialMs: number;
  /** Longest retry delay, in ms; retries never stop. Default 300 000 (5 min). */
  readonly retryMaxMs: number;
  /** How long a writer whose credentials were refused waits before trying again, in ms. Default 60 000. */
  readonly suspendMs: number;
  /** How often an idle loop looks for messages another process took in or a retry now due, in ms. Default 1 000. */
  readonly pollMs: number;
  /** How long the keys of delivered messages are remembered to skip redeliveries, in ms. Default 24 h. */
  readonly rememberMs: number;
  /**
   * How long a claim holds (WRITER_LEASE_MS, ms), overriding the writer's own default: also how
   * long the messages of a copy that died (or whose claim committed as its connection broke)
   * wait before another copy takes them. Must exceed one delivery's longest time.
   */
  readonly leaseMs: number | undefined;
}

export function writerSettings(config: Pick<Config, "env">): WriterSettings {
  const s = parseSection(config, writerSchema, "writer");
  return {
    retryInitialMs: s.WRITER_RETRY_INITIAL_MS,
    retryMaxMs: s.WRITER_RETRY_MAX_MS,
    suspendMs: s.WRITER_SUSPEND_MS,
    pollMs: s.WRITER_POLL_MS,
    rememberMs: s.WRITER_REMEMBER_HOURS * 3_600_000,
    leaseMs: s.WRITER_LEASE_MS,
  };
}

type Checked =
  | {
      readonly ok: true;
      readonly message: LogicalMessage;
      readonly key: string;
      /** The body as text, as it is stored. */
      readonly text: string;
    }
  | { readonly ok: false; readonly outcome: Outcome };

/**
 * The gate every writer applies: the body must be a valid normalised message (else dead-letter
 * with the validation reason) and must carry `l_uid` (else dead-letter `missing_l_uid`: only the
 * logical mapper publishes here, so a message without one is a producer bug).
 */
export function checkDelivery(delivery: Delivery): Checked {
  const text = delivery.body.toString("utf8");
  let decoded;
  try {
    decoded = decodeMessage(text);
  } catch (err) {
    if (err instanceof PermanentError) {
      return {
        ok: false,
        outcome: { action: "dead-letter", reason: err.reason, error: err.message },
      };
    }
    throw err;
  }
  if (decoded.l_uid === undefined) {
    return {
      ok: false,
      outcome: {
        action: "dead-letter",
        reason: "missing_l_uid",
        error: "a logical message must carry l_uid",
        correlationId: decoded.broker_correlation_id,
      },
    };
  }
  const message = decoded as LogicalMessage;
  return { ok: true, message, key: messageKey(message), text };
}

/**
 * The message of a claimed row, or undefined when the row no longer holds what intake stored.
 * Every row was checked at the gate ({@link checkDelivery}) before it was inserted (by intake,
 * or by `broker backfill` with the same gate), and its key computed then; the table is ours, so
 * a claim does not validate and hash each message again (a tenth of the writer's main-thread
 * work in a backlog). What it still refuses is a body edited by hand: one that is not a
 * JSON object, or whose correlation id, devices or points no longer agree with its row.
 */
export function storedMessage(row: ClaimedRow): LogicalMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(row.body);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) {
    return undefined;
  }
  const m = value as Partial<Record<keyof LogicalMessage, unknown>>;
  const agrees =
    m.broker_correlation_id === row.correlationId &&
    m.l_uid === row.lUid &&
    m.p_uid === row.pUid &&
    typeof m.timestamp === "string" &&
    Array.isArray(m.timeseries);
  return agrees ? (value as LogicalMessage) : undefined;
}

interface Pending {
  readonly row: ClaimedRow;
  readonly item: WriterMessage;
}

/** Wakes idle loops when this process took messages in. */
class Wakeup {
  #waiters: (() => void)[] = [];
  /** Loops waiting now. */
  get idle(): number {
    return this.#waiters.length;
  }
  /**
   * Wakes up to `n` waiting loops (all by default): as many as there are batches to deliver,
   * not every loop for every intake, since each woken loop runs a claim, empty or not.
   */
  notify(n = Infinity): void {
    const woken = this.#waiters.splice(0, n);
    for (const w of woken) {
      w();
    }
  }
  wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        // Gone from the waiters, so a later notify wakes a loop that is really waiting.
        const i = this.#waiters.indexOf(done);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
        }
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.#waiters.push(done);
    });
  }
}

/**
 * Builds a writer component.
 *
 * Intake: a consumer of the writer's own queue on the logical exchange checks each message
 * ({@link checkDelivery}), keeps the valid ones in `delivery_queue` (one insert per batch,
 * skipping keys it already has) and acknowledges them once that committed. Nothing is held
 * unacknowledged while the destination is away.
 *
 * Delivery: `concurrency` loops claim due messages (leased, so several copies share them), hand
 * them to `deliver`, and settle each one: delivered (remembered, body dropped), retry (back in
 * `delivery_queue` after capped exponential backoff with jitter; never given up), or dead-letter
 * (published to the dead-letter exchange, confirmed, then removed). A batch that fails as a whole
 * pauses this writer's loops with backoff; other writers and the mapper are not affected.
 */
export function createWriter(deps: WriterDeps, options: WriterOptions): WriterComponent {
  const settings = writerSettings(deps.config);
  const name = options.name;
  const logger = options.logger ?? deps.logger.child({ component: name });
  const metrics: WriterMetrics = writerMetrics(deps.metrics);
  const label = { component: name };
  const db = deps.db;
  const queueName = deps.config.amqp.queuePrefix + options.queue;
  const batchSize = options.batchSize ?? 250;
  const leaseMs = settings.leaseMs ?? options.leaseMs ?? 300_000;
  const wakeup = new Wakeup();
  const abort = new AbortController();
  let deadLetters: Publisher | undefined;

  let running = false;
  let pauseUntil = 0;
  let consecutiveFailures = 0;
  let suspendedSince: number | undefined;
  let suspendUntil = 0;
  const loops: Promise<void>[] = [];
  let timer: NodeJS.Timeout | undefined;

  /**
   * Batches this process claimed as it took them in, waiting for a loop (see {@link intake}).
   * Their rows are leased to this process; {@link releaseHanded} gives them back when no loop
   * will take them soon (a pause, a stop).
   */
  const handed: Pending[][] = [];

  /**
   * Keeps the valid messages of a batch in `delivery_queue` (acknowledged once that committed).
   * When a delivery loop waits idle and the writer is not paused, the new rows are claimed in
   * the same insert and handed to the loops with the messages already decoded: at a steady
   * flow, batches are a few messages each, and a claim statement plus a second decode per batch
   * cost as much as the rest of the writer's work. In a backlog the loops are busy and claim
   * from the table in arrival order, as before. Per-device writers always claim, by device.
   */
  async function intake(batch: readonly Delivery[]): Promise<Outcome[]> {
    const checked = batch.map(checkDelivery);
    const keep: { readonly input: QueuedMessageInput; readonly message: LogicalMessage }[] = [];
    for (const c of checked) {
      if (c.ok) {
        keep.push({
          input: {
            msgKey: c.key,
            lUid: c.message.l_uid,
            pUid: c.message.p_uid,
            correlationId: c.message.broker_correlation_id,
            body: c.text,
          },
          message: c.message,
        });
      }
    }
    if (keep.length > 0) {
      const inputs = keep.map((k) => k.input);
      const now = Date.now();
      const handOff =
        running &&
        options.perDevice !== true &&
        wakeup.idle > handed.length &&
        now >= pauseUntil &&
        now >= suspendUntil;
      if (handOff) {
        const inserted = await enqueueClaimedDeliveries(db, name, inputs, leaseMs);
        const ids = new Map(inserted.map((r) => [r.msgKey, r.id]));
        const receivedAt = new Date(now).toISOString();
        const pending: Pending[] = [];
        for (const { input, message } of keep) {
          const id = ids.get(input.msgKey);
          // The first of two messages with one key is the one inserted (and the only one).
          if (id !== undefined) {
            ids.delete(input.msgKey);
            pending.push({
              row: { ...input, id, receivedAt, attempts: 0 },
              item: { message, key: input.msgKey, attempts: 0 },
            });
          }
        }
        for (let i = 0; i < pending.length; i += batchSize) {
          handed.push(pending.slice(i, i + batchSize));
        }
        wakeup.notify(Math.ceil(pending.length / batchSize));
      } else {
        const added = await enqueueDeliveries(db, name, inputs);
        wakeup.notify(Math.ceil(added / batchSize));
      }
    }
    return checked.map((c) => (c.ok ? { action: "ack" } : c.outcome));
  }

  /** Gives the rows of batches no loop has taken back to the table, due at once. */
  async function releaseHanded(): Promise<void> {
    const ids = handed.splice(0).flatMap((batch) => batch.map((p) => p.row.id));
    if (ids.length > 0) {
      await settleStep("release messages taken in", () => releaseDeliveries(db, ids));
    }
  }

  const queue = deps.openQueue({
    component: name,
    queue: options.queue,
    exchange: deps.config.amqp.ltsExchange,
    handler: intake,
    logger,
  });

  const report = {
    signal: abort.signal,
    request(status: string, seconds: number): void {
      metrics.requests.inc({ component: name, status });
      metrics.latency.observe(label, seconds);
    },
    skipped(reason: string, count: number): void {
      if (count > 0) {
        metrics.valuesSkipped.inc({ component: name, reason }, count);
      }
    },
  } satisfies DeliveryReport;

  /** Retries a database step until it works or the writer stops (its effects are idempotent). */
  async function settleStep(what: string, fn: () => Promise<void>): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await fn();
        return true;
      } catch (err) {
        if (!running) {
          logger.warn({ err }, `cannot ${what}; the lease returns the messages later`);
          return false;
        }
        const delay = backoffDelay(attempt, { maxMs: 15_000 });
        logger.warn({ err, retryInMs: delay }, `cannot ${what} yet`);
        await sleep(delay, abort.signal);
      }
    }
  }

  function countRetried(n: number): void {
    metrics.retried.inc(label, n);
    deps.metrics.retried.inc(label, n);
  }

  function retryDelay(attempts: number): number {
    return backoffDelay(attempts, {
      initialMs: settings.retryInitialMs,
      maxMs: settings.retryMaxMs,
    });
  }

  async function settle(
    rows: readonly ClaimedRow[],
    results: readonly DeliveryResult[],
  ): Promise<void> {
    const delivered: string[] = [];
    const retry: Reschedule[] = [];
    const dead: { row: ClaimedRow; reason: string; error: string }[] = [];
    rows.forEach((row, i) => {
      const r = results[i]!;
      if (r.status === "delivered") {
        delivered.push(row.id);
      } else if (r.status === "retry") {
        retry.push({
          id: row.id,
          delayMs: Math.max(retryDelay(row.attempts), r.retryAfterMs ?? 0),
          error: r.error,
          failed: true,
        });
      } else {
        dead.push({ row, reason: r.reason, error: r.error });
      }
    });
    if (dead.length > 0) {
      const publisher = (deadLetters ??= deps.openPublisher({
        exchange: deps.config.amqp.deadLetterExchange,
        logger,
      }));
      const published = await settleStep("publish dead letters", () =>
        publisher.publish(
          dead.map(({ row, reason, error }) => ({
            body: Buffer.from(row.body, "utf8"),
            messageId: row.msgKey,
            correlationId: row.correlationId,
            routingKey: queueName,
            headers: {
              "x-broker-reason": reason,
              "x-broker-error": error.slice(0, 2000),
              "x-broker-queue": queueName,
              "x-broker-component": name,
            },
          })),
        ),
      );
      if (published) {
        await settleStep("remove dead-lettered messages", () =>
          removeDeliveries(
            db,
            dead.map((d) => d.row.id),
          ),
        );
        for (const { row, reason, error } of dead) {
          logger.warn(
            { broker_correlation_id: row.correlationId, l_uid: row.lUid, reason, error },
            "message dead-lettered",
          );
          deps.metrics.deadLettered.inc({ component: name, reason });
        }
      }
    }
    await settleStep("mark messages delivered", () => markDelivered(db, delivered));
    await settleStep("reschedule messages", () => rescheduleDeliveries(db, retry));
    metrics.delivered.inc(label, delivered.length);
    countRetried(retry.length);
    if (retry.length > 0) {
      logger.warn(
        { retried: retry.length, delivered: delivered.length, error: retry[0]!.error },
        "messages will be retried",
      );
    }
  }

  /** Hands `pending` to the destination; a permanent failure of a batch is narrowed to its culprits. */
  async function attempt(pending: readonly Pending[]): Promise<DeliveryResult[] | Error> {
    try {
      const results = await options.deliver(
        pending.map((p) => p.item),
        report,
      );
      if (results.length !== pending.length) {
        throw new Error(
          `${name}: deliver returned ${results.length} results for ${pending.length}`,
        );
      }
      return results;
    } catch (err) {
      const c = classifyError(err);
      if (c.error instanceof DestinationRefusedError) {
        return c.error;
      }
      const permanent =
        c.kind === "permanent" || (c.kind === "unknown" && (await deps.isHealthy()));
      if (!permanent) {
        return c.error;
      }
      if (pending.length === 1) {
        const reason = c.kind === "permanent" ? c.reason : "delivery_failed";
        return [{ status: "dead-letter", reason, error: c.error.message }];
      }
      const results: DeliveryResult[] = [];
      for (const p of pending) {
        const single = await attempt([p]);
        if (single instanceof Error) {
          return single;
        }
        results.push(...single);
      }
      return results;
    }
  }

  function decode(rows: readonly ClaimedRow[]): { pending: Pending[]; broken: ClaimedRow[] } {
    const pending: Pending[] = [];
    const broken: ClaimedRow[] = [];
    for (const row of rows) {
      const message = storedMessage(row);
      if (message !== undefined) {
        pending.push({ row, item: { message, key: row.msgKey, attempts: row.attempts } });
      } else {
        // Checked at intake already; only a row edited by hand gets here.
        broken.push(row);
      }
    }
    return { pending, broken };
  }

  function suspend(err: Error): void {
    const now = Date.now();
    if (suspendedSince === undefined) {
      suspendedSince = now;
      logger.error(
        { err: err.message, retryInMs: settings.suspendMs },
        "destination refused the credentials or account: not sending, messages kept",
      );
    } else {
      logger.warn({ err: err.message, retryInMs: settings.suspendMs }, "destination still refuses");
    }
    metrics.suspended.set(label, 1);
    suspendUntil = now + settings.suspendMs;
  }

  function resumed(): void {
    consecutiveFailures = 0;
    if (suspendedSince !== undefined) {
      logger.info(
        { suspendedForMs: Date.now() - suspendedSince },
        "destination accepts again; sending",
      );
      suspendedSince = undefined;
      metrics.suspended.set(label, 0);
    }
  }

  async function loop(): Promise<void> {
    let claimFailures = 0;
    while (running) {
      const wait = Math.max(pauseUntil, suspendUntil) - Date.now();
      if (wait > 0) {
        // Batches taken in just before the pause go back rather than wait, claimed, in memory.
        await releaseHanded();
        await sleep(wait, abort.signal);
        continue;
      }
      let pending: Pending[];
      let broken: ClaimedRow[] = [];
      const mine = handed.shift();
      if (mine !== undefined) {
        pending = mine;
        // Batches taken in while every loop was busy go to the destination together.
        while (handed.length > 0 && pending.length + handed[0]!.length <= batchSize) {
          pending = pending.concat(handed.shift()!);
        }
      } else {
        let rows: ClaimedRow[];
        try {
          rows = await claimDeliveries(db, name, {
            limit: batchSize,
            leaseMs,
            oneDevice: options.perDevice ?? false,
          });
          claimFailures = 0;
        } catch (err) {
          const delay = backoffDelay(claimFailures++, { maxMs: 15_000 });
          logger.warn({ err, retryInMs: delay }, "cannot claim messages yet");
          await sleep(delay, abort.signal);
          continue;
        }
        if (rows.length === 0) {
          if (handed.length === 0) {
            await wakeup.wait(settings.pollMs, abort.signal);
          }
          continue;
        }
        ({ pending, broken } = decode(rows));
      }
      if (broken.length > 0) {
        await settle(
          broken,
          broken.map(() => ({
            status: "dead-letter",
            reason: "invalid_message",
            error: "stored message is not valid",
          })),
        );
      }
      if (pending.length === 0) {
        continue;
      }
      const outcome = await attempt(pending);
      if (outcome instanceof Error) {
        const refused = outcome instanceof DestinationRefusedError;
        if (refused) {
          suspend(outcome);
        } else {
          const delay = retryDelay(consecutiveFailures++);
          pauseUntil = Math.max(pauseUntil, Date.now() + delay);
          logger.warn(
            { err: outcome.message, retryInMs: delay, messages: pending.length },
            "destination unavailable; pausing this writer",
          );
        }
        const until = Math.max(pauseUntil, suspendUntil) - Date.now();
        await settleStep("put messages back", () =>
          rescheduleDeliveries(
            db,
            pending.map((p) => ({
              id: p.row.id,
              delayMs: Math.max(0, until),
              error: outcome.message,
              failed: !refused,
            })),
          ),
        );
        if (!refused) {
          countRetried(pending.length);
        }
        continue;
      }
      if (outcome.some((r) => r.status !== "retry")) {
        resumed();
      } else {
        const delay = retryDelay(consecutiveFailures++);
        pauseUntil = Math.max(pauseUntil, Date.now() + Math.min(delay, settings.retryMaxMs));
      }
      await settle(
        pending.map((p) => p.row),
        outcome,
      );
    }
  }

  async function housekeeping(): Promise<void> {
    metrics.lag.set(label, await oldestPendingAgeSeconds(db, name));
    await pruneDelivered(db, name, settings.rememberMs);
  }

  let started: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;
  return {
    name,
    start() {
      started ??= (async () => {
        await options.onStart?.();
        running = true;
        metrics.suspended.set(label, 0);
        for (let i = 0; i < (options.concurrency ?? 2); i++) {
          loops.push(
            loop().catch((err: unknown) =>
              logger.error({ err }, "delivery loop failed unexpectedly"),
            ),
          );
        }
        timer = setInterval(() => {
          housekeeping().catch((err: unknown) =>
            logger.warn({ err }, "writer housekeeping failed"),
          );
        }, 5_000);
        timer.unref();
        queue.start();
        logger.info(
          { queue: queueName, deadLetters: deadLetterQueueName(queueName) },
          "writer started",
        );
      })();
      return started;
    },
    stop() {
      stopped ??= (async () => {
        await started?.catch(() => undefined);
        // Loops stop now (waits and destination requests end through the signal); their
        // messages go back to delivery_queue. Bounded, so `broker run` exits within 10 s.
        running = false;
        clearInterval(timer);
        abort.abort();
        const waited = new AbortController();
        await Promise.all([
          queue.stop(),
          Promise.race([Promise.allSettled(loops), sleep(5_000, waited.signal)]),
        ]);
        waited.abort();
        // Taken in (claimed) but no loop got to them: due again now, not when the lease ends.
        await releaseHanded();
        await deadLetters?.close();
        await options.onStop?.();
      })();
      return stopped;
    },
    isReady: () =>
      queue.isConsuming && suspendedSince === undefined && (options.isReady?.() ?? true),
  };
}
