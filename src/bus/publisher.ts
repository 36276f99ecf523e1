import { TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { AmqpConfirmChannel, AmqpConnection } from "./connection.js";

/** One message to publish. */
export interface OutgoingMessage {
  /** JSON-serialisable body, or bytes already encoded. */
  body: unknown;
  /** AMQP message_id: the idempotency key downstream consumers may use. */
  messageId: string;
  /** AMQP correlation_id: the broker_correlation_id. */
  correlationId?: string;
  /** Ignored by fanout exchanges. Default "". */
  routingKey?: string;
  headers?: Record<string, unknown>;
}

export interface PublisherOptions {
  connection: AmqpConnection;
  exchange: string;
  logger: Logger;
  /** Sets AMQP app_id. Default "broker". */
  appId?: string;
  /**
   * When true, a message no queue receives counts as a failure (the exchange is durable but
   * nothing is bound, so the broker would confirm and then discard it). Default true.
   */
  mandatory?: boolean;
  /** Longest wait for confirms, in ms. Default 10 000. */
  timeoutMs?: number;
  /**
   * Longest wait for a connection that is down, in ms. Default: `timeoutMs`. Request-driven
   * publishers use 0 to fail fast and let their caller answer "retry later".
   */
  connectWaitMs?: number;
}

/**
 * Publishes persistent JSON messages and resolves only when RabbitMQ has confirmed every one of
 * them, i.e. they are on disk in every queue they were routed to. Any failure (no connection,
 * nack, channel closed, unroutable, timeout) rejects with TransientError: the caller keeps its
 * input unacknowledged and tries again later.
 */
export class ConfirmedPublisher {
  readonly #options: PublisherOptions;
  readonly #logger: Logger;
  #channel: Promise<AmqpConfirmChannel> | undefined;
  /**
   * message ids RabbitMQ handed back as unroutable; a basic.return always precedes the confirm of
   * the same message on its channel, so the confirm callback can look here.
   */
  readonly #returned = new Set<string>();
  #closed = false;

  constructor(options: PublisherOptions) {
    this.#options = options;
    this.#logger = options.logger;
    options.connection.on("disconnected", () => {
      this.#channel = undefined;
    });
  }

  get exchange(): string {
    return this.#options.exchange;
  }

  #getChannel(): Promise<AmqpConfirmChannel> {
    this.#channel ??= this.#openChannel().catch((err: unknown) => {
      this.#channel = undefined;
      throw err instanceof TransientError
        ? err
        : new TransientError(`cannot open a publishing channel: ${(err as Error).message}`, {
            cause: err,
          });
    });
    return this.#channel;
  }

  async #openChannel(): Promise<AmqpConfirmChannel> {
    const connection = this.#options.connection;
    const wait = this.#options.connectWaitMs ?? this.#options.timeoutMs ?? 10_000;
    if (!connection.isConnected && wait <= 0) {
      throw new TransientError("RabbitMQ connection is not open");
    }
    await connection.waitUntilConnected(wait);
    const channel = await connection.createConfirmChannel();
    const thisChannel = this.#channel;
    channel.on("error", (err: Error) => this.#logger.warn({ err }, "publishing channel error"));
    channel.on("close", () => {
      if (this.#channel === thisChannel) {
        this.#channel = undefined;
      }
    });
    channel.on("return", (msg: { properties: { messageId?: string } }) => {
      if (msg.properties.messageId !== undefined) {
        this.#returned.add(msg.properties.messageId);
      }
    });
    return channel;
  }

  /** Forgets `channel` (if it is still the current one) and closes it in the background. */
  #discardChannel(channel: AmqpConfirmChannel): void {
    const current = this.#channel;
    if (current === undefined) {
      return;
    }
    void current.then(
      (open) => {
        if (open === channel && this.#channel === current) {
          this.#channel = undefined;
          channel.close().catch(() => undefined);
        }
      },
      () => undefined,
    );
  }

  /** Publishes all `messages` and waits for every confirm. */
  async publish(messages: readonly OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) {
      return;
    }
    if (this.#closed) {
      throw new TransientError("publisher is closed");
    }
    const channel = await this.#getChannel();
    const timeoutMs = this.#options.timeoutMs ?? 10_000;
    const mandatory = this.#options.mandatory ?? true;
    const confirms: Promise<void>[] = [];
    const nowSeconds = Math.floor(Date.now() / 1000);
    for (const message of messages) {
      const content = Buffer.isBuffer(message.body)
        ? message.body
        : Buffer.from(JSON.stringify(message.body), "utf8");
      const id = message.messageId;
      confirms.push(
        new Promise<void>((resolve, reject) => {
          const ok = channel.publish(
            this.#options.exchange,
            message.routingKey ?? "",
            content,
            {
              persistent: true,
              contentType: "application/json",
              contentEncoding: "utf-8",
              messageId: id,
              correlationId: message.correlationId,
              appId: this.#options.appId ?? "broker",
              timestamp: nowSeconds,
              mandatory,
              headers: message.headers,
            },
            (err: unknown) => {
              const returned = this.#returned.delete(id);
              if (err) {
                // A nack can mean this channel's view of a quorum queue is stale (its leader was
                // on a cluster node that died before a new one was elected): the next publish
                // goes out on a fresh channel instead of being nacked again.
                this.#discardChannel(channel);
                reject(new TransientError(`RabbitMQ did not confirm a message: ${String(err)}`));
              } else if (returned) {
                reject(
                  new TransientError(
                    `no queue is bound to exchange ${this.#options.exchange}; message not routed`,
                  ),
                );
              } else {
                resolve();
              }
            },
          );
          if (!ok) {
            // The socket buffer is full; the confirm still arrives, nothing to do but carry on.
            this.#logger.debug("publish buffer full");
          }
        }),
      );
    }
    await confirmedWithin(Promise.all(confirms), timeoutMs);
  }

  async close(): Promise<void> {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    const channel = await this.#channel?.catch(() => undefined);
    await channel?.close().catch(() => undefined);
  }
}

/** Waits for `confirms`; a TransientError when RabbitMQ has not confirmed within `timeoutMs`. */
export async function confirmedWithin<T>(confirms: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      confirms,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TransientError(`no confirm from RabbitMQ within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
