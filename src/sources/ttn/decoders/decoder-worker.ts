import { readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { parentPort, workerData } from "node:worker_threads";

import type {
  DecodeReply,
  DecodeRequest,
  DecoderFailureReason,
  WorkerData,
  WorkerReady,
} from "./protocol.js";
import { QuickJSSandbox } from "./quickjs-sandbox.js";

/**
 * A decoder worker thread (see decoder-pool.ts). Each decoder file runs in a QuickJS
 * interpreter of its own (quickjs-sandbox.ts), loaded once and again only when the file's mtime
 * or size changes, or after a call that failed (it threw, hit a limit, trapped). The thread
 * itself is the second wall: the pool terminates it when a call overruns its time limit
 * anyway, and its death costs only the uplink it was decoding.
 */

/**
 * Decoders kept loaded per thread, least recently used dropped first: each holds a WebAssembly
 * memory of up to the interpreter's base plus TTN_DECODER_MEMORY_MB.
 */
const LOADED_LIMIT = 32;

const { memoryMb } = workerData as WorkerData;

interface Loaded {
  readonly mtimeMs: number;
  readonly size: number;
  readonly sandbox?: QuickJSSandbox;
  readonly reason?: DecoderFailureReason;
  readonly error?: string;
}

const loaded = new Map<string, Loaded>();

/** Dropping a sandbox frees it (see quickjs-sandbox.ts). */
function forget(file: string): void {
  loaded.delete(file);
}

async function load(file: string, timeoutMs: number): Promise<Loaded> {
  let stat;
  try {
    stat = statSync(file);
  } catch {
    forget(file);
    return {
      mtimeMs: 0,
      size: 0,
      reason: "decoder_not_found",
      error: `no decoder file ${basename(file)}`,
    };
  }
  const cached = loaded.get(file);
  if (cached && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) {
    // Most recently used last, so the first entry is the one to drop.
    loaded.delete(file);
    loaded.set(file, cached);
    return cached;
  }
  forget(file);
  let entry: Loaded;
  try {
    const source = readFileSync(file, "utf8");
    const sandbox = await QuickJSSandbox.load(source, basename(file), { memoryMb, timeoutMs });
    entry =
      sandbox instanceof QuickJSSandbox
        ? { mtimeMs: stat.mtimeMs, size: stat.size, sandbox }
        : { mtimeMs: stat.mtimeMs, size: stat.size, reason: sandbox.reason, error: sandbox.error };
  } catch (err) {
    entry = {
      mtimeMs: stat.mtimeMs,
      size: stat.size,
      reason: "decoder_invalid",
      error: `${basename(file)} cannot be read: ${String(err)}`,
    };
  }
  // A file that cannot be used stays refused until it changes; a crash may not recur.
  if (entry.reason !== "decoder_crashed") {
    loaded.set(file, entry);
  }
  for (const old of loaded.keys()) {
    if (loaded.size <= LOADED_LIMIT) {
      break;
    }
    forget(old);
  }
  return entry;
}

async function decode(request: DecodeRequest): Promise<DecodeReply> {
  const { id, file } = request;
  const entry = await load(file, request.timeoutMs);
  if (entry.sandbox === undefined) {
    const reason = entry.reason ?? "decoder_invalid";
    return { id, ok: false, reason, error: entry.error ?? "the decoder file cannot be used" };
  }
  const outcome = entry.sandbox.run(JSON.stringify(request.input));
  if (outcome.ok) {
    return { id, ok: true, output: outcome.output, dropped: outcome.dropped };
  }
  // Stopped half-way, out of memory or thrown: whatever state the decoder was left in, the
  // next uplink gets it freshly loaded.
  forget(file);
  return { id, ok: false, reason: outcome.reason, error: outcome.error };
}

/**
 * Loads and runs a trivial decoder once, so that V8 has compiled the interpreter's WebAssembly
 * before the first uplink's time limit starts (the pool starts its watchdog at "ready").
 */
async function warmUp(): Promise<void> {
  const sandbox = await QuickJSSandbox.load(
    "function decodeUplink(input) { return { data: { n: input.bytes.length } }; }",
    "warm-up.js",
    { memoryMb, timeoutMs: 60_000 },
  );
  if (sandbox instanceof QuickJSSandbox) {
    sandbox.run(JSON.stringify({ bytes: [1], fPort: 1, recvTime: new Date().toISOString() }));
  }
}

/** Requests run one after another, in the order they came (loading a file is asynchronous). */
let previous: Promise<unknown> = Promise.resolve();

parentPort?.on("message", (request: DecodeRequest) => {
  previous = previous.then(() =>
    decode(request).then(
      (reply) => parentPort?.postMessage(reply),
      (err: unknown) =>
        parentPort?.postMessage({
          id: request.id,
          ok: false,
          reason: "decoder_crashed",
          error: String(err),
        } satisfies DecodeReply),
    ),
  );
});
void warmUp()
  .catch(() => undefined)
  .then(() => parentPort?.postMessage({ ready: true } satisfies WorkerReady));
