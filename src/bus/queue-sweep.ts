import type amqp from "amqplib";

import { TransientError } from "../core/errors.js";
import type { AmqpConfirmChannel, AmqpConnection } from "./connection.js";
import { confirmedWithin } from "./publisher.js";

/**
 * Reading and rewriting a queue without disturbing it: a *sweep*.
 *
 * RabbitMQ offers no way to look at a quorum queue's messages that leaves them alone: a
 * basic.get (or a consume) followed by a requeue counts a delivery (`x-delivery-count`, which a
 * delivery limit acts on) and marks the message redelivered, and the management UI's "get
 * messages" is the same requeue underneath. A sweep instead takes each message that was in the
 * queue when it began, in order, publishes a copy to the queue's tail (or wherever the caller's
 * decision sends it), waits for RabbitMQ's publisher confirm, and only then acknowledges the
 * original. After a full sweep the queue holds the same messages in the same order, each a fresh
 * message never delivered; nothing is ever held only in this process.
 */

/** A message's AMQP properties, free of amqplib types. */
export interface SweptProperties {
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly priority?: number;
  readonly correlationId?: string;
  readonly replyTo?: string;
  readonly expiration?: string;
  readonly messageId?: string;
  /** AMQP timestamp, in seconds since the epoch. */
  readonly timestamp?: number;
  readonly type?: string;
  readonly appId?: string;
}

export interface SweptMessage {
  /** 1-based position in the queue when the sweep began. */
  readonly position: number;
  readonly body: Buffer;
  readonly properties: SweptProperties;
}

/** What to do with one swept message; every one of them leaves the queue's head. */
export type SweepDecision =
  /** Back to the queue's tail, unchanged: its place in the order is kept. */
  | { readonly action: "keep" }
  /** Gone (a purge, or its effect already made durable elsewhere by the decider). */
  | { readonly action: "drop" }
  /** Published to `queue` through the default exchange with these headers, confirmed. */
  | {
      readonly action: "send";
      readonly queue: string;
      readonly headers: Readonly<Record<string, unknown>>;
    };

export interface SweepProgress {
  readonly done: number;
  readonly total: number;
}

export interface SweepOptions {
  /** Full name of the queue to sweep. */
  readonly queue: string;
  /**
   * Decides a batch, in order. It may do durable work of its own (a re-ingest) and answer
   * `drop` once that work is durable; throwing abandons the sweep, the batch left in the queue.
   */
  readonly decide: (batch: readonly SweptMessage[]) => Promise<SweepDecision[]>;
  /** Messages taken, decided, confirmed and acknowledged together. Default 200. */
  readonly batchSize?: number;
  readonly onProgress?: (progress: SweepProgress) => void;
  /** Aborting stops the sweep between batches (nothing in hand is lost either way). */
  readonly signal?: AbortSignal;
  /**
   * Runs after a batch's publishes are confirmed and before its originals are acknowledged:
   * the one moment an interruption leaves a message in two places (tests use it to interrupt).
   */
  readonly onConfirmed?: (batch: readonly SweptMessage[]) => Promise<void>;
  /** Longest wait for a batch's confirms, in ms. Default 30 000. */
  readonly confirmTimeoutMs?: number;
}

export interface SweepResult {
  /** Messages in the queue when the sweep began. */
  readonly total: number;
  /** Messages the sweep went through (fewer than total only when interrupted or emptied). */
  readonly seen: number;
  readonly kept: number;
  readonly dropped: number;
  readonly sent: number;
}

/** Another sweep of the same queue is running (in this process or another). */
export class QueueBusyError extends Error {
  override readonly name = "QueueBusyError";
}

/** The queue does not exist. */
export class QueueNotFoundError extends Error {
  override readonly name = "QueueNotFoundError";
}

/** Name of the exclusive queue that marks a sweep of `queue` in progress. */
export function sweepLockName(queue: string): string {
  return `${queue}.sweep-lock`;
}

/**
 * Sweeps queues over one self-healing connection. Two sweeps of one queue never interleave: a
 * sweep holds an exclusive, auto-deleted lock queue that RabbitMQ refuses to a second
 * connection and removes when the holder's connection dies, plus an in-process set (a
 * connection may always redeclare its own exclusive queue).
 */
export class QueueSweeper {
  readonly #connection: AmqpConnection;
  readonly #active = new Set<string>();

