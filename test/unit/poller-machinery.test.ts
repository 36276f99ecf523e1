import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { PermanentError, TransientError } from "../../src/core/errors.js";
import { createLogger } from "../../src/core/logger.js";
import { retryAfterMs } from "../../src/core/retry-after.js";
import { VendorHttp, VendorUnavailableError } from "../../src/sources/pollers/http.js";
import { contentHash, pollCorrelationId } from "../../src/sources/pollers/ids.js";
import { PollLoop, type PollOutcome } from "../../src/sources/pollers/loop.js";
import { aggregateProgress, alreadyProcessed } from "../../src/sources/pollers/progress.js";
import { failed, parseVendorJson, rawBody } from "../../src/sources/pollers/prepared.js";
import { pollerSettings, requiredSecret } from "../../src/sources/pollers/settings.js";
import { pythonIsoformat, withOffset, zuluSeconds } from "../../src/sources/pollers/times.js";
import { VendorServer, type Answer } from "../fixtures/pollers/vendor-server.js";
import { Environment } from "../../src/core/environment.js";

const logger = createLogger({ level: "silent" });

describe("vendor times", () => {
  it("takes times without an offset as UTC and refuses non-dates", () => {
    expect(withOffset("2022-02-09T22:00:00.000")).toBe("2022-02-09T22:00:00.000Z");
    expect(withOffset("2022-02-09T22:00:00+10:00")).toBe("2022-02-09T22:00:00+10:00");
    expect(withOffset("2022-02-30T22:00:00")).toBeUndefined();
    expect(withOffset("soon")).toBeUndefined();
  });

  it("writes Python's isoformat", () => {
    expect(pythonIsoformat("2022-02-09T22:00:00.000Z")).toBe("2022-02-09T22:00:00+00:00");
    expect(pythonIsoformat("2022-02-09T22:00:00.5Z")).toBe("2022-02-09T22:00:00.500000+00:00");
    expect(pythonIsoformat("2022-02-09 22:00+1000")).toBe("2022-02-09T22:00:00+10:00");
    expect(pythonIsoformat("2022-02-09T22:00:00.123456789-03")).toBe(
      "2022-02-09T22:00:00.123456-03:00",
    );
    expect(zuluSeconds(Date.parse("2024-01-16T12:00:00.900Z"))).toBe("2024-01-16T12:00:00Z");
  });
});

describe("vendor bodies", () => {
  it("refuses truncated and hostile (deeply nested, NUL) bodies, keeping storable raw text", () => {
    const reasonOf = (text: string): string => {
      try {
        parseVendorJson(text);
        return "ok";
      } catch (err) {
        return (err as PermanentError).reason;
      }
    };
    expect(reasonOf('{"a": [1, 2')).toBe("invalid_json");
    const deep = "[".repeat(50_000) + "]".repeat(50_000);
    expect(reasonOf(deep)).toBe("too_deeply_nested");
    expect(failed(deep, new PermanentError("x", "y")).raw).toEqual({ text: deep });
    expect(rawBody('{"a":"\\u0000"}', { a: "\u0000" })).toEqual({ text: '{"a":"\\u0000"}' });
    expect(rawBody('{"a":1}', { a: 1 })).toEqual({ json: { a: 1 } });
  });
});

describe("content ids and progress", () => {
  it("hashes like Python's hashlib.blake2b and derives stable correlation ids", () => {
    // hashlib.blake2b(b"abc").hexdigest()
    expect(contentHash("abc")).toBe(
      "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
    );
    const a = pollCorrelationId("greenbrain", "1", "h");
    expect(pollCorrelationId("greenbrain", "1", "h")).toBe(a);
    expect(pollCorrelationId("greenbrain", "2", "h")).not.toBe(a);
  });

  it("counts content as processed by its hash, or by IoTa's last_seen when there is no hash", () => {
    expect(alreadyProcessed(undefined, "h", undefined)).toBe(false);
    expect(alreadyProcessed({ lastHash: "h", lastTs: null }, "h", undefined)).toBe(true);
    expect(
      alreadyProcessed(
        { lastHash: "g", lastTs: "2030-01-01T00:00:00Z" },
        "h",
        "2020-01-01T00:00:00Z",
      ),
    ).toBe(false);
    const seeded = { lastHash: null, lastTs: "2024-01-01T00:00:00+00:00" };
    expect(alreadyProcessed(seeded, "h", "2024-01-01T00:00:00Z")).toBe(true);
    expect(alreadyProcessed(seeded, "h", "2024-01-01T00:00:01Z")).toBe(false);
  });

  it("keeps one update per device: the last hash, the newest time", () => {
    expect(
      aggregateProgress([
        { deviceKey: "a", lastHash: "1", lastTs: "2024-01-02T00:00:00Z" },
        { deviceKey: "a", lastTs: "2024-01-01T00:00:00Z" },
        { deviceKey: "b", lastHash: "2" },
        { deviceKey: "a", lastHash: "3" },
      ]),
    ).toEqual([
      { deviceKey: "a", lastHash: "3", lastTs: "2024-01-02T00:00:00Z" },
      { deviceKey: "b", lastHash: "2" },
    ]);
  });
});

