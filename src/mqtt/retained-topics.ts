import { randomUUID } from "node:crypto";

import mqtt, { type MqttClient } from "mqtt";

import { TransientError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { redact } from "./subscriber.js";

/** Where the retained messages live and how to reach the broker. */
export interface RetainedTopicsOptions {
  /** Broker URL, e.g. `mqtt://localhost:1883`. */
  readonly url: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** Topics are `<root>/<name>` (IoTa's Wombat scripts: root `wombat`, name a serial number). */
  readonly root: string;
  /** Client id prefix; a random suffix keeps two processes from taking each other's session. */
  readonly clientIdPrefix: string;
  /** Longest wait for the broker to accept the connection, ms. Default 5 000. */
  readonly connectTimeoutMs?: number;
  /** Longest wait for the broker to acknowledge one script, ms. Default 10 000. */
  readonly publishTimeoutMs?: number;
  readonly logger: Logger;
}

/**
 * The retained messages under `<root>/+` on an MQTT broker: reading what the broker keeps, and
 * setting or clearing one (retained, QoS 1, so a call returns once the broker has it). Connects
 * on first use with a clean session and keeps the connection; a lost connection is dropped and
 * the next call connects again, so nothing here retries in the background. The `mqtt` package
 * stays in src/mqtt.
 */
export class RetainedTopics {
  readonly #o: RetainedTopicsOptions;
  readonly #retained = new Map<string, string>();
  #client: Promise<MqttClient> | undefined;
  /** The connection in use once connected. */
  #current: MqttClient | undefined;
  #stopped = false;

  constructor(options: RetainedTopicsOptions) {
    this.#o = options;
  }

  /** Name (the last topic level) → retained payload, for every non-empty retained message. */
  async list(): Promise<ReadonlyMap<string, string>> {
    await this.#connected();
    return new Map(this.#retained);
  }

  /** Retains `payload` on `<root>/<name>`; an empty payload clears it. Resolves on the PUBACK. */
  async set(name: string, payload: string): Promise<void> {
    if (name === "" || ["+", "#", "/", "\u0000"].some((c) => name.includes(c))) {
      throw new Error(`not a topic level: ${JSON.stringify(name)}`);
    }
    const client = await this.#connected();
    // A broker that stops answering without closing the connection must not hold the caller
    // until keepalive notices: past the deadline the connection is dropped and the call fails
    // (retrying is harmless, the script is retained whole).
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.publishAsync(`${this.#o.root}/${name}`, payload, { qos: 1, retain: true }),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => {
            client.end(true);
            reject(new Error("no PUBACK in time"));
          }, this.#o.publishTimeoutMs ?? 10_000);
        }),
      ]);
    } catch (err) {
      throw new TransientError(`MQTT publish failed: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    // Our own subscription echoes it too; setting it here makes the next list() see it at once.
    if (payload === "") {
      this.#retained.delete(name);
    } else {
      this.#retained.set(name, payload);
    }
  }

  /** Closes the connection. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      const c = await client.catch(() => undefined);
      await c?.endAsync(true).catch(() => undefined);
    }
  }

  #connected(): Promise<MqttClient> {
    if (this.#stopped) {
      return Promise.reject(new TransientError("stopping"));
    }
    this.#client ??= this.#connect().catch((err: unknown) => {
      this.#client = undefined;
      throw new TransientError(`MQTT broker unavailable: ${(err as Error).message}`, {
        cause: err,
      });
    });
    return this.#client;
  }

  async #connect(): Promise<MqttClient> {
    const o = this.#o;
    this.#retained.clear();
    const client = mqtt.connect(o.url, {
      clientId: `${o.clientIdPrefix}-${randomUUID().slice(0, 8)}`,
      clean: true,
      protocolVersion: 4,
      username: o.username,
      password: o.password,
      connectTimeout: o.connectTimeoutMs ?? 5_000,
      reconnectPeriod: 0,
    });
    client.on("message", (topic, payload) => {
      const name = topic.slice(o.root.length + 1);
      if (payload.length === 0) {
        this.#retained.delete(name);
      } else {
        this.#retained.set(name, payload.toString("utf8"));
      }
    });
    client.on("error", (err) => o.logger.warn({ err: err.message }, "MQTT error"));
    client.on("close", () => {
      // Forget this connection; the next call makes a new one and reads the retained set again.
      if (this.#current === client) {
        this.#current = undefined;
        this.#client = undefined;
      }
      client.end(true);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        client.once("connect", () => resolve());
        client.once("error", reject);
        client.once("close", () => reject(new Error("connection closed")));
      });
      await client.subscribeAsync(`${o.root}/+`, { qos: 1 });
      // The broker sends a subscription's retained messages before it answers the next packet,
      // so once a second SUBACK is back every retained message has arrived.
      const barrier = `${o.root}-barrier/${randomUUID()}`;
      await client.subscribeAsync(barrier, { qos: 0 });
      await client.unsubscribeAsync(barrier);
    } catch (err) {
      client.end(true);
      throw err;
    }
    o.logger.info({ url: redact(o.url), root: o.root }, "MQTT connected for retained scripts");
    this.#current = client;
    return client;
  }
}
