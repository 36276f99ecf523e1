import type amqp from "amqplib";

import { backoffDelay, sleep } from "../core/backoff.js";
import { mayStartBatch } from "../core/batcher.js";
import { classifyError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { Metrics } from "../core/metrics.js";
import type { AmqpChannel, AmqpConnection } from "./connection.js";
import type { ConfirmedPublisher } from "./publisher.js";
import { declareConsumerQueue, type QueueSpec, type TopologyOptions } from "./topology.js";

/** A received message, free of amqplib types. */
export interface Delivery {
  readonly body: Buffer;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly redelivered: boolean;
  /** Epoch ms at which this process received it. */
  readonly receivedAt: number;
}

/** What became of one delivery. */
export type Outcome =
  | { readonly action: "ack" }
  | {
      readonly action: "dead-letter";
      readonly reason: string;
      readonly error: string;
      /** For the log line, when the body names one the AMQP properties don't. */
      readonly correlationId?: string;
    };

/**
 * Processes a batch and returns one outcome per delivery, in order. Throwing means the whole
 * batch failed: the consumer classifies the error (transient → retry the batch with backoff;
 * permanent → retry each message alone so only the bad ones are dead-lettered).
 */
export type BatchHandler = (batch: readonly Delivery[]) => Promise<Outcome[]>;

export interface ConsumerOptions {
  connection: AmqpConnection;
  queue: QueueSpec;
  topology: TopologyOptions;
  handler: BatchHandler;
  /** Publisher on the dead-letter exchange (routing key = queue name). */
  deadLetters: ConfirmedPublisher;
  /** Says whether the infrastructure behind the handler is up; decides errors of unknown kind. */
  isHealthy: () => Promise<boolean>;
  logger: Logger;
  metrics: Metrics;
  /** Metrics label. */
  component: string;
  /** Unacknowledged deliveries RabbitMQ may send ahead. Default 500. */
  prefetch?: number;
  /** Largest batch handed to the handler. Default 250. */
  batchSize?: number;
  /** How long the first message of a partial batch waits for company, in ms. Default 5. */
  maxWaitMs?: number;
  /**
   * Batches processed at the same time, so one batch's database work overlaps another's
   * publisher confirms. Acknowledgements still go out in delivery order. Default 3.
   */
  concurrency?: number;
  /**
   * Messages that must be waiting before a batch starts beside one already running. Fewer wait
   * for a running batch to end, so a steady moderate flow makes fewer, larger batches (each
   * costs a few statements and a confirm round whatever its size). Default 32.
   */
  overlapAt?: number;
  /**
   * How long messages in hand may wait for the infrastructure to come back, in ms. Must stay
   * well under RabbitMQ's consumer acknowledgement timeout (30 min by default). Default 300 000.
   */
  holdMs?: number;
}

/**
 * `running`: consuming. `holding`: a batch failed transiently; the consumer is cancelled (nothing
 * new arrives) and the messages in hand are retried for up to `holdMs`. `released`: the hold ran
 * out; the channel was closed (RabbitMQ requeues what was in hand, one delivery each) and nothing
 * is consumed until `isHealthy` says the infrastructure is back.
 */
type IntakeState = "running" | "holding" | "released";

interface Item {
  readonly delivery: Delivery;
  readonly message: amqp.ConsumeMessage;
  readonly session: Session;
}

interface Session {
  readonly channel: AmqpChannel;
  consumerTag: string | undefined;
  alive: boolean;
  /** Resolves when every batch taken so far from this channel is settled (acks in order). */
  ackTail: Promise<void>;
  /**
   * Set once a batch of this channel was abandoned (left unacked for redelivery): from then on
   * acks name each message, since a cumulative ack would cover the abandoned ones too.
   */
  abandoned: boolean;
}

/**
 * Consumes one durable queue in batches. Every message is acknowledged only after the handler
 * finished with it (and, for poison messages, after the dead letter was confirmed). Transient
 * failures keep the batch in hand and retry with backoff, so a database outage neither loses
 * messages nor burns their delivery count. Channels and the consumer are rebuilt after any
 * reconnect; deliveries of a lost channel are left for RabbitMQ to redeliver.
 */
export class BatchConsumer {
  readonly #o: Required<ConsumerOptions>;
  #session: Session | undefined;
  #buffer: Item[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #active = new Set<Promise<void>>();
  #opening: Promise<void> | undefined;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  readonly #abort = new AbortController();
  readonly #onConnected = (): void => this.#open();
  #state: IntakeState = "running";
  #holdingSince = 0;

  constructor(options: ConsumerOptions) {
    this.#o = {
      prefetch: 500,
      batchSize: 250,
      maxWaitMs: 5,
      concurrency: 3,
      overlapAt: 32,
      holdMs: 300_000,
      ...options,
    };
  }

  get #log(): Logger {
    return this.#o.logger;
  }

  /** Starts consuming as soon as (and whenever) the connection is up. */
  start(): void {
    this.#o.connection.on("connected", this.#onConnected);
    this.#o.connection.on("disconnected", () => this.#dropSession());
    if (this.#o.connection.isConnected) {
      this.#open();
    }
  }

  /** True while a channel is consuming. */
  get isConsuming(): boolean {
    return this.#session?.alive === true && this.#session.consumerTag !== undefined;
  }

  #open(): void {
    // Released: only the recovery probe reopens, once the infrastructure answers again.
    if (this.#stopping || this.#opening || this.#state === "released") {
      return;
    }
    this.#opening = this.#openSession().finally(() => {
      this.#opening = undefined;
    });
  }

  async #openSession(): Promise<void> {
    for (let attempt = 0; !this.#stopping && this.#o.connection.isConnected; attempt++) {
      try {
        const channel = await this.#o.connection.createChannel();
        const session: Session = {
          channel,
          consumerTag: undefined,
          alive: true,
          ackTail: Promise.resolve(),
          abandoned: false,
        };
        channel.on("error", (err: Error) => this.#log.warn({ err }, "consumer channel error"));
        channel.on("close", () => {
          session.alive = false;
          if (this.#session === session) {
            this.#dropSession();
            if (!this.#stopping && this.#o.connection.isConnected && this.#state !== "released") {
              this.#open();
            }
          }
        });
        await declareConsumerQueue(channel, this.#o.queue, this.#o.topology);
        await channel.prefetch(this.#o.prefetch);
        this.#session = session;
        const { consumerTag } = await channel.consume(
          this.#o.queue.name,
          (msg) => this.#onMessage(session, msg),
          { noAck: false },
        );
        session.consumerTag = consumerTag;
        this.#state = "running";
        this.#log.info({ queue: this.#o.queue.name }, "consuming");
        return;
      } catch (err) {
        const delay = backoffDelay(attempt);
        this.#log.warn({ err, retryInMs: delay }, "cannot start consuming");
        await sleep(delay, this.#abort.signal);
      }
    }
  }

  #dropSession(): void {
    this.#session = undefined;
    // Buffered messages belong to the lost channel; RabbitMQ redelivers them.
    this.#buffer = this.#buffer.filter((item) => item.session.alive);
  }

  #onMessage(session: Session, message: amqp.ConsumeMessage | null): void {
    if (message === null) {
      this.#log.warn(
        { queue: this.#o.queue.name },
        "consumer cancelled by RabbitMQ; resubscribing",
      );
      session.alive = false;
      void session.channel.close().catch(() => undefined);
      return;
    }
    const props = message.properties;
    const delivery: Delivery = {
      body: message.content,
      messageId: typeof props.messageId === "string" ? props.messageId : undefined,
      correlationId: typeof props.correlationId === "string" ? props.correlationId : undefined,
      headers: (props.headers ?? {}) as Record<string, unknown>,
      redelivered: message.fields.redelivered,
      receivedAt: Date.now(),
    };
    this.#o.metrics.messagesIn.inc({ component: this.#o.component });
    this.#buffer.push({ delivery, message, session });
    if (this.#buffer.length >= this.#o.batchSize) {
      this.#kick();
    } else {
      this.#timer ??= setTimeout(() => this.#kick(), this.#o.maxWaitMs);
    }
  }

  #kick(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (!this.#stopping && mayStartBatch(this.#buffer.length, this.#active.size, this.#o)) {
      const batch = this.#buffer.splice(0, this.#o.batchSize);
      const running: Promise<void> = this.#process(batch)
        .catch((err: unknown) => {
          // Only a bug gets here; the messages stay unacked and come back after a reconnect.
          this.#log.error({ err }, "batch processing failed unexpectedly");
        })
        .finally(() => {
          this.#active.delete(running);
          if (this.#stopping || this.#buffer.length === 0) {
            return;
          }
          if (this.#buffer.length >= this.#o.batchSize) {
            this.#kick();
          } else {
            this.#timer ??= setTimeout(() => this.#kick(), this.#o.maxWaitMs);
          }
        });
      this.#active.add(running);
    }
  }

  async #process(batch: Item[]): Promise<void> {
    const session = batch[0]!.session;
    const previous = session.ackTail;
    let release!: () => void;
    session.ackTail = new Promise((resolve) => (release = resolve));
    try {
      const outcomes = await this.#resolve(
        batch.map((i) => i.delivery),
        session,
      );
      if (!outcomes || !(await this.#deadLetter(batch, outcomes))) {
        session.abandoned = true;
        return;
      }
      await previous;
      this.#ack(batch, outcomes);
    } finally {
      release();
    }
  }

  /** Runs the handler until it gives outcomes; undefined when the batch had to be abandoned. */
  async #resolve(deliveries: Delivery[], session: Session): Promise<Outcome[] | undefined> {
    for (let attempt = 0; ; attempt++) {
      // A stop lets the attempt in progress finish but starts no retry.
      if (!session.alive || (this.#stopping && attempt > 0)) {
        return undefined;
      }
      let failure: unknown;
      try {
        const outcomes = await this.#o.handler(deliveries);
        if (outcomes.length !== deliveries.length) {
          throw new Error(`handler returned ${outcomes.length} outcomes for ${deliveries.length}`);
        }
        await this.#resume(session);
        return outcomes;
      } catch (err) {
        failure = err;
      }
      const c = classifyError(failure);
      const transient =
        c.kind === "transient" || (c.kind === "unknown" && !(await this.#o.isHealthy()));
      if (!transient) {
        if (deliveries.length === 1) {
          const reason = c.kind === "permanent" ? c.reason : "processing_failed";
          return [{ action: "dead-letter", reason, error: c.error.message }];
        }
        // Find the bad ones: everyone else in the batch must still get through.
        const outcomes: Outcome[] = [];
        for (const delivery of deliveries) {
          const single = await this.#resolve([delivery], session);
          if (!single) {
            return undefined;
          }
          outcomes.push(...single);
        }
        return outcomes;
      }
      await this.#hold(session);
      if (Date.now() - this.#holdingSince >= this.#o.holdMs) {
        this.#release(session);
        return undefined;
      }
      const delay = Math.min(
        backoffDelay(attempt, { maxMs: 15_000 }),
        Math.max(1, this.#holdingSince + this.#o.holdMs - Date.now()),
      );
      this.#o.metrics.retried.inc({ component: this.#o.component }, deliveries.length);
      this.#log.warn(
        { err: c.error, retryInMs: delay, batch: deliveries.length },
        "retrying batch",
      );
      await sleep(delay, this.#abort.signal);
    }
  }

  /**
   * A batch failed transiently: stop taking new messages (cancel the consumer), so that while
   * PostgreSQL or the broker is away only what is already in hand waits, and only for `holdMs`.
   */
  async #hold(session: Session): Promise<void> {
    if (this.#state !== "running") {
      return;
    }
    this.#state = "holding";
    this.#holdingSince = Date.now();
    const tag = session.consumerTag;
    session.consumerTag = undefined;
    this.#log.warn(
      { queue: this.#o.queue.name, holdMs: this.#o.holdMs },
      "cannot process messages: stopped consuming until the infrastructure answers",
    );
    if (tag !== undefined && session.alive) {
      await session.channel.cancel(tag).catch(() => undefined);
    }
  }

  /** A batch went through while holding: consume again on the same channel. */
  async #resume(session: Session): Promise<void> {
    if (this.#state !== "holding" || !session.alive || this.#stopping) {
      return;
    }
    this.#state = "running";
    try {
      const { consumerTag } = await session.channel.consume(
        this.#o.queue.name,
        (msg) => this.#onMessage(session, msg),
        { noAck: false },
      );
      session.consumerTag = consumerTag;
      this.#log.info({ queue: this.#o.queue.name }, "processing again; consuming");
    } catch (err) {
      // The channel is going away; its close handler opens a new session.
      this.#log.warn({ err }, "cannot consume again on this channel");
    }
  }

  /**
   * The hold ran out. Holding longer would meet RabbitMQ's consumer timeout, which closes the
   * channel and redelivers (one count against the quorum queue's delivery limit) every 30 min;
   * nacking and consuming again would churn the count faster. Instead the channel is closed once
   * (everything in hand goes back with one count), and nothing is consumed until `isHealthy`
   * answers: a PostgreSQL outage of any length costs each message at most one delivery.
   */
  #release(session: Session): void {
    if (this.#state === "released") {
      return;
    }
    this.#state = "released";
    this.#log.warn(
      { queue: this.#o.queue.name, heldMs: Date.now() - this.#holdingSince },
      "infrastructure still unavailable: messages handed back to RabbitMQ; waiting before consuming again",
    );
    session.alive = false;
    if (this.#session === session) {
      this.#dropSession();
    }
    this.#buffer = [];
    void session.channel.close().catch(() => undefined);
    void this.#awaitRecovery();
  }

  async #awaitRecovery(): Promise<void> {
    for (let attempt = 0; !this.#stopping; attempt++) {
      await sleep(backoffDelay(attempt, { maxMs: 15_000 }), this.#abort.signal);
      if (this.#stopping) {
        return;
      }
      if (await this.#o.isHealthy().catch(() => false)) {
        break;
      }
    }
    if (this.#stopping) {
      return;
    }
    this.#log.info({ queue: this.#o.queue.name }, "infrastructure answers again");
    this.#state = "running";
    if (this.#o.connection.isConnected) {
      this.#open();
    }
  }

  /** Publishes the batch's dead letters, confirmed; false when the batch had to be abandoned. */
  async #deadLetter(batch: Item[], outcomes: Outcome[]): Promise<boolean> {
    const dead = batch.flatMap((item, i) => {
      const outcome = outcomes[i]!;
      return outcome.action === "dead-letter" ? [{ item, outcome }] : [];
    });
    for (let attempt = 0; dead.length > 0; attempt++) {
      const session = batch[0]!.session;
      if (!session.alive || (this.#stopping && attempt > 0)) {
        return false;
      }
      try {
        await this.#o.deadLetters.publish(
          dead.map(({ item, outcome }) => ({
            body: item.delivery.body,
            messageId: item.delivery.messageId ?? "",
            correlationId: item.delivery.correlationId,
            routingKey: this.#o.queue.name,
            headers: {
              ...item.delivery.headers,
              "x-broker-reason": outcome.reason,
              "x-broker-error": outcome.error.slice(0, 2000),
              "x-broker-queue": this.#o.queue.name,
              "x-broker-component": this.#o.component,
            },
          })),
        );
        break;
      } catch (err) {
        const delay = backoffDelay(attempt);
        this.#log.warn({ err, retryInMs: delay }, "cannot publish dead letters yet");
        await sleep(delay, this.#abort.signal);
      }
    }
    for (const { item, outcome } of dead) {
      this.#log.warn(
        {
          broker_correlation_id: outcome.correlationId ?? item.delivery.correlationId,
          reason: outcome.reason,
          error: outcome.error,
        },
        "message dead-lettered",
      );
      this.#o.metrics.deadLettered.inc({ component: this.#o.component, reason: outcome.reason });
    }
    return true;
  }

  /** Acknowledges a settled batch; every earlier batch of its channel is settled by now. */
  #ack(batch: Item[], outcomes: Outcome[]): void {
    const session = batch[0]!.session;
    if (!session.alive) {
      return;
    }
    if (session.abandoned) {
      for (const item of batch) {
        session.channel.ack(item.message);
      }
    } else {
      // Batches are taken in delivery order and all earlier ones are acked: one ack covers all.
      session.channel.ack(batch[batch.length - 1]!.message, true);
    }
    const now = Date.now();
    const acked = outcomes.filter((o) => o.action === "ack").length;
    this.#o.metrics.messagesOut.inc({ component: this.#o.component }, acked);
    for (const item of batch) {
      this.#o.metrics.processingSeconds.observe(
        { component: this.#o.component },
        (now - item.delivery.receivedAt) / 1000,
      );
    }
  }

  /**
   * Stops taking messages, lets the batch in progress finish (bounded), and hands everything
   * not yet acknowledged back to RabbitMQ. Idempotent.
   */
  stop(timeoutMs = 8_000): Promise<void> {
    this.#stopped ??= this.#stop(timeoutMs);
    return this.#stopped;
  }

  async #stop(timeoutMs: number): Promise<void> {
    this.#o.connection.off("connected", this.#onConnected);
    const session = this.#session;
    if (session?.alive && session.consumerTag) {
      await session.channel.cancel(session.consumerTag).catch(() => undefined);
    }
    this.#stopping = true;
    clearTimeout(this.#timer);
    const waited = new AbortController();
    await Promise.race([Promise.allSettled([...this.#active]), sleep(timeoutMs, waited.signal)]);
    waited.abort();
    this.#abort.abort();
    const settled = new AbortController();
    await Promise.race([
      Promise.allSettled([...this.#active, this.#opening]),
      sleep(1_000, settled.signal),
    ]);
    settled.abort();
    if (session?.alive) {
      // Requeue whatever is still unacknowledged on this channel (buffered or abandoned).
      try {
        session.channel.nackAll(true);
      } catch {
        // channel already gone: RabbitMQ requeues on close anyway
      }
      await session.channel.close().catch(() => undefined);
    }
    this.#buffer = [];
    this.#session = undefined;
  }
}
