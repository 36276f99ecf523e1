import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";

import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";

import { loadDotEnv } from "../../src/cli/dotenv.js";
import { ConfigError, Environment, loadConfig, parseSection } from "../../src/core/config.js";

describe("configuration", () => {
  it("uses IoTa's variable names with the documented defaults", () => {
    const c = loadConfig({});
    expect(c.pg).toMatchObject({
      host: "localhost",
      port: 5432,
      user: "postgres",
      database: "broker",
    });
    expect(c.amqp.url).toBe("amqp://guest:guest@localhost:5672/%2F");
    expect(c.amqp.ptsExchange).toBe("physical_timeseries");
    expect(c.amqp.ltsExchange).toBe("logical_timeseries");
    expect(c.amqp.queueType).toBe("quorum");
    expect(c.ttnWebhook.port).toBe(5688);
    expect(c.frred.dir).toBeUndefined();
  });

  it("URL-escapes RabbitMQ credentials and the vhost (IoTa did not)", () => {
    const c = loadConfig({
      RABBITMQ_HOST: "mq",
      RABBITMQ_DEFAULT_USER: "bro:ker",
      RABBITMQ_DEFAULT_PASS: "p@ss/w#rd",
      RABBITMQ_VHOST: "iot",
    });
    expect(c.amqp.url).toBe("amqp://bro%3Aker:p%40ss%2Fw%23rd@mq:5672/iot");
  });

  it("lets AMQP_URL override the RABBITMQ_* variables", () => {
    expect(loadConfig({ AMQP_URL: "amqp://a:b@h:1/v", RABBITMQ_HOST: "x" }).amqp.url).toBe(
      "amqp://a:b@h:1/v",
    );
  });

  it("puts FRRED files under $DATABOLT_SHARED_DIR/raw_data unless FRRED_DIR says otherwise", () => {
    expect(loadConfig({ DATABOLT_SHARED_DIR: "/srv/databolt" }).frred.dir).toBe(
      "/srv/databolt/raw_data",
    );
    expect(loadConfig({ DATABOLT_SHARED_DIR: "/srv/databolt", FRRED_DIR: "/x" }).frred.dir).toBe(
      "/x",
    );
    expect(loadConfig({ FRRED_SOURCES: "wombat, axistech" }).frred.sources).toEqual([
      "wombat",
      "axistech",
    ]);
  });

  it("takes the number of FRRED file threads from FRRED_THREADS, 4 by default", () => {
    expect(loadConfig({}).frred.threads).toBe(4);
    expect(loadConfig({ FRRED_THREADS: "8" }).frred.threads).toBe(8);
    expect(() => loadConfig({ FRRED_THREADS: "0" })).toThrow(/FRRED_THREADS/);
  });

  it("takes the TTN webhook's bound on waiting requests from TTN_WEBHOOK_MAX_WAITING, 1000 by default", () => {
    expect(loadConfig({}).ttnWebhook.maxWaiting).toBe(1_000);
    expect(loadConfig({ TTN_WEBHOOK_MAX_WAITING: "50" }).ttnWebhook.maxWaiting).toBe(50);
    expect(() => loadConfig({ TTN_WEBHOOK_MAX_WAITING: "0" })).toThrow(/TTN_WEBHOOK_MAX_WAITING/);
  });

  it("names every bad variable in one error, at start-up", () => {
    try {
      loadConfig({ PGPORT: "not-a-port", QUEUE_TYPE: "lazy", PREFETCH: "0" });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as Error).message;
      expect(message).toContain("PGPORT");
      expect(message).toContain("QUEUE_TYPE");
      expect(message).toContain("PREFETCH");
    }
  });

  it("marks production with BROKER_ENV, and names the variable when it is wrong", () => {
    expect(loadConfig({}).production).toBe(false);
    expect(loadConfig({ BROKER_ENV: "development" }).production).toBe(false);
    expect(loadConfig({ BROKER_ENV: "production" }).production).toBe(true);
    // NODE_ENV is npm's business (it changes what `npm ci` installs), not ours.
    expect(loadConfig({ NODE_ENV: "production" }).production).toBe(false);
    expect(() => loadConfig({ BROKER_ENV: "prod" })).toThrow(/BROKER_ENV/);
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ PGPORT: "" }).pg.port).toBe(5432);
  });

  it("validates a component's own section from the same environment", () => {
    const config = loadConfig({ EXAMPLE_SECONDS: "abc" });
    const schema = z.object({ EXAMPLE_SECONDS: z.coerce.number().int().positive() });
    expect(() => parseSection(config, schema, "example")).toThrow(/EXAMPLE_SECONDS/);
  });

  it("is frozen", () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.amqp)).toBe(true);
  });
});

describe(".env", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "dotenv-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("fills in what the environment lacks and never overrides it", async () => {
    const file = join(dir, ".env");
    await writeFile(file, "PGHOST=db\nPGPORT=6543\n# comment\nLOG_LEVEL='debug'\n");
    const env: NodeJS.ProcessEnv = { PGHOST: "already" };
    expect(loadDotEnv(file, env).sort()).toEqual(["LOG_LEVEL", "PGPORT"]);
    expect(env).toEqual({ PGHOST: "already", PGPORT: "6543", LOG_LEVEL: "debug" });
  });

  it("does nothing without a file", () => {
    const env: NodeJS.ProcessEnv = {};
    expect(loadDotEnv(join(dir, "missing.env"), env)).toEqual([]);
    expect(env).toEqual({});
  });
});

describe("the environment components are handed", () => {
  const config = loadConfig({
    PGPASSWORD: "pg-secret",
    UBIDOTS_API_TOKEN: "ubi-secret",
    YDOC_MQTT_URL: "mqtt://y:1883",
    YDOC_MQTT_TOPICS: "ydoc/#",
    EMPTY: "",
  });

  it("never prints a variable's value: JSON, util.inspect and a logged object show a count", () => {
    const lines: string[] = [];
    const logger = pino({}, { write: (line: string) => lines.push(line) });
    logger.info({ config }, "config");
    const shown = [JSON.stringify(config), inspect(config, { depth: 5 }), ...lines].join("\n");
    expect(shown).not.toContain("ubi-secret");
    expect(shown).not.toContain("mqtt://y:1883");
    expect(shown).toMatch(/\[Environment: \d+ variables\]/);
  });

  it("hands out a section, one variable, or one prefix's variables; empty counts as unset", () => {
    expect(config.env.value("UBIDOTS_API_TOKEN")).toBe("ubi-secret");
    expect(config.env.value("EMPTY")).toBeUndefined();
    expect(config.env.withPrefix("YDOC_")).toEqual({
      MQTT_URL: "mqtt://y:1883",
      MQTT_TOPICS: "ydoc/#",
    });
    const section = config.env.section(z.object({ UBIDOTS_API_TOKEN: z.string() }), "Ubidots");
    expect(section).toEqual({ UBIDOTS_API_TOKEN: "ubi-secret" });
    expect(() =>
      new Environment({ X_PORT: "eighty" }).section(
        z.object({ PORT: z.coerce.number() }),
        "X",
        "X_",
      ),
    ).toThrow(/invalid X configuration: X_PORT: /);
  });
});
