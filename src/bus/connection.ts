import { EventEmitter } from "node:events";

import amqp from "amqplib";

import { backoffDelay, sleep } from "../core/backoff.js";
import { TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

export type AmqpChannel = amqp.Channel;
export type AmqpConfirmChannel = amqp.ConfirmChannel;

export interface AmqpConnectionOptions {
  /** One AMQP URL, or several comma-separated (a cluster's nodes), tried in turn. */
  url: string;
  /** Shown in RabbitMQ's management UI and `rabbitmqctl list_connections`. */
  name: string;
  logger: Logger;
  /** Longest wait between reconnection attempts in ms. Default 15 000. */
  maxBackoffMs?: number;
}

interface ConnectionEvents {
  connected: [];
  disconnected: [Error | undefined];
}

/**
 * One AMQP connection that keeps itself open: it connects in the background, reconnects with
 * capped, jittered backoff whenever the broker or the network drops it, and tells channel owners
 * (publishers, consumers) through `connected`/`disconnected` so they can rebuild their channels.
 * Nobody else imports amqplib.
 */
export class AmqpConnection extends EventEmitter<ConnectionEvents> {
  readonly #options: AmqpConnectionOptions;
  readonly #logger: Logger;
  #connection: amqp.ChannelModel | undefined;
  /** Set once the first attempt has connected or failed. */
  #firstAttemptDone = false;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  readonly #abort = new AbortController();

  constructor(options: AmqpConnectionOptions) {
    super();
    this.setMaxListeners(100);
    this.#options = options;
    this.#logger = options.logger;
  }

  get isConnected(): boolean {
    return this.#connection !== undefined;
  }

  /**
   * True while the very first connection attempt is still in progress: not connected, but not
   * failing either, so a channel owner that finds no connection need not warn about it.
   */
  get isOpening(): boolean {
    return !this.#stopping && this.#loop !== undefined && !this.#firstAttemptDone;
  }

  /** Starts connecting in the background; returns at once. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Resolves once connected; rejects with TransientError after `timeoutMs`. */
  async waitUntilConnected(timeoutMs = 10_000): Promise<void> {
    if (this.#connection) {
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("connected", onConnected);
        reject(new TransientError(`RabbitMQ not reachable within ${timeoutMs} ms`));
      }, timeoutMs);
      const onConnected = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.once("connected", onConnected);
    });
  }

  /** A new channel on the current connection; TransientError when there is none. */
  async createChannel(): Promise<AmqpChannel> {
    return this.#current().createChannel();
  }

  async createConfirmChannel(): Promise<AmqpConfirmChannel> {
    return this.#current().createConfirmChannel();
  }

  #current(): amqp.ChannelModel {
    if (!this.#connection) {
      throw new TransientError("RabbitMQ connection is not open");
    }
    return this.#connection;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    const urls = nodeUrls(this.#options.url);
    /** The node tried next: after a failure or a lost connection, the following one. */
    let node = 0;
    while (!this.#stopping) {
      let connection: amqp.ChannelModel;
      const url = urls[node % urls.length]!;
      try {
        connection = await amqp.connect(url, {
          clientProperties: { connection_name: this.#options.name },
          heartbeat: 15,
        });
      } catch (err) {
        this.#firstAttemptDone = true;
        node++;
        // Every node of a cluster once without waiting, then backoff per round.
        if (node % urls.length !== 0) {
          this.#logger.warn(
            { err, node: safeUrl(url) },
            "RabbitMQ node unreachable; trying the next",
          );
          continue;
        }
        const delay = backoffDelay(attempt++, { maxMs: this.#options.maxBackoffMs ?? 15_000 });
        this.#logger.warn({ err, retryInMs: delay }, "RabbitMQ connection failed");
        await sleep(delay, this.#abort.signal);
        continue;
      }
      if (this.#stopping) {
        await connection.close().catch(() => undefined);
        break;
      }
      attempt = 0;
      this.#firstAttemptDone = true;
      const closed = new Promise<Error | undefined>((resolve) => {
        let failure: Error | undefined;
        connection.on("error", (err: Error) => {
          failure = err;
          this.#logger.warn({ err }, "RabbitMQ connection error");
        });
        connection.on("close", (err?: Error) => resolve(err ?? failure));
        this.#wake = () => resolve(undefined);
      });
      connection.on("blocked", (reason: string) =>
        this.#logger.warn({ reason }, "RabbitMQ blocked publishing (resource alarm)"),
      );
      connection.on("unblocked", () => this.#logger.info("RabbitMQ unblocked publishing"));
      this.#connection = connection;
      this.#logger.info({ name: this.#options.name, node: safeUrl(url) }, "RabbitMQ connected");
      this.emit("connected");
      const reason = await closed;
      this.#connection = undefined;
      if (this.#stopping) {
        break;
      }
      this.#logger.warn({ err: reason }, "RabbitMQ connection lost; reconnecting");
      // The node that dropped us may be the one going down: start with the next.
      node++;
      this.emit("disconnected", reason);
      await sleep(backoffDelay(0), this.#abort.signal);
    }
  }

  /** Closes the connection and stops reconnecting. Idempotent. */
  async close(): Promise<void> {
    if (this.#stopping) {
      return this.#loop;
    }
    this.#stopping = true;
    this.#abort.abort();
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection) {
      await connection.close().catch(() => undefined);
    }
    this.#wake?.();
    await this.#loop;
  }
}

/** The node URLs of a comma-separated AMQP_URL. */
export function nodeUrls(list: string): string[] {
  const urls = list
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
  if (urls.length === 0) {
    throw new Error("no AMQP URL given");
  }
  return urls;
}

/** A URL without its password, for logs. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}
