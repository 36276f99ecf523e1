import { describe, expect, it } from "vitest";

import { ConfigError } from "../../src/core/config.js";
import { PubackQueue } from "../../src/mqtt/acks.js";
import { mqttSettings } from "../../src/mqtt/settings.js";
import { Environment } from "../../src/core/environment.js";

// The MQTT transport every MQTT source shares, exercised through ICT's settings (the source with
// IoTa's own MQTT variables).
const ict = { prefix: "ICT", component: "ict-mqtt", defaultTopics: ["ict/data/+"] };
const settings = (env: Record<string, string>) => mqttSettings({ env: new Environment(env) }, ict);

describe("MQTT settings", () => {
  it("defaults to the local broker, a stable client id, IoTa's topic, keepalive 60, 256 KiB", () => {
    expect(settings({})).toEqual({
      url: "mqtt://localhost:1883",
      username: undefined,
      password: undefined,
      clientId: "iota-router-ict-mqtt",
      topics: ["ict/data/+"],
      keepaliveSeconds: 60,
      maxPayloadBytes: 262_144,
    });
  });

  it("accepts IoTa's ICT_MQTT_SERVER, ICT_MQTT_PORT and ICT_MQTT_KEEPALIVE", () => {
    const s = settings({
      MQTT_URL: "mqtt://local:1883",
      ICT_MQTT_SERVER: "mqtt.ict.example",
      ICT_MQTT_PORT: "8883",
      ICT_MQTT_KEEPALIVE: "30",
    });
    expect(s.url).toBe("mqtt://mqtt.ict.example:8883");
    expect(s.keepaliveSeconds).toBe(30);
    expect(settings({ ICT_MQTT_SERVER: "h" }).url).toBe("mqtt://h:1883");
  });

  it("lets the per-source variable win over the shared one", () => {
    const s = settings({
      MQTT_URL: "mqtt://shared:1883",
      ICT_MQTT_URL: "mqtts://own:8883",
      ICT_MQTT_SERVER: "ignored",
      MQTT_USERNAME: "u",
      MQTT_PASSWORD: "p",
      ICT_MQTT_PASSWORD: "own",
      ICT_MQTT_CLIENT_ID: "ict-2",
      ICT_MQTT_TOPICS: "a/+, b/#",
      MQTT_MAX_PAYLOAD_BYTES: "1024",
    });
    expect(s).toMatchObject({
      url: "mqtts://own:8883",
      username: "u",
      password: "own",
      clientId: "ict-2",
      topics: ["a/+", "b/#"],
      maxPayloadBytes: 1024,
    });
    expect(settings({ MQTT_URL: "mqtt://shared:1883" }).url).toBe("mqtt://shared:1883");
  });

  it("names each bad variable", () => {
    expect(() => settings({ ICT_MQTT_PORT: "0", ICT_MQTT_SERVER: "h" })).toThrow(/ICT_MQTT_PORT/);
    expect(() => settings({ ICT_MQTT_KEEPALIVE: "-1" })).toThrow(/ICT_MQTT_KEEPALIVE/);
    expect(() => settings({ MQTT_URL: "localhost:1883" })).toThrow(ConfigError);
    expect(() => settings({ ICT_MQTT_TOPICS: "a/#/b" })).toThrow(/ICT_MQTT_TOPICS/);
    expect(() => settings({ ICT_MQTT_TOPICS: " , " })).toThrow(/at least one/);
  });
});

describe("PUBACK order", () => {
  it("acknowledges in arrival order, whatever order processing finishes in", () => {
    const q = new PubackQueue();
    const [a, b, c] = [q.take(1), q.take(2), q.take(3)];
    expect(q.settle(c, "ack")).toEqual([]);
    expect(q.settle(b, "ack")).toEqual([]);
    expect(q.settle(a, "ack")).toEqual([1, 2, 3]);
    expect(q.size).toBe(0);
  });

  it("lets the line move past a message left for redelivery, without acknowledging it", () => {
    const q = new PubackQueue();
    const [a, b] = [q.take(7), q.take(8)];
    expect(q.settle(b, "ack")).toEqual([]);
    expect(q.settle(a, "skip")).toEqual([8]);
    expect(q.settle(a, "ack")).toEqual([]);
  });
});
