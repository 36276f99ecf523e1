import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, describe, expect, it } from "vitest";

import { createLogger } from "../../src/core/logger.js";
import { DecoderPool, type DecodeResult } from "../../src/sources/ttn/decoders/decoder-pool.js";
import { QuickJSSandbox } from "../../src/sources/ttn/decoders/quickjs-sandbox.js";

const fixtures = fileURLToPath(new URL("../fixtures/ttn-decoders/", import.meta.url));
const logger = createLogger({ level: "silent" });
const input = {
  bytes: [1, 11, 1, 36, 6, 110, 21, 142, 0, 0, 0],
  fPort: 6,
  recvTime: "2022-12-16T01:09:57.515920941Z",
};

// One worker: every test below also proves the pool survives whatever the previous one did.
const pool = new DecoderPool({ dir: fixtures, timeoutMs: 200, memoryMb: 32, workers: 1, logger });
const temp = mkdtempSync(join(tmpdir(), "ttn-decoders-"));
mkdirSync(join(temp, "uplink"));
const tempPool = new DecoderPool({ dir: temp, timeoutMs: 200, memoryMb: 32, workers: 2, logger });

afterAll(async () => {
  await pool.close();
  await tempPool.close();
  rmSync(temp, { recursive: true, force: true });
});

function data(result: DecodeResult): Record<string, unknown> {
  if (!result.ok) {
    throw new Error(`expected a decoding, got ${result.reason}: ${result.error}`);
  }
  return (JSON.parse(result.output) as { data: Record<string, unknown> }).data;
}