  constructor(connection: AmqpConnection) {
    this.#connection = connection;
  }

  /** Ready-message count of `queue`, or undefined when it does not exist. Reads nothing. */
  async count(queue: string): Promise<number | undefined> {
    return this.#withChannel(async (channel) => {
      try {
        return (await channel.checkQueue(queue)).messageCount;
      } catch (err) {
        if (isNotFound(err)) {
          return undefined;
        }
        throw err;
      }
    });
  }

  async #withChannel<T>(fn: (channel: AmqpConfirmChannel) => Promise<T>): Promise<T> {
    await this.#connection.waitUntilConnected();
    const channel = await this.#connection.createConfirmChannel();
    // A failed passive declare closes the channel from the broker's side: expected here.
    channel.on("error", () => undefined);
    try {
      return await fn(channel);
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Runs one sweep of `options.queue` under its lock. */
  async sweep(options: SweepOptions): Promise<SweepResult> {
    const queue = options.queue;
    if (this.#active.has(queue)) {
      throw new QueueBusyError(`another operation on ${queue} is in progress; try again later`);
    }
    this.#active.add(queue);
    try {
      return await this.#withChannel(async (lockChannel) => {
        await takeLock(lockChannel, queue);
        try {
          return await this.#withChannel((channel) => sweepWith(channel, options));
        } finally {
          await lockChannel.deleteQueue(sweepLockName(queue)).catch(() => undefined);
        }
      });
    } finally {
      this.#active.delete(queue);
    }
  }
}

