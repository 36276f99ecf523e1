import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import {
  knownDeadLetterQueues,
  resolveDeadLetterQueue,
  SOURCE_DEAD_LETTER_QUEUES,
} from "../../src/dlq/catalogue.js";
import { describeLetter, excerpt, replayHeaders } from "../../src/dlq/dead-letter.js";
import { formatProgress, ProgressReporter } from "../../src/dlq/progress.js";
import { selectionFrom, selects } from "../../src/dlq/selection.js";

const cid = "5f0c6f8e-5d3c-4d0e-9f43-0c8a4e1b2d11";

describe("describeLetter", () => {
  it("reads our consumer's dead letter", () => {
    const letter = describeLetter({
      position: 3,
      body: Buffer.from(JSON.stringify({ broker_correlation_id: cid, p_uid: 1 })),
      properties: {
        correlationId: cid,
        messageId: "key",
        timestamp: 1_700_000_000,
        headers: {
          "x-broker-reason": "unknown_device",
          "x-broker-error": "no device 1",
          "x-broker-queue": "lm_physical_timeseries",
          "x-broker-component": "mapper",
          "x-delivery-count": 0,
        },
      },
    });
    expect(letter).toMatchObject({
      position: 3,
      reason: "unknown_device",
      error: "no device 1",
      correlationId: cid,
      messageId: "key",
      deadLetteredAt: "2023-11-14T22:13:20.000Z",
      origin: { kind: "queue", queue: "lm_physical_timeseries" },
      component: "mapper",
      byRabbitmq: false,
    });
  });

  it("reads RabbitMQ's delivery-limit dead letter from x-death, and the cid from the body", () => {
    const letter = describeLetter({
      position: 1,
      body: Buffer.from(JSON.stringify({ broker_correlation_id: cid })),
      properties: {
        timestamp: 1,
        headers: {
          "x-death": [
            {
              count: 1,
              reason: "delivery_limit",
              queue: "databolt_logical_msg_queue",
              time: { "!": "timestamp", value: 1_700_000_000 },
            },
          ],
          "x-first-death-reason": "delivery_limit",
        },
      },
    });
    expect(letter).toMatchObject({
      reason: "delivery_limit",
      correlationId: cid,
      deadLetteredAt: "2023-11-14T22:13:20.000Z",
      origin: { kind: "queue", queue: "databolt_logical_msg_queue" },
      byRabbitmq: true,
    });
    expect(letter.error).toMatch(/delivery limit/);
  });

  it("reads a source's raw dead letter", () => {
    const letter = describeLetter({
      position: 1,
      body: Buffer.from("not json"),
      properties: {
        correlationId: cid,
        headers: {
          "x-broker-reason": "invalid_json",
          "x-broker-error": "bad",
          "x-broker-source": Buffer.from("wombat"),
        },
      },
    });
    expect(letter).toMatchObject({
      reason: "invalid_json",
      origin: { kind: "source", source: "wombat" },
      excerpt: "not json",
      deadLetteredAt: undefined,
    });
  });

  it("says unknown when nothing tells", () => {
    const letter = describeLetter({
      position: 1,
      body: Buffer.alloc(0),
      properties: { headers: {} },
    });
    expect(letter).toMatchObject({ reason: "unknown", origin: { kind: "unknown" } });
  });
});

describe("replayHeaders", () => {
  it("strips every trace of dead-lettering and deliveries, keeps the rest", () => {
    expect(
      replayHeaders({
        "x-death": [],
        "x-first-death-reason": "delivery_limit",
        "x-first-death-queue": "q",
        "x-last-death-reason": "delivery_limit",
        "x-delivery-count": 20,
        "x-broker-reason": "r",
        "x-broker-error": "e",
        "x-broker-queue": "q",
        "x-broker-component": "c",
        "x-broker-source": "s",
        "x-custom": 1,
        traceparent: "t",
      }),
    ).toEqual({ "x-custom": 1, traceparent: "t" });
  });
});

