import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { QUEUE_NAMES } from "../../src/bus/topology.js";
import { openTestChannel, queueCount, waitFor } from "../helpers/bus.js";
import { startApi, type ApiHarness } from "../helpers/api.js";

let h: ApiHarness;
let queue: string;
let dead: string;
const cids = [randomUUID(), randomUUID(), randomUUID()];

beforeAll(async () => {
  h = await startApi();
  const amqp = h.system.deps.config.amqp;
  queue = amqp.queuePrefix + QUEUE_NAMES.mapper;
  dead = `${queue}.dead`;
  // Every process declares the mapper's queue and its dead-letter queue once connected.
  await waitFor(async () => (await queueCount(dead).catch(() => -1)) === 0, 15_000, "topology");
  const { conn, ch } = await openTestChannel();
  const confirm = await conn.createConfirmChannel();
  for (const [i, cid] of cids.entries()) {
    confirm.publish(amqp.deadLetterExchange, queue, Buffer.from(JSON.stringify({ i })), {
      persistent: true,
      correlationId: cid,
      messageId: `m${i}`,
      timestamp: Math.floor(Date.now() / 1000),
      headers: {
        "x-broker-reason": i === 2 ? "future_timestamp" : "unknown_device",
        "x-broker-error": "test",
        "x-broker-queue": queue,
        "x-broker-component": "mapper",
      },
    });
  }
  await confirm.waitForConfirms();
  await ch.close();
  await conn.close();
});

afterAll(async () => {
  await h?.close();
});

describe("/broker/api/dlq", () => {
  it("needs a token to look, and an admin to replay or purge", async () => {
    expect((await h.call("GET", "/dlq")).status).toBe(401);
    expect((await h.call("GET", `/dlq/${dead}`)).status).toBe(401);
    const replay = { cids: [cids[0]] };
    expect((await h.call("POST", `/dlq/${dead}/replay`, { body: replay })).status).toBe(401);
    const asReader = await h.call("POST", `/dlq/${dead}/replay`, {
      token: h.readerToken,
      body: replay,
    });
    expect(asReader.status).toBe(403);
    const purge = await h.call("POST", `/dlq/${dead}/purge`, {
      token: h.readerToken,
      body: { reason: "unknown_device" },
    });
    expect(purge.status).toBe(403);
    expect(await queueCount(dead)).toBe(3);
  });

  it("lists, shows, replays and purges", async () => {
    const list = await h.call("GET", "/dlq", { token: h.readerToken });
    expect(list.status).toBe(200);
    expect(await list.json()).toMatchObject([
      { queue: dead, messages: 3, reasons: { unknown_device: 2, future_timestamp: 1 } },
    ]);
    const show = await h.call("GET", `/dlq/${dead}?limit=1&reason=unknown_device`, {
      token: h.readerToken,
    });
    expect(show.status).toBe(200);
    expect(await show.json()).toMatchObject({
      matched: 2,
      letters: [{ position: 1, correlationId: cids[0], reason: "unknown_device" }],
    });
    expect((await h.call("GET", "/dlq/nope.dead", { token: h.readerToken })).status).toBe(404);
    expect((await h.call("GET", "/dlq/nope", { token: h.readerToken })).status).toBe(404);

    const invalid = await h.call("POST", `/dlq/${dead}/replay`, { token: h.adminToken, body: {} });
    expect(invalid.status).toBe(422);
    const replay = await h.call("POST", `/dlq/${dead}/replay`, {
      token: h.adminToken,
      body: { cids: [cids[1]] },
    });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ matched: 1, replayed: 1, complete: true });
    expect(await queueCount(queue)).toBe(1);

    const purge = await h.call("POST", `/dlq/${dead}/purge`, {
      token: h.adminToken,
      body: { reason: "future_timestamp" },
    });
    expect(purge.status).toBe(200);
    expect(await purge.json()).toMatchObject({ purged: 1 });
    expect(await queueCount(dead)).toBe(1);
  });

  it("documents the routes in the OpenAPI document", async () => {
    const doc = (await (await fetch(`${h.base}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/dlq", "/dlq/{queue}", "/dlq/{queue}/replay", "/dlq/{queue}/purge"]),
    );
  });
});
