import type { BackoffOptions } from "../core/backoff.js";
import type { Logger } from "../core/logger.js";

/** What an MqttSubscriber (subscriber.ts) is given, and what it hands over per message. */

/** One message as the broker delivered it. */
export interface MqttDelivery {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  /** The broker's DUP flag: it may have delivered this message before. */
  readonly duplicate: boolean;
}

export interface MqttSubscriberOptions {
  /** Broker URL, e.g. `mqtt://localhost:1883`. */
  readonly url: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** Stable client id: the broker keeps the persistent session (clean: false) under it. */
  readonly clientId: string;
  /** Topic filters, subscribed at QoS 1 on every connect. */
  readonly topics: readonly string[];
  /** MQTT keepalive in seconds. Default 60. */
  readonly keepaliveSeconds?: number;
  /**
   * Deliveries being processed at once; beyond it the subscriber stops reading from the socket
   * until one finishes (back-pressure for QoS 0 floods; QoS 1 is bounded by the broker's own
   * in-flight window). Default 1000.
   */
  readonly maxInProcess?: number;
  /** Delays between reconnect attempts. Default 1 s doubling to 30 s, jittered. */
  readonly reconnect?: BackoffOptions;
  readonly logger: Logger;
  /**
   * Processes one delivery. Resolving sends its PUBACK (in arrival order); rejecting sends none,
   * so the broker redelivers it after the next reconnect.
   */
  readonly onMessage: (delivery: MqttDelivery) => Promise<void>;
}