describe("poller settings", () => {
  it("reads a vendor's interval and URL with defaults, and names a missing secret", () => {
    const s = pollerSettings({ env: new Environment({ EAGLEIO_POLL_SECONDS: "0.5" }) }, "EAGLEIO", {
      pollSeconds: 300,
      apiUrl: "https://api.eagle.io/api/v1/",
    });
    expect(s).toMatchObject({
      intervalMs: 500,
      baseUrl: "https://api.eagle.io/api/v1",
      attempts: 4,
    });
    expect(() =>
      pollerSettings({ env: new Environment({ EAGLEIO_POLL_SECONDS: "soon" }) }, "EAGLEIO", {
        pollSeconds: 1,
        apiUrl: "http://x",
      }),
    ).toThrow(/EAGLEIO_POLL_SECONDS/);
    expect(() =>
      requiredSecret({ env: new Environment({}) }, "EAGLEIO_API_TOKEN", "eagleio", "the key"),
    ).toThrow(/EAGLEIO_API_TOKEN/);
  });
});

describe("vendor HTTP client against a local server", () => {
  let server: VendorServer;
  const script: Answer[] = [];

  beforeAll(async () => {
    server = await VendorServer.start(() => script.shift() ?? { body: { ok: true } });
  });
  afterAll(async () => {
    await server.close();
  });

  function client(
    overrides: Partial<ConstructorParameters<typeof VendorHttp>[0]> = {},
  ): VendorHttp {
    return new VendorHttp({
      baseUrl: server.url,
      // Long enough that a loaded two-core machine never times out an answered request (which
      // would add a retry the test does not expect); only the scripted hang runs into it.
      timeoutMs: 1500,
      attempts: 4,
      retryInitialMs: 5,
      retryMaxMs: 50,
      maxResponseBytes: 1000,
      logger,
      ...overrides,
    });
  }

  it("retries 500, 429 (honouring a short Retry-After) and a timeout, then returns the answer", async () => {
    script.push({ status: 500 }, { status: 429, headers: { "retry-after": "0" } }, { hang: true });
    let retries = 0;
    const res = await client({ onRetry: () => retries++ }).request(
      { path: "/x", query: { a: "b c" }, what: "x" },
      new AbortController().signal,
    );
    expect(res).toEqual({ status: 200, text: '{"ok":true}', oversized: false });
    expect(retries).toBe(3);
    expect(server.requests.at(-1)!.query.get("a")).toBe("b c");
  });

  it("returns other answers (401, 404) to the caller without retrying", async () => {
    script.push({ status: 401, body: "no" });
    const before = server.requests.length;
    const res = await client().request({ path: "/y", what: "y" }, new AbortController().signal);
    expect(res.status).toBe(401);
    expect(server.requests.length - before).toBe(1);
  });

  it("gives up after the last try, and at once when Retry-After is longer than it waits", async () => {
    script.push({ status: 503 }, { status: 503 });
    await expect(
      client({ attempts: 2 }).request({ path: "/z", what: "z" }, new AbortController().signal),
    ).rejects.toBeInstanceOf(VendorUnavailableError);
    script.push({ status: 429, headers: { "retry-after": "120" } });
    const err = (await client()
      .request({ path: "/z", what: "z" }, new AbortController().signal)
      .catch((e: unknown) => e)) as VendorUnavailableError;
    expect(err).toBeInstanceOf(VendorUnavailableError);
    expect(err.retryAfterMs).toBe(120_000);
    expect(retryAfterMs(new Date(Date.now() + 60_000).toUTCString())).toBeGreaterThan(50_000);
  });

  it("cuts an oversized body and says so", async () => {
    script.push({ body: "x".repeat(5000) });
    const res = await client().request({ path: "/big", what: "big" }, new AbortController().signal);
    expect(res.oversized).toBe(true);
    expect(res.text).toHaveLength(1000);
  });

  it("aborts a request in flight when stopped", async () => {
    script.push({ hang: true });
    const stop = new AbortController();
    const pending = client({ timeoutMs: 60_000 }).request(
      { path: "/slow", what: "slow" },
      stop.signal,
    );
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (server.to("/slow").length > 0) {
          resolve();
        } else {
          setTimeout(check, 5);
        }
      };
      check();
    });
    stop.abort();
    await expect(pending).rejects.toBeInstanceOf(TransientError);
  });
});

describe("poll loop", () => {
  it("polls at once, retries an incomplete or failed poll early, and stops a poll in flight", async () => {
    const results: string[] = [];
    let calls = 0;
    let stopped: () => void = () => undefined;
    const inFlight = new Promise<void>((resolve) => (stopped = resolve));
    const loop = new PollLoop({
      name: "test",
      intervalMs: 3_600_000,
      retryInitialMs: 1,
      retryMaxMs: 5,
      logger,
      onPoll: (r) => results.push(r),
      poll: async (signal): Promise<PollOutcome> => {
        calls++;
        if (calls === 1) {
          return { complete: false };
        }
        if (calls === 2) {
          throw new Error("bug");
        }
        // The third poll waits until stopped: an hour's interval never elapses in this test.
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
        stopped();
        return { complete: true };
      },
    });
    loop.start();
    while (calls < 3) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await loop.stop();
    await inFlight;
    expect(results).toEqual(["incomplete", "failed"]);
    expect(calls).toBe(3);
  });
});
