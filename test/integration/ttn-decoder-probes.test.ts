import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";
import { cleanupAmqp, isolatedAmqpConfig, openTestChannel, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { fixtureText } from "../helpers/ttn.js";

/**
 * Every hostile decoder in test/fixtures/ttn-decoders/hostile/uplink, through the real webhook:
 * an uplink on fPort 66 makes it attack (its bytes name a canary file to create), then an
 * ordinary uplink of the same application must still be decoded. One decoder worker, so each
 * probe also meets whatever the previous one left behind.
 */

const hostileDir = fileURLToPath(new URL("../fixtures/ttn-decoders/hostile/", import.meta.url));
/** Where load-time.js, which runs before any uplink names a canary, tries to write. */
const LOAD_TIME_CANARY = "/tmp/broker-decoder-probe-load-time";
const SECRET = "probe webhook secret";
const TIMEOUT_MS = 250;
const MEMORY_MB = 32;

type Expectation =
  | { readonly dead: string; readonly error: RegExp }
  | {
      /** The attack found nothing and returned normally: what was published. */
      readonly data: Record<string, number>;
      readonly warnings?: (warnings: string[]) => void;
    };

const notDefined = (name: string): Expectation => ({
  dead: "decoder_failed",
  error: new RegExp(`ReferenceError: '${name}' is not defined`),
});
const timeout: Expectation = { dead: "decoder_timeout", error: new RegExp(`${TIMEOUT_MS} ms`) };
const memory: Expectation = { dead: "decoder_memory", error: new RegExp(`${MEMORY_MB} MB memory`) };
/** Stack traces a decoder saw name its own frames only: no host file, path or Node internals. */
const sandboxFramesOnly = (warnings: string[]): void => {
  expect(warnings.length).toBeGreaterThan(0);
  for (const line of warnings.join("\n").split("\n")) {
    expect(line).not.toMatch(/\/|node:|\.ts\b/);
  }
};

const PROBES: Record<string, Expectation> = {
  "ctor-globalthis": notDefined("process"),
  "ctor-this": notDefined("process"),
  "ctor-function": notDefined("process"),
  "ctor-arrow": notDefined("process"),
  "ctor-generator": notDefined("process"),
  "ctor-async": { data: { attempted: 1 } },
  "input-ctor": { dead: "decoder_failed", error: /no constructor chain from the input/ },
  "function-eval": notDefined("process"),
  "load-time": { dead: "decoder_failed", error: /at load: ReferenceError: 'process' is not/ },
  "dynamic-import": { data: { attempted: 4 } },
  "stack-trace": { data: { frames: 0 }, warnings: sandboxFramesOnly },
  "returned-proxy": { data: { proxied: 1 }, warnings: sandboxFramesOnly },
  "returned-getter": timeout,
  species: { data: { species: 1 }, warnings: (w) => expect(w).toEqual(["species"]) },
  "object-prototype": { dead: "decoder_failed", error: /Error: index set/ },
  webassembly: notDefined("WebAssembly"),
  "atomics-wait": notDefined("Atomics"),
  "shared-array-buffer": notDefined("SharedArrayBuffer"),
  timers: {
    data: { timers: 5 },
    warnings: (w) =>
      expect(w).toEqual([
        "setTimeout missing",
        "setInterval missing",
        "setImmediate missing",
        "queueMicrotask missing",
        "requestAnimationFrame missing",
      ]),
  },
  "promise-jobs": { dead: "decoder_timeout", error: /promise jobs/ },
  "endless-loop": timeout,
  "endless-recursion": { dead: "decoder_failed", error: /InternalError: stack overflow/ },
  "recursion-catching": timeout,
  "string-doubling": memory,
  "array-growing": memory,
  "gigantic-output": { dead: "decoder_failed", error: /more than the limit of 262144/ },
  "host-globals": { data: { extra: 0 } },
};

type Body = Record<string, unknown> & {
  end_device_ids: Record<string, unknown>;
  uplink_message: Record<string, unknown>;
};
const netvox = JSON.parse(fixtureText("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json")) as Body;
const amqpConfig = isolatedAmqpConfig();
const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
const deadQueue = amqpConfig.queuePrefix + TTN_DEAD_LETTER_QUEUE;
/** A value only the test process's environment holds: it must never show up in a message. */
const envSecret = `probe-${randomUUID()}`;
const stringify = JSON.stringify;
const canaries = mkdtempSync(join(tmpdir(), "decoder-probes-"));
let db: TestDatabase;
let system: RunningSystem;
let base: string;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;

/** An uplink of application `app` (its decoder is uplink/<app>.js), TTN's decoding removed. */
function uplink(app: string, eui: string, fCnt: number, fPort: number, payload: Buffer): Body {
  const { decoded_payload: _d, ...message } = netvox.uplink_message;
  return {
    ...netvox,
    end_device_ids: {
      ...netvox.end_device_ids,
      device_id: `dev-${eui}`,
      dev_eui: eui,
      application_ids: { application_id: app },
    },
    uplink_message: {
      ...message,
      f_cnt: fCnt,
      f_port: fPort,
      frm_payload: payload.toString("base64"),
    },
  };
}

async function post(body: unknown): Promise<number> {
  const res = await fetch(`${base}/ttn/webhook/up`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-webhook-secret": SECRET },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}

async function take(queue: string, count: number): Promise<amqp.GetMessage[]> {
  await waitFor(
    async () => (await ch.checkQueue(queue)).messageCount >= count,
    15_000,
    `${count} message(s) on ${queue}`,
  );
  const out: amqp.GetMessage[] = [];
  for (let m = await ch.get(queue, { noAck: true }); m !== false;) {
    out.push(m);
    m = await ch.get(queue, { noAck: true });
  }
  return out;
}

interface Published {
  timeseries: { name: string; value: unknown }[];
  decoder?: { name: string; warnings?: string[] };
}

/** Nothing outside the sandbox was written, read or changed; `messages` carry nothing of ours. */
function hostUntouched(messages: amqp.GetMessage[]): void {
  expect(readdirSync(canaries)).toEqual([]);
  expect(existsSync(LOAD_TIME_CANARY)).toBe(false);
  for (const m of messages) {
    const text = m.content.toString() + stringify(m.properties.headers ?? {});
    expect(text).not.toContain(envSecret);
    expect(text).not.toMatch(/uid=\d+|PGPASSWORD|escaped/);
  }
  for (const proto of [Object.prototype, Array.prototype, Function.prototype]) {
    expect(Object.getOwnPropertyNames(proto)).not.toContain("brokerPolluted");
    expect(Object.getOwnPropertyNames(proto)).not.toContain("0");
  }
  expect(Object.getOwnPropertyDescriptor(Object.prototype, "ok")).toBeUndefined();
  expect("brokerEscaped" in globalThis).toBe(false);
  expect(JSON.stringify).toBe(stringify);
  expect([1, 2].push(3)).toBe(3);
}

beforeAll(async () => {
  rmSync(LOAD_TIME_CANARY, { force: true });
  process.env.BROKER_PROBE_SECRET = envSecret;
  db = await createTestDatabase();
  system = await startTestSystem(
    ["ttn-webhook"],
    testConfig(db, amqpConfig, {
      TTN_WEBHOOK_SECRET: SECRET,
      TTN_DECODERS_DIR: hostileDir,
      TTN_DECODE_LOCALLY: "all",
      TTN_DECODER_TIMEOUT_MS: String(TIMEOUT_MS),
      TTN_DECODER_MEMORY_MB: String(MEMORY_MB),
      TTN_DECODER_WORKERS: "1",
    }),
  );
  base = `http://127.0.0.1:${system.components[0]!.port!()}`;
  ({ conn, ch } = await openTestChannel());
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "ready");
});

afterAll(async () => {
  delete process.env.BROKER_PROBE_SECRET;
  await system?.stop();
  await conn?.close();
  await cleanupAmqp(amqpConfig, [mapperQueue, deadLetterQueueName(mapperQueue), deadQueue]);
  await db?.drop();
  rmSync(canaries, { recursive: true, force: true });
});

describe("hostile TTN decoders, through the webhook", () => {
  it("has an expectation for every probe file, and a probe for every expectation", () => {
    const files = readdirSync(join(hostileDir, "uplink")).map((f) => f.replace(/\.js$/, ""));
    expect(files.sort()).toEqual(Object.keys(PROBES).sort());
  });

  it.each(Object.entries(PROBES).map(([name, expected], i) => ({ name, expected, i })))(
    "contains $name",
    async ({ name, expected, i }) => {
      const eui = `00000000000d${i.toString(16).padStart(4, "0")}`;
      const canary = join(canaries, name);
      // The attack: 204 whatever the decoder does (the raw uplink is kept).
      expect(await post(uplink(name, eui, 1, 66, Buffer.from(canary)))).toBe(204);
      // Then an ordinary uplink of the same application.
      const bytes = Buffer.from(netvox.uplink_message.frm_payload as string, "base64");
      expect(await post(uplink(name, eui, 2, 6, bytes))).toBe(204);
      // 204 comes after decoding: whatever the decoder could do has been done.
      hostUntouched([]);

      const published = await take(mapperQueue, "dead" in expected ? 1 : 2);
      const dead = "dead" in expected ? await take(deadQueue, 1) : [];
      const messages = published.map((m) => JSON.parse(m.content.toString()) as Published);

      // The good uplink after the attack is decoded by the same decoder.
      expect(messages.at(-1)).toMatchObject({
        timeseries: [{ name: "fine", value: bytes.length }],
        decoder: { name },
      });
      if ("dead" in expected) {
        expect(messages).toHaveLength(1);
        expect(dead).toHaveLength(1);
        const headers = dead[0]!.properties.headers ?? {};
        expect(headers["x-broker-reason"]).toBe(expected.dead);
        expect(String(headers["x-broker-error"])).toMatch(expected.error);
      } else {
        expect(messages).toHaveLength(2);
        const attack = messages[0]!;
        expect(attack.decoder?.name).toBe(name);
        expect(Object.fromEntries(attack.timeseries.map((t) => [t.name, t.value]))).toEqual(
          expected.data,
        );
        expected.warnings?.(attack.decoder?.warnings ?? []);
      }
      expect(await ch.checkQueue(deadQueue)).toMatchObject({ messageCount: 0 });

      hostUntouched([...published, ...dead]);
    },
  );

  it("leaves the webhook healthy", async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});