describe("TTN decoder sandbox", () => {
  it("runs a good decoder on the Netvox uplink's bytes (the values TTN decoded)", async () => {
    const result = await pool.decode("temphumid-netvox-r718a", input);
    expect(data(result)).toEqual({ battery: 3.6, humidity: 55.18, temperature: 16.46 });
  });

  it("passes TTN's input: bytes as numbers, fPort, recvTime as a Date", async () => {
    const result = await pool.decode("echo", { ...input, fPort: 0 });
    expect(data(result)).toEqual({
      bytes: input.bytes,
      fPort: 0,
      recvTime: "2022-12-16T01:09:57.515Z",
      isDate: true,
    });
  });

  it.each([
    ["throws", "decoder_failed", /cannot decode 11 bytes/],
    ["infinite-loop", "decoder_timeout", /200 ms/],
    ["uses-require", "decoder_failed", /require.? is not defined/],
    ["uses-process", "decoder_failed", /process.? is not defined/],
    ["uses-fetch", "decoder_failed", /fetch.? is not defined/],
    ["returns-promise", "decoder_failed", /must return an object/],
    ["no-function", "decoder_invalid", /no decodeUplink/],
    ["hostile-throw", "decoder_timeout", /200 ms/],
    ["does-not-exist", "decoder_not_found", /no decoder file/],
    ["../escape", "decoder_not_found", /unusable decoder name/],
  ])("fails %s with %s", async (name, reason, error) => {
    const result = await pool.decode(name, input);
    expect(result).toMatchObject({ ok: false, reason });
    expect(!result.ok && result.error).toMatch(error);
  });

  it("stops a memory hog at its memory limit and goes on", async () => {
    const hog = new DecoderPool({
      dir: fixtures,
      timeoutMs: 10_000,
      memoryMb: 16,
      workers: 1,
      logger,
    });
    try {
      const result = await hog.decode("memory-hog", input);
      expect(result).toMatchObject({ ok: false, reason: "decoder_memory" });
      expect(data(await hog.decode("temphumid-netvox-r718a", input)).battery).toBe(3.6);
    } finally {
      await hog.close();
    }
  });

  it("gives a decoder no way to reach the process, modules, network or shared memory", async () => {
    const found = data(await pool.decode("probes-sandbox", input));
    expect(found).toEqual({
      require: "undefined",
      process: "undefined",
      fetch: "undefined",
      setTimeout: "undefined",
      globalProcess: "undefined",
      functionConstructor: "blocked",
      inputConstructor: "blocked",
      bytesConstructor: "blocked",
      eval: "blocked",
      sharedMemory: "undefined/undefined",
    });
  });

  it("keeps a decoder's state between calls, runs its promise jobs before the call ends, and starts it afresh after a failure", async () => {
    const runs = [];
    for (const fPort of [1, 1, 13, 1]) {
      const result = await pool.decode("counter", { ...input, fPort });
      runs.push(result.ok ? data(result) : result.error);
    }
    expect(runs).toEqual([
      { calls: 1, jobs: 0 },
      { calls: 2, jobs: 1 },
      "Error: unlucky",
      { calls: 1, jobs: 0 },
    ]);
  });

  it("accepts the largest memory setting (TTN_DECODER_MEMORY_MB=2000) within the interpreter's 2 GiB", async () => {
    const sandbox = await QuickJSSandbox.load(
      "function decodeUplink(input) { return { data: { n: input.bytes.length } }; }",
      "largest.js",
      { memoryMb: 2000, timeoutMs: 1000 },
    );
    expect(sandbox).toBeInstanceOf(QuickJSSandbox);
    const outcome = (sandbox as QuickJSSandbox).run(JSON.stringify(input));
    expect(outcome).toEqual({ ok: true, output: '{"data":{"n":11}}', dropped: [] });
  });

  it("bounds the answer's size", async () => {
    const file = join(temp, "uplink", "big.js");
    writeFileSync(file, 'function decodeUplink() { return { data: { s: "x".repeat(300000) } }; }');
    const result = await tempPool.decode("big", input);
    expect(result).toMatchObject({ ok: false, reason: "decoder_failed" });
    expect(!result.ok && result.error).toMatch(/more than the limit of 262144/);
  });

  it("refuses import() of Node modules", async () => {
    await pool.decode("uses-import", input);
    expect(data(await pool.decode("uses-import", input))).toEqual({ outcome: "refused" });
  });

  it("leaves out NaN and Infinity and says so", async () => {
    const result = await pool.decode("not-finite", input);
    expect(data(result)).toEqual({ good: 1 });
    expect(result.ok && result.dropped).toEqual(["bad", "worse"]);
  });

  it("keeps working after a timeout, alongside other decodings", async () => {
    const results = await Promise.all([
      pool.decode("infinite-loop", input),
      pool.decode("temphumid-netvox-r718a", input),
      pool.decode("throws", input),
    ]);
    expect(results.map((r) => (r.ok ? "ok" : r.reason))).toEqual([
      "decoder_timeout",
      "ok",
      "decoder_failed",
    ]);
  });

  it("gives the decodings queued behind a worker that had to be killed to a new worker", async () => {
    // Recursion that catches its own stack overflow is not interrupted in time: the watchdog
    // ends the worker while the two other decodings wait in it.
    writeFileSync(
      join(temp, "uplink", "stuck.js"),
      "function deeper() { try { return deeper() + 1; } catch (e) { return deeper(); } }\n" +
        "function decodeUplink() { return { data: { depth: deeper() } }; }",
    );
    writeFileSync(
      join(temp, "uplink", "fine.js"),
      "function decodeUplink(input) { return { data: { n: input.bytes.length } }; }",
    );
    const one = new DecoderPool({
      dir: temp,
      timeoutMs: 200,
      memoryMb: 32,
      workers: 1,
      logger,
      graceMs: 300,
    });
    try {
      const results = await Promise.all(
        ["stuck", "fine", "fine"].map((name) => one.decode(name, input)),
      );
      expect(results.map((r) => (r.ok ? data(r) : r.reason))).toEqual([
        "decoder_timeout",
        { n: 11 },
        { n: 11 },
      ]);
      expect(!results[0]!.ok && results[0]!.error).toMatch(/worker was replaced/);
    } finally {
      await one.close();
    }
  });

  it("reloads a decoder file when it changes, and reports one that does not compile", async () => {
    const file = join(temp, "uplink", "changing.js");
    writeFileSync(file, "function decodeUplink() { return { data: { version: 1 } }; }");
    expect(data(await tempPool.decode("changing", input))).toEqual({ version: 1 });
    writeFileSync(file, "function decodeUplink() { return { data: { version: 2 } }; }");
    const later = new Date(Date.now() + 5_000);
    utimesSync(file, later, later);
    // Both workers may have the old version cached; each must notice the change.
    const again = await Promise.all([
      tempPool.decode("changing", input),
      tempPool.decode("changing", input),
    ]);
    expect(again.map(data)).toEqual([{ version: 2 }, { version: 2 }]);
    writeFileSync(join(temp, "uplink", "broken.js"), "function decodeUplink( { return {");
    const broken = await tempPool.decode("broken", input);
    expect(broken).toMatchObject({ ok: false, reason: "decoder_invalid" });
    expect(!broken.ok && broken.error).toMatch(/does not compile/);
  });
});
