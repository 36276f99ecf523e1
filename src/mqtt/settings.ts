import { z } from "zod";

import { Environment, type Config } from "../core/config.js";

/**
 * One MQTT source's connection settings, from the environment. Every variable exists once for
 * all MQTT sources (`MQTT_URL`, …) and once per source with its prefix (`YDOC_MQTT_URL`, …);
 * the per-source one wins. `<P>_MQTT_SERVER` + `<P>_MQTT_PORT` is IoTa's ICT form of a URL.
 */
export interface MqttSettings {
  /** Broker URL (`mqtt://host:port`, `mqtts://…`). Default `mqtt://localhost:1883`. */
  readonly url: string;
  readonly username: string | undefined;
  readonly password: string | undefined;
  /**
   * The broker keeps this client's session (subscriptions, unacknowledged messages) under this
   * id while it is away. Default `iota-router-<component>`; every running copy needs its own.
   */
  readonly clientId: string;
  /** Topic filters subscribed at QoS 1. */
  readonly topics: readonly string[];
  /** MQTT keepalive in seconds. Default 60. */
  readonly keepaliveSeconds: number;
  /** Larger payloads are kept (truncated) and dead-lettered unparsed, in bytes. Default 262 144. */
  readonly maxPayloadBytes: number;
}

export interface MqttSourceNames {
  /** Variable prefix: `YDOC`, `WOMBAT`, `DRAGINO`, `ICT`. */
  readonly prefix: string;
  /** Component name, used in the default client id. */
  readonly component: string;
  readonly defaultTopics: readonly string[];
}

export const DEFAULT_MQTT_URL = "mqtt://localhost:1883";

const url = z
  .string()
  .regex(/^(mqtts?|tcp|ssl|wss?):\/\/[^/]/, "must be a URL such as mqtt://host:1883");
const positiveInt = z.coerce.number().int().positive();
const keepalive = positiveInt.max(65535);
const topicFilter = z
  .string()
  .min(1)
  .refine(
    (t) =>
      t
        .split("/")
        .every((level, i, all) =>
          level.includes("#")
            ? level === "#" && i === all.length - 1
            : !level.includes("+") || level === "+",
        ),
    "is not a valid MQTT topic filter",
  );
const topics = z
  .string()
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  )
  .pipe(z.array(topicFilter).min(1, "must name at least one topic filter"));

const shared = z.object({
  MQTT_URL: url.optional(),
  MQTT_USERNAME: z.string().optional(),
  MQTT_PASSWORD: z.string().optional(),
  MQTT_KEEPALIVE: keepalive.optional(),
  MQTT_MAX_PAYLOAD_BYTES: positiveInt.default(262_144),
});

const scoped = z.object({
  MQTT_URL: url.optional(),
  MQTT_SERVER: z.string().min(1).optional(),
  MQTT_PORT: positiveInt.max(65535).optional(),
  MQTT_USERNAME: z.string().optional(),
  MQTT_PASSWORD: z.string().optional(),
  MQTT_KEEPALIVE: keepalive.optional(),
  MQTT_CLIENT_ID: z.string().min(1).max(256).optional(),
  MQTT_TOPICS: topics.optional(),
});

/** Reads and validates one source's settings; throws ConfigError naming each bad variable. */
export function mqttSettings(config: Pick<Config, "env">, names: MqttSourceNames): MqttSettings {
  const common = config.env.section(shared, "MQTT");
  const prefix = `${names.prefix}_`;
  const own = new Environment(config.env.withPrefix(prefix)).section(scoped, "MQTT", prefix);
  const server = own.MQTT_SERVER ? `mqtt://${own.MQTT_SERVER}:${own.MQTT_PORT ?? 1883}` : undefined;
  return Object.freeze({
    url: own.MQTT_URL ?? server ?? common.MQTT_URL ?? DEFAULT_MQTT_URL,
    username: own.MQTT_USERNAME ?? common.MQTT_USERNAME,
    password: own.MQTT_PASSWORD ?? common.MQTT_PASSWORD,
    clientId: own.MQTT_CLIENT_ID ?? `iota-router-${names.component}`,
    topics: Object.freeze([...(own.MQTT_TOPICS ?? names.defaultTopics)]),
    keepaliveSeconds: own.MQTT_KEEPALIVE ?? common.MQTT_KEEPALIVE ?? 60,
    maxPayloadBytes: common.MQTT_MAX_PAYLOAD_BYTES,
  });
}

/** The last level of a topic (`ict/data/mncm2l307` → `mncm2l307`). */
export function lastTopicLevel(topic: string): string {
  return topic.slice(topic.lastIndexOf("/") + 1);
}
