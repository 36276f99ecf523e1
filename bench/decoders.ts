/**
 * Decoder throughput for `npm run bench`: a typical 20-line TTN decoder run in one QuickJS
 * sandbox on the calling thread, through the DecoderPool's worker threads (as the webhook uses
 * it), and, for reference only, in a node:vm context (the former, escapable sandbox).
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import vm from "node:vm";

import { createLogger } from "../src/core/logger.js";
import { DecoderPool } from "../src/sources/ttn/decoders/decoder-pool.js";
import { QuickJSSandbox } from "../src/sources/ttn/decoders/quickjs-sandbox.js";
import { figures, type Figures } from "./stats.js";

/** The application (and decoder file name) of the bench's uplinks. */
export const BENCH_APPLICATION = "bench";

/** The Netvox R718A report the bench's uplinks carry, as TTN's base64 frm_payload, on fPort 6. */
export const BENCH_FRM_PAYLOAD = Buffer.from([1, 11, 1, 36, 6, 110, 21, 142, 0, 0, 0]).toString(
  "base64",
);

/**
 * A typical vendor decoder (bounds checks, bit fields, scaling, a warning; 20 lines): the
 * tests' Netvox R718A decoder.
 */
const DECODER = readFileSync(
  new URL("../test/fixtures/ttn-decoders/uplink/temphumid-netvox-r718a.js", import.meta.url),
  "utf8",
);

const INPUT = {
  bytes: [...Buffer.from(BENCH_FRM_PAYLOAD, "base64")],
  fPort: 6,
  recvTime: "2024-01-01T00:00:00Z",
};

/** Writes the bench decoder as `<dir>/uplink/bench.js` (a TTN_DECODERS_DIR). */
export async function writeBenchDecoder(dir: string): Promise<void> {
  await mkdir(join(dir, "uplink"), { recursive: true });
  await writeFile(join(dir, "uplink", `${BENCH_APPLICATION}.js`), DECODER);
}

/** Runs `call` `count` times one after another; latency per call. */
function serial(name: string, count: number, call: () => void): Figures {
  for (let i = 0; i < Math.min(1000, count); i++) {
    call();
  }
  const latencies: number[] = [];
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    call();
    latencies.push(performance.now() - t0);
  }
  return figures(name, latencies, (performance.now() - started) / 1000);
}

async function sandboxRun(count: number): Promise<Figures> {
  const sandbox = await QuickJSSandbox.load(DECODER, "bench.js", { memoryMb: 64, timeoutMs: 1000 });
  if (!(sandbox instanceof QuickJSSandbox)) {
    throw new Error(`bench decoder: ${sandbox.error}`);
  }
  const json = JSON.stringify(INPUT);
  return serial("Decoder, QuickJS sandbox, one thread", count, () => {
    if (!sandbox.run(json).ok) {
      throw new Error("bench decoder failed");
    }
  });
}

/** The former sandbox, for comparison only: a node:vm context run with a timeout. */
function vmRun(count: number): Figures {
  const context = vm.createContext({}, { codeGeneration: { strings: false, wasm: false } });
  new vm.Script(DECODER).runInContext(context);
  new vm.Script(
    "function __run(j) { var r = JSON.parse(j); return JSON.stringify(decodeUplink({ bytes: r.bytes, fPort: r.fPort, recvTime: new Date(r.recvTime) })); }",
  ).runInContext(context);
  const invoke = new vm.Script("__run(__input)");
  const json = JSON.stringify(INPUT);
  return serial("Decoder, node:vm context (former sandbox), one thread", count, () => {
    (context as Record<string, unknown>).__input = json;
    invoke.runInContext(context, { timeout: 1000 });
  });
}

/** The pool as the webhook uses it: `workers` threads, 64 decodings in flight. */
async function poolRun(dir: string, workers: number, count: number): Promise<Figures> {
  const pool = new DecoderPool({
    dir,
    timeoutMs: 1000,
    memoryMb: 64,
    workers,
    logger: createLogger({ level: "warn" }),
  });
  try {
    const once = async (): Promise<void> => {
      const result = await pool.decode(BENCH_APPLICATION, INPUT);
      if (!result.ok) {
        throw new Error(`bench decoder: ${result.error}`);
      }
    };
    // Start every worker and load the decoder in each.
    await Promise.all(Array.from({ length: workers * 4 }, once));
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    const client = async (): Promise<void> => {
      while (next++ < count) {
        const t0 = performance.now();
        await once();
        latencies.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: 64 }, client));
    const name = `Decoder pool, ${workers} worker thread${workers === 1 ? "" : "s"}`;
    return figures(name, latencies, (performance.now() - started) / 1000);
  } finally {
    await pool.close();
  }
}

/** Decodes per second of the bench decoder (in `dir`, see writeBenchDecoder), `count` each run. */
export async function decoderThroughput(dir: string, count: number): Promise<Figures[]> {
  return [
    await sandboxRun(count),
    await poolRun(dir, 1, count),
    await poolRun(dir, 2, count),
    vmRun(count),
  ];
}