describe("excerpt", () => {
  it("cuts long bodies and escapes control characters", () => {
    expect(excerpt(Buffer.from("a\nb\u0001c"))).toBe("a\\nb\\u0001c");
    expect(excerpt(Buffer.from("x".repeat(400)), 10)).toBe(`${"x".repeat(10)}…`);
    expect(excerpt(Buffer.from("é".repeat(5)), 5)).toBe("ééééé");
  });
});

describe("selection", () => {
  const letter = describeLetter({
    position: 1,
    body: Buffer.alloc(0),
    properties: { correlationId: cid, headers: { "x-broker-reason": "r" } },
  });

  it("takes exactly one of --cid, --reason, --all", () => {
    expect(selectionFrom({})).toMatch(/exactly one/);
    expect(selectionFrom({ all: true, reason: "r" })).toMatch(/exactly one/);
    expect(selectionFrom({ cids: [] })).toMatch(/exactly one/);
    expect(selectionFrom({ cids: ["a", "a"] })).toEqual({ kind: "cids", cids: ["a"] });
  });

  it("matches by cid, reason or all", () => {
    expect(selects({ kind: "all" }, letter)).toBe(true);
    expect(selects({ kind: "reason", reason: "r" }, letter)).toBe(true);
    expect(selects({ kind: "reason", reason: "x" }, letter)).toBe(false);
    expect(selects({ kind: "cids", cids: [cid] }, letter)).toBe(true);
    expect(selects({ kind: "cids", cids: ["other"] }, letter)).toBe(false);
  });
});

describe("catalogue", () => {
  it("lists every source's dead-letter queue as the sources declare it", () => {
    const root = join(import.meta.dirname, "../../src/sources");
    const declared = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) {
          walk(path);
        } else if (entry.name.endsWith(".ts")) {
          const text = readFileSync(path, "utf8");
          for (const m of text.matchAll(/(?:deadLetterQueue:|DEAD_LETTER_QUEUE =) "([^"]+)"/g)) {
            declared.add(m[1]!);
          }
        }
      }
    };
    walk(root);
    expect(declared.size).toBeGreaterThan(0);
    expect([...declared].sort()).toEqual(Object.values(SOURCE_DEAD_LETTER_QUEUES).sort());
  });

  it("resolves a queue by its name, unprefixed name, origin or source", () => {
    const known = knownDeadLetterQueues("p_");
    expect(resolveDeadLetterQueue("p_lm_physical_timeseries.dead", "p_", known)?.name).toBe(
      "p_lm_physical_timeseries.dead",
    );
    expect(resolveDeadLetterQueue("lm_physical_timeseries", "p_", known)?.name).toBe(
      "p_lm_physical_timeseries.dead",
    );
    expect(resolveDeadLetterQueue("wombat", "p_", known)?.name).toBe("p_wombat_ingest.dead");
    expect(resolveDeadLetterQueue("new_writer_queue.dead", "p_", known)).toEqual({
      name: "p_new_writer_queue.dead",
      feed: { kind: "queue", queue: "p_new_writer_queue" },
    });
    expect(resolveDeadLetterQueue("nope", "p_", known)).toBeUndefined();
    expect(resolveDeadLetterQueue(".dead", "p_", known)).toBeUndefined();
  });
});

describe("ProgressReporter", () => {
  it("stays quiet for short operations, then reports at most once per interval and at the end", () => {
    let now = 0;
    const lines: string[] = [];
    const p = new ProgressReporter({ write: (l) => lines.push(l), now: () => now });
    p.update("q", 0, 10);
    now = 500;
    p.update("q", 10, 10);
    expect(lines).toEqual([]);

    now = 0;
    p.update("r", 0, 1000);
    now = 1500;
    p.update("r", 300, 1000);
    now = 1700;
    p.update("r", 400, 1000);
    now = 2600;
    p.update("r", 900, 1000);
    now = 2700;
    p.update("r", 1000, 1000);
    expect(lines).toEqual([
      "r: 300/1000 (30%), 200 msg/s, about 4 s left",
      "r: 900/1000 (90%), 346 msg/s, about 1 s left",
      "r: 1000/1000 (100%), 370 msg/s",
    ]);
    expect(formatProgress("q", 0, 0, 0)).toBe("q: 0/0 (100%), 0 msg/s");
  });
});