async function takeLock(channel: AmqpConfirmChannel, queue: string): Promise<void> {
  try {
    await channel.checkQueue(queue);
  } catch (err) {
    if (isNotFound(err)) {
      throw new QueueNotFoundError(`queue ${queue} does not exist`);
    }
    throw err;
  }
  try {
    await channel.assertQueue(sweepLockName(queue), {
      exclusive: true,
      durable: false,
      autoDelete: true,
      arguments: { "x-queue-type": "classic" },
    });
  } catch (err) {
    if (/RESOURCE_LOCKED|405/.test(String((err as Error).message))) {
      throw new QueueBusyError(`another operation on ${queue} is in progress; try again later`);
    }
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return /NOT_FOUND|404/.test(String((err as Error | undefined)?.message));
}

/** How long a partly filled batch waits for more deliveries before it is processed, in ms. */
const BATCH_IDLE_MS = 250;

/**
 * Takes the queue's first `total` messages in order, never one more: a copy appended to the
 * tail must not come round again. Most are streamed by a consumer whose prefetch (one batch)
 * bounds what RabbitMQ sends ahead: while at least two batches remain, acknowledging one lets
 * at most one more through. The consumer is cancelled before an acknowledgement could let
 * RabbitMQ send past `total`, and the last messages are taken one by one with basic.get.
 */
async function sweepWith(channel: AmqpConfirmChannel, options: SweepOptions): Promise<SweepResult> {
  const { queue } = options;
  const batchSize = options.batchSize ?? 200;
  let returned: string | undefined;
  channel.on("return", (msg: amqp.Message) => {
    returned ??= msg.fields.routingKey;
  });
  let closed: Error | undefined;
  let wake: (() => void) | undefined;
  channel.on("close", () => {
    closed ??= new TransientError(`the channel sweeping ${queue} closed`);
    wake?.();
  });
  const total = (await channel.checkQueue(queue)).messageCount;
  const counts = { seen: 0, kept: 0, dropped: 0, sent: 0 };
  const stopped = (): boolean => counts.seen >= total || options.signal?.aborted === true;
  options.onProgress?.({ done: 0, total });

  const settle = async (taken: amqp.Message[], beforeAck?: () => Promise<void>): Promise<void> => {
    const batch = taken.map((m, i) => ({
      position: counts.seen + i + 1,
      body: m.content,
      properties: sweptProperties(m.properties),
    }));
    const decisions = await options.decide(batch);
    if (decisions.length !== batch.length) {
      throw new Error(`decide returned ${decisions.length} decisions for ${batch.length}`);
    }
    for (const [i, decision] of decisions.entries()) {
      if (decision.action === "drop") {
        continue;
      }
      const message = batch[i]!;
      const target = decision.action === "keep" ? queue : decision.queue;
      const headers = decision.action === "keep" ? message.properties.headers : decision.headers;
      channel.publish("", target, message.body, {
        ...publishProperties(message.properties),
        headers,
        persistent: true,
        mandatory: true,
      });
    }
    await waitForConfirms(channel, options.confirmTimeoutMs ?? 30_000);
    if (returned !== undefined) {
      // Nothing acknowledged: every original of this batch stays (kept copies may repeat).
      throw new Error(`queue ${returned} does not exist; nothing of this batch was removed`);
    }
    await options.onConfirmed?.(batch);
    await beforeAck?.();
    if (closed) {
      throw closed;
    }
    // Everything taken so far on this channel is settled: one ack covers the batch.
    channel.ack(taken[taken.length - 1]!, true);
    counts.seen += batch.length;
    for (const d of decisions) {
      counts[d.action === "keep" ? "kept" : d.action === "drop" ? "dropped" : "sent"]++;
    }
    options.onProgress?.({ done: counts.seen, total });
  };

  if (total >= 2 * batchSize && !stopped()) {
    const inbox: amqp.Message[] = [];
    let cancelled = false;
    await channel.prefetch(batchSize);
    const { consumerTag } = await channel.consume(
      queue,
      (m) => {
        if (m === null) {
          cancelled = true;
        } else {
          inbox.push(m);
        }
        wake?.();
      },
      { noAck: false },
    );
    const cancel = async (): Promise<void> => {
      if (!cancelled) {
        cancelled = true;
        // Deliveries sent before cancel-ok still arrive (all within `total`) and are settled.
        await channel.cancel(consumerTag);
      }
    };
    try {
      while (!stopped() && !cancelled && !closed) {
        if (inbox.length < batchSize) {
          const more = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), BATCH_IDLE_MS);
            wake = () => {
              clearTimeout(timer);
              resolve(true);
            };
          });
          wake = undefined;
          if (more) {
            continue;
          }
          if (inbox.length === 0) {
            break; // fewer messages than counted (someone took some): basic.get finds out
          }
        }
        const taken = inbox.splice(0, batchSize);
        // Acknowledging lets RabbitMQ send up to one more batch: stop it if that could overrun.
        await settle(taken, async () => {
          if (counts.seen + taken.length + batchSize > total) {
            await cancel();
          }
        });
      }
      await cancel();
      // Settled even when aborting: handing them back would count a delivery and move them.
      while (inbox.length > 0) {
        await settle(inbox.splice(0, batchSize));
      }
    } finally {
      await cancel().catch(() => undefined);
    }
  }
  while (!stopped()) {
    const taken: amqp.GetMessage[] = [];
    while (taken.length < batchSize && counts.seen + taken.length < total) {
      const message = await channel.get(queue, { noAck: false });
      if (message === false) {
        break;
      }
      taken.push(message);
    }
    if (taken.length === 0) {
      break;
    }
    await settle(taken);
  }
  return { total, ...counts };
}

function waitForConfirms(channel: AmqpConfirmChannel, timeoutMs: number): Promise<void> {
  return confirmedWithin(
    channel.waitForConfirms().catch((err: unknown) => {
      throw new TransientError(`RabbitMQ did not confirm: ${String(err)}`);
    }),
    timeoutMs,
  );
}

function sweptProperties(p: amqp.MessageProperties): SweptProperties {
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
  return {
    contentType: str(p.contentType),
    contentEncoding: str(p.contentEncoding),
    headers: (p.headers ?? {}) as Record<string, unknown>,
    priority: num(p.priority),
    correlationId: str(p.correlationId),
    replyTo: str(p.replyTo),
    expiration: str(p.expiration),
    messageId: str(p.messageId),
    timestamp: num(p.timestamp),
    type: str(p.type),
    appId: str(p.appId),
  };
}

/** The properties a copy carries; `userId` is left out (RabbitMQ checks it against the login). */
function publishProperties(p: SweptProperties): amqp.Options.Publish {
  return {
    contentType: p.contentType,
    contentEncoding: p.contentEncoding,
    priority: p.priority,
    correlationId: p.correlationId,
    replyTo: p.replyTo,
    expiration: p.expiration,
    messageId: p.messageId,
    timestamp: p.timestamp,
    type: p.type,
    appId: p.appId,
  };
}
