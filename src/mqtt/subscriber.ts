import mqtt, { type MqttClient } from "mqtt";

import { backoffDelay } from "../core/backoff.js";
import type { Logger } from "../core/logger.js";
import { PubackQueue, type AckTicket } from "./acks.js";
import type { MqttDelivery, MqttSubscriberOptions } from "./options.js";

export type { MqttDelivery, MqttSubscriberOptions } from "./options.js";

type PublishPacket = Parameters<MqttClient["handleMessage"]>[0];

/**
 * Given to mqtt.js's `handleMessage` callback, it skips mqtt.js's own PUBACK and lets it read
 * the next packet at once: mqtt.js handles one packet at a time and would otherwise hold every
 * later message (and PINGRESP) until this one is durable. We send the PUBACK ourselves later.
 */
const ACK_LATER = new Error("PUBACK is sent by MqttSubscriber once the message is durable");

/**
 * A durable MQTT subscription: persistent session (clean: false), QoS 1, a PUBACK only once the
 * handler says the message is safe, reconnects with capped jittered backoff for as long as it
 * runs. The only user of the `mqtt` package.
 *
 * mqtt.js's `customHandleAcks` works only with MQTT 5, and both it and `handleMessage` stall the
 * whole connection while one message is processed, so this class answers `handleMessage` at
 * once and sends the PUBACK packet itself, on the same connection, when the handler resolves.
 */
export class MqttSubscriber {
  readonly #options: MqttSubscriberOptions;
  readonly #logger: Logger;
  readonly #maxInProcess: number;
  #client: MqttClient | undefined;
  /** Bumped on every connection loss: acknowledgements for an older connection are dropped. */
  #generation = 0;
  #acks = new PubackQueue();
  #ready = false;
  #stopping = false;
  #attempt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #inProcess = 0;
  /** Deliveries held at the gate while maxInProcess are running: `true` processes, `false` drops. */
  readonly #admitWaiting: ((process: boolean) => void)[] = [];

  constructor(options: MqttSubscriberOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#maxInProcess = options.maxInProcess ?? 1000;
  }

  /** Connected and subscribed. */
  get isReady(): boolean {
    return this.#ready;
  }

  /** Connects (and keeps reconnecting in the background); returns at once. */
  start(): void {
    const o = this.#options;
    const client = mqtt.connect(o.url, {
      clientId: o.clientId,
      clean: false,
      protocolVersion: 4,
      keepalive: o.keepaliveSeconds ?? 60,
      username: o.username,
      password: o.password,
      connectTimeout: 10_000,
      // Reconnects are ours (backoff); subscriptions are renewed on every connect.
      reconnectPeriod: 0,
      resubscribe: false,
      manualConnect: true,
    });
    client.handleMessage = (packet, callback) => this.#arrive(packet, callback);
    client.on("connect", (connack) => {
      this.#attempt = 0;
      this.#logger.info(
        { url: redact(o.url), clientId: o.clientId, sessionPresent: connack.sessionPresent },
        "MQTT connected",
      );
      this.#subscribe(client);
    });
    client.on("close", () => this.#lost(client));
    client.on("error", (err) =>
      this.#logger.warn({ err: err.message, url: redact(o.url) }, "MQTT error"),
    );
    this.#client = client;
    client.connect();
  }

  #subscribe(client: MqttClient): void {
    const generation = this.#generation;
    const filters = Object.fromEntries(this.#options.topics.map((t) => [t, { qos: 1 as const }]));
    client.subscribe(filters, (err, granted) => {
      if (generation !== this.#generation) {
        return;
      }
      const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
      if (err || refused.length > 0) {
        this.#logger.error(
          { err: err?.message, refused, topics: this.#options.topics },
          "MQTT subscription refused; reconnecting",
        );
        client.stream.destroy();
        return;
      }
      this.#ready = true;
      this.#logger.info({ topics: this.#options.topics }, "MQTT subscribed at QoS 1");
    });
  }

  #lost(client: MqttClient): void {
    const wasReady = this.#ready;
    this.#ready = false;
    this.#generation++;
    this.#acks = new PubackQueue();
    if (this.#stopping || this.#reconnectTimer) {
      return;
    }
    const delay = backoffDelay(this.#attempt++, {
      initialMs: 1_000,
      maxMs: 30_000,
      ...this.#options.reconnect,
    });
    (wasReady ? this.#logger.warn : this.#logger.debug).call(
      this.#logger,
      { url: redact(this.#options.url), retryInMs: delay },
      "MQTT connection lost; reconnecting",
    );
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.#stopping) {
        client.reconnect();
      }
    }, delay);
  }

  #arrive(packet: PublishPacket, callback: (error?: Error) => void): void {
    const generation = this.#generation;
    const queue = this.#acks;
    const messageId = packet.qos > 0 ? packet.messageId : undefined;
    if (this.#stopping) {
      // Not processed and not acknowledged: the broker keeps it for the next session.
      callback(messageId === undefined ? undefined : ACK_LATER);
      return;
    }
    const admit = (process: boolean): void => {
      if (!process) {
        callback(messageId === undefined ? undefined : ACK_LATER);
        return;
      }
      const ticket = messageId === undefined ? undefined : queue.take(messageId);
      this.#inProcess++;
      const delivery: MqttDelivery = {
        topic: packet.topic,
        payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
        qos: packet.qos,
        duplicate: packet.dup,
      };
      void Promise.resolve(delivery)
        .then(this.#options.onMessage)
        .then(
          () => this.#finish(queue, ticket, generation, "ack"),
          () => this.#finish(queue, ticket, generation, "skip"),
        );
      callback(ticket ? ACK_LATER : undefined);
    };
    if (this.#inProcess < this.#maxInProcess) {
      admit(true);
    } else {
      this.#admitWaiting.push(admit);
    }
  }

  #finish(
    queue: PubackQueue,
    ticket: AckTicket | undefined,
    generation: number,
    outcome: "ack" | "skip",
  ): void {
    this.#inProcess--;
    this.#admitWaiting.shift()?.(true);
    if (!ticket) {
      return;
    }
    const release = queue.settle(ticket, outcome);
    const client = this.#client;
    // A PUBACK belongs to the connection that delivered the message; after a reconnect the
    // broker redelivers it and the new copy is acknowledged instead.
    if (!client || generation !== this.#generation || !client.connected) {
      return;
    }
    for (const messageId of release) {
      client["_sendPacket"]({ cmd: "puback", messageId });
    }
  }

  /** Stops processing new deliveries; they stay unacknowledged for the next session. */
  pause(): void {
    this.#stopping = true;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    // Deliveries waiting at the gate are released unprocessed and unacknowledged.
    for (const admit of this.#admitWaiting.splice(0)) {
      admit(false);
    }
  }

  /**
   * Disconnects cleanly (acknowledgements already sent go first); the broker keeps the session
   * and every unacknowledged message for the next start. Call after the handlers finished.
   */
  async close(timeoutMs = 2_000): Promise<void> {
    this.pause();
    const client = this.#client;
    if (!client) {
      return;
    }
    this.#ready = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        client.stream?.destroy();
        resolve();
      }, timeoutMs);
      client.end(!client.connected, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** The URL without its password, for logs. */
/** The URL with any password replaced by `***`, for logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
}
