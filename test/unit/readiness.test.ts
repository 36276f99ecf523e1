import { describe, expect, it } from "vitest";

import { Readiness } from "../../src/runtime/readiness.js";

/** A Readiness whose database ping is counted and whose clock the test moves. */
function probe(answer: () => boolean = () => true) {
  let clock = 0;
  const pings = { count: 0 };
  let ready = true;
  const readiness = new Readiness({
    pingDatabase: async () => {
      pings.count++;
      return answer();
    },
    amqpConnected: () => true,
    components: [{ name: "c", isReady: () => ready }],
    now: () => clock,
  });
  return {
    readiness,
    pings,
    advance: (ms: number) => (clock += ms),
    setReady: (r: boolean) => (ready = r),
  };
}

describe("readiness", () => {
  it("asks PostgreSQL once for any number of checks within a second, concurrent or not", async () => {
    const p = probe();
    await Promise.all(Array.from({ length: 50 }, () => p.readiness.check()));
    for (let i = 0; i < 50; i++) {
      p.advance(19);
      expect((await p.readiness.check()).ready).toBe(true);
    }
    expect(p.pings.count).toBe(1);
    p.advance(50);
    await p.readiness.check();
    expect(p.pings.count).toBe(2);
  });

  it("keeps a failed answer for the same second, then asks again", async () => {
    let up = false;
    const p = probe(() => up);
    expect(await p.readiness.check()).toMatchObject({ ready: false, postgres: false });
    up = true;
    expect((await p.readiness.check()).postgres).toBe(false);
    p.advance(1_000);
    expect(await p.readiness.check()).toMatchObject({ ready: true, postgres: true });
    expect(p.pings.count).toBe(2);
  });

  it("reads the components fresh on every check", async () => {
    const p = probe();
    expect((await p.readiness.check()).ready).toBe(true);
    p.setReady(false);
    expect(await p.readiness.check()).toMatchObject({ ready: false, components: { c: false } });
    expect(p.pings.count).toBe(1);
  });

  it("counts a ping that throws as PostgreSQL not answering", async () => {
    const readiness = new Readiness({
      pingDatabase: () => Promise.reject(new Error("boom")),
      amqpConnected: () => true,
      components: [],
    });
    expect((await readiness.check()).postgres).toBe(false);
  });

  it("does not require RabbitMQ when every component works without it (the webhook's outbox)", async () => {
    const check = async (
      components: { name: string; acceptsWithoutBroker?: boolean }[],
      postgres = true,
    ) =>
      (
        await new Readiness({
          pingDatabase: async () => postgres,
          amqpConnected: () => false,
          components,
        }).check()
      ).ready;
    expect(await check([{ name: "ttn-webhook", acceptsWithoutBroker: true }])).toBe(true);
    expect(await check([{ name: "ttn-webhook", acceptsWithoutBroker: true }], false)).toBe(false);
    expect(
      await check([{ name: "ttn-webhook", acceptsWithoutBroker: true }, { name: "mapper" }]),
    ).toBe(false);
    expect(await check([])).toBe(false);
  });
});
