import { Agent, request, type IncomingHttpHeaders } from "node:http";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { KEEP_ALIVE_TIMEOUT_MS } from "../../src/runtime/http.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";
import { netvoxUplink, ttnWebhookQueues } from "../helpers/ttn.js";

/** TTN_WEBHOOK_MAX_WAITING for this file: small, so a few requests fill it. */
const MAX_WAITING = 3;
/** Requests sent while the pipeline is held: more than the cap. */
const SENT = 8;

const amqpConfig = isolatedAmqpConfig();
let db: TestDatabase;
let system: RunningSystem;
let port: number;
// Keep-alive, as The Things Stack sends: a shed answer must leave the connection usable.
const agent = new Agent({ keepAlive: true });

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function post(body: unknown, path = "/ttn/webhook/up"): Promise<Answer> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      },
      (res) => {
        let received = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (received += chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: received }),
        );
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

async function shedCount(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = /^broker_messages_shed_total\{component="ttn-webhook"\} (\d+)$/m.exec(text);
  return Number(line?.[1] ?? 0);
}

beforeAll(async () => {
  db = await createTestDatabase();
  system = await startTestSystem(
    ["ttn-webhook"],
    testConfig(db, amqpConfig, { TTN_WEBHOOK_MAX_WAITING: String(MAX_WAITING) }),
  );
  port = system.components[0]!.port!()!;
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
    15_000,
    "ready",
  );
});

afterAll(async () => {
  agent.destroy();
  await system?.stop();
  await cleanupAmqp(amqpConfig, ttnWebhookQueues(amqpConfig));
  await db?.drop();
});

describe("TTN webhook under overload (TTN_WEBHOOK_MAX_WAITING)", () => {
  it("answers the requests beyond the cap 503 at once, unstored, and the admitted ones 204 once the pipeline moves", async () => {
    // Hold the pipeline: its first step, the raw insert, waits for this lock, so every admitted
    // request stays waiting (queued in the batcher or in a running batch) until the commit.
    const locker = await db.handle.pool.connect();
    let locked = true;
    try {
      await locker.query("begin");
      await locker.query("lock table raw_messages in exclusive mode");

      const answers = new Map<number, Answer>();
      const all = Array.from({ length: SENT }, (_, i) => {
        const fCnt = 100 + i;
        const body = netvoxUplink(
          `00${String(fCnt).padStart(14, "0")}`,
          fCnt,
          `2024-05-01T00:00:${String(i).padStart(2, "0")}Z`,
        );
        return post(body).then((a) => {
          answers.set(fCnt, a);
          return a;
        });
      });

      // The excess is answered while the lock is still held: nothing of theirs waited.
      await waitFor(() => answers.size >= SENT - MAX_WAITING, 15_000, "the shed answers");
      const shed = [...answers.values()];
      expect(shed).toHaveLength(SENT - MAX_WAITING);
      for (const a of shed) {
        expect(a.status).toBe(503);
        expect(a.headers["retry-after"]).toBe("5");
        expect(JSON.parse(a.body)).toMatchObject({
          error: "overloaded",
          message: expect.any(String) as unknown,
        });
        // The connection stays open for the sender's retry.
        expect(a.headers.connection).toBe("keep-alive");
      }
      expect(await shedCount()).toBe(SENT - MAX_WAITING);
      const [{ n }] = (await locker.query("select count(*)::int as n from raw_messages")).rows as [
        { n: number },
      ];
      expect(n).toBe(0);

      await locker.query("commit");
      locked = false;
      await Promise.all(all);
      const admitted = [...answers].filter(([, a]) => a.status !== 503);
      expect(admitted).toHaveLength(MAX_WAITING);
      expect(admitted.map(([, a]) => a.status)).toEqual(
        Array.from({ length: MAX_WAITING }, () => 204),
      );

      // The raw store holds exactly the uplinks answered 204.
      const stored = (
        await db.handle.pool.query(
          "select (json_msg->'uplink_message'->>'f_cnt')::int as f_cnt from raw_messages order by 1",
        )
      ).rows as { f_cnt: number }[];
      expect(stored.map((r) => r.f_cnt)).toEqual(
        admitted.map(([fCnt]) => fCnt).sort((x, y) => x - y),
      );

      // Their places are free again: the next request is admitted.
      const next = await post(netvoxUplink("0000000000009999", 9_999, "2024-05-01T00:01:00Z"));
      expect(next.status).toBe(204);
      expect(await shedCount()).toBe(SENT - MAX_WAITING);
    } finally {
      if (locked) {
        await locker.query("rollback").catch(() => undefined);
      }
      locker.release();
    }
  });

  it("announces its keep-alive timeout, longer than Go's 90 s idle connections", async () => {
    const a = await post({ not: "ttn" }, "/ttn/webhook/other");
    expect(a.status).toBe(400);
    expect(a.headers["keep-alive"]).toBe(`timeout=${KEEP_ALIVE_TIMEOUT_MS / 1000}`);
    expect(KEEP_ALIVE_TIMEOUT_MS).toBeGreaterThan(90_000);
  });
});
