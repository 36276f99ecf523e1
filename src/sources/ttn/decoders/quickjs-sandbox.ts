import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import releaseSyncExport from "@jitl/quickjs-wasmfile-release-sync";
import {
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSSyncVariant,
  type QuickJSWASMModule,
} from "quickjs-emscripten-core";

import type { DecoderFailureReason } from "./protocol.js";
import { OUTPUT_LIMIT_CHARS, PRELUDE, RUNNER } from "./prelude.js";

/**
 * One decoder file in its own QuickJS interpreter, compiled to WebAssembly: its own WebAssembly
 * instance and linear memory, so nothing in it is an object of the host's realm and the only
 * ways out are the instance's imports (clock, time zone, memory growth, the interrupt check;
 * the host-function and module-loader hooks have nothing registered).
 * Strings go in and come out as copies; the host never holds a handle to a decoder's object.
 */

/**
 * Pages (64 KiB) the QuickJS build needs before any script runs (its data, stack and first
 * heap): the `initial` size of the memory it imports. The decoder's allowance comes on top, up
 * to the build's own maximum of 32,768 pages (2 GiB), hence TTN_DECODER_MEMORY_MB ≤ 2000.
 */
const BASE_PAGES = 256;
const PAGE_BYTES = 64 * 1024;

/**
 * QuickJS's own stack limit, bytes. It must stay well inside the host thread's native stack
 * (the worker's `stackSizeMb`) that runs the interpreter, or an endless recursion overflows the
 * host's stack instead of raising QuickJS's catchable "stack overflow".
 */
export const STACK_LIMIT_BYTES = 256 * 1024;

/** The package's types describe its CommonJS face; imported as ESM, its default is the variant. */
const releaseSync = releaseSyncExport as unknown as QuickJSSyncVariant;

/** The WebAssembly constructors used here (the project's TypeScript libs declare none). */
interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Memory: new (limits: { initial: number; maximum: number }) => {
    readonly buffer: ArrayBuffer;
  };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Compiled once per thread; every sandbox instantiates it with its own memory. */
let compiled: object | undefined;
function wasmModule(): object {
  compiled ??= new wasm.Module(
    readFileSync(
      createRequire(import.meta.url).resolve("@jitl/quickjs-wasmfile-release-sync/wasm"),
    ),
  );
  return compiled;
}

export interface SandboxLimits {
  /** Memory a decoder may allocate beyond the interpreter's fixed base, MB. */
  readonly memoryMb: number;
  /** Time limit of loading the file, and of each call with its promise jobs, ms. */
  readonly timeoutMs: number;
}

/** How a call or load went. */
export type SandboxOutcome =
  | { readonly ok: true; readonly output: string; readonly dropped: string[] }
  | { readonly ok: false; readonly reason: DecoderFailureReason; readonly error: string };
type Failed = Extract<SandboxOutcome, { ok: false }>;

/** Promise jobs run between two looks at the clock. */
const JOBS_PER_TURN = 100;

/**
 * A sandbox is used until a call fails: the worker then drops it and loads the file afresh, so
 * a decoder that spoiled its own realm, or was stopped half-way, starts clean. Dropping it is
 * all it takes to free it (its WebAssembly instance and memory are its own); QuickJS's own
 * teardown is not called, as it asserts on the objects an interrupted call can leave behind.
 */
export class QuickJSSandbox {
  readonly #memory: { readonly buffer: ArrayBuffer };
  readonly #maximumBytes: number;
  readonly #runtime: QuickJSRuntime;
  readonly #context: QuickJSContext;
  readonly #runner: QuickJSHandle;
  readonly #limits: SandboxLimits;
  #deadline = 0;
  #interrupted = false;

  private constructor(
    quickjs: QuickJSWASMModule,
    memory: { readonly buffer: ArrayBuffer },
    maximumBytes: number,
    limits: SandboxLimits,
  ) {
    this.#memory = memory;
    this.#maximumBytes = maximumBytes;
    this.#limits = limits;
    this.#runtime = quickjs.newRuntime();
    this.#runtime.setMaxStackSize(STACK_LIMIT_BYTES);
    this.#runtime.setInterruptHandler(() => {
      if (Date.now() >= this.#deadline) {
        this.#interrupted = true;
        return true;
      }
      return false;
    });
    this.#context = this.#runtime.newContext();
    // Our own code, with no time limit: on a cold thread its first parse also waits for V8 to
    // compile the interpreter's WebAssembly functions, which is not the decoder's time.
    this.#deadline = Number.POSITIVE_INFINITY;
    this.#context.evalCode(PRELUDE, "broker-decoder-prelude.js").unwrap().dispose();
    // Taken before any decoder code runs: whatever the decoder does to the global, this stays.
    this.#runner = this.#context.getProp(this.#context.global, RUNNER);
  }

  /**
   * A fresh interpreter with `source` loaded (run once, as a script), or why it cannot be used.
   * The memory cap is the WebAssembly memory's own maximum: QuickJS's malloc limit does not
   * work in this build (it adds 8 bytes per allocation, whatever its size), but a memory that
   * cannot grow makes every allocation past the cap fail with QuickJS's "out of memory".
   */
  static async load(
    source: string,
    filename: string,
    limits: SandboxLimits,
  ): Promise<QuickJSSandbox | Failed> {
    const maximumPages = BASE_PAGES + Math.ceil((limits.memoryMb * 1024 * 1024) / PAGE_BYTES);
    let sandbox: QuickJSSandbox;
    try {
      const memory = new wasm.Memory({ initial: BASE_PAGES, maximum: maximumPages });
      const quickjs = await newQuickJSWASMModuleFromVariant(
        newVariant(releaseSync, { wasmModule: wasmModule(), wasmMemory: memory }),
      );
      sandbox = new QuickJSSandbox(quickjs, memory, maximumPages * PAGE_BYTES, limits);
    } catch (err) {
      return failure("decoder_crashed", `cannot start a decoder interpreter: ${String(err)}`);
    }
    return sandbox.#loadDecoder(source, filename) ?? sandbox;
  }

  /** Runs decodeUplink on `inputJson` (DecoderInput as JSON), then its promise jobs. */
  run(inputJson: string): SandboxOutcome {
    const ctx = this.#context;
    this.#start();
    try {
      const arg = ctx.newString(inputJson);
      const result = ctx.callFunction(this.#runner, ctx.undefined, arg);
      arg.dispose();
      if (result.error) {
        return this.#thrown(result.error, "decodeUplink");
      }
      // The runner returns a string at most OUTPUT_LIMIT_CHARS long plus its envelope.
      const text = ctx.typeof(result.value) === "string" ? ctx.getString(result.value) : "";
      result.value.dispose();
      return this.#drainJobs("decodeUplink") ?? this.#envelope(text);
    } catch (err) {
      return this.#crashed(err);
    }
  }

  #start(): void {
    this.#interrupted = false;
    this.#deadline = Date.now() + this.#limits.timeoutMs;
  }

  #loadDecoder(source: string, filename: string): Failed | undefined {
    const ctx = this.#context;
    this.#start();
    try {
      const loaded = ctx.evalCode(source, filename);
      if (loaded.error) {
        const { error } = this.#thrown(loaded.error, "loading");
        const what = error.startsWith("SyntaxError") ? "does not compile" : "fails to load";
        return failure("decoder_invalid", `${filename} ${what}: ${error}`);
      }
      loaded.value.dispose();
      const check = ctx.evalCode('typeof decodeUplink === "function"');
      const found =
        !check.error && ctx.typeof(check.value) === "boolean" && ctx.dump(check.value) === true;
      (check.error ?? check.value).dispose();
      if (!found) {
        return failure("decoder_invalid", `${filename} defines no decodeUplink function`);
      }
      const jobs = this.#drainJobs("loading");
      return jobs && failure("decoder_invalid", `${filename} fails to load: ${jobs.error}`);
    } catch (err) {
      const crash = this.#crashed(err);
      return failure("decoder_invalid", `${filename} fails to load: ${crash.error}`);
    }
  }

  /**
   * Runs the promise jobs left behind, within the same deadline, so that none outlives the
   * call: there are no timers, so once the queue is empty nothing of the decoder runs until
   * the next call. A job that overruns is a timeout of the call.
   */
  #drainJobs(during: string): Failed | undefined {
    while (this.#runtime.hasPendingJob()) {
      if (this.#interrupted || Date.now() >= this.#deadline) {
        return this.#timeout(`${during} and its promise jobs`);
      }
      const done = this.#runtime.executePendingJobs(JOBS_PER_TURN);
      if (done.error) {
        // A job's exception rejects its promise; only what escapes that comes here.
        const failed = this.#thrown(done.error, `${during}: a promise job`);
        if (failed.reason !== "decoder_failed") {
          return failed;
        }
      }
    }
    // QuickJS turns an interrupted job into a rejected promise: the deadline still counts.
    return this.#interrupted ? this.#timeout(`${during} and its promise jobs`) : undefined;
  }

  #timeout(during: string): Failed {
    return failure(
      "decoder_timeout",
      `the decoder ran longer than ${this.#limits.timeoutMs} ms (${during})`,
    );
  }

  #memoryOut(): Failed {
    return failure(
      "decoder_memory",
      `the decoder exceeded its ${this.#limits.memoryMb} MB memory limit`,
    );
  }

  /** What an exception that escaped the runner (or a load) means; disposes the handle. */
  #thrown(error: QuickJSHandle, during: string): Failed {
    if (this.#interrupted) {
      error.dispose();
      return this.#timeout(during);
    }
    const text = this.#describe(error);
    error.dispose();
    if (text === OUT_OF_MEMORY) {
      return this.#memoryOut();
    }
    return failure("decoder_failed", text);
  }

  /** name: message of a thrown value, read inside the sandbox under the same deadline. */
  #describe(error: QuickJSHandle): string {
    const ctx = this.#context;
    try {
      if (ctx.typeof(error) !== "object") {
        return "the decoder threw a value that is not an Error";
      }
      const parts = ["name", "message"].map((key) => {
        const value = ctx.getProp(error, key);
        const text = ctx.typeof(value) === "string" ? ctx.getString(value).slice(0, 1000) : "";
        value.dispose();
        return text;
      });
      return parts.filter((p) => p !== "").join(": ") || "the decoder threw an unprintable value";
    } catch {
      return "the decoder threw an unprintable value";
    }
  }

  /** Reads the runner's JSON envelope; anything unexpected is the decoder's failure. */
  #envelope(text: string): SandboxOutcome {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return failure("decoder_failed", "the decoder's answer could not be read");
    }
    const v = value as { ok?: unknown; output?: unknown; dropped?: unknown; error?: unknown };
    if (
      v.ok === true &&
      typeof v.output === "string" &&
      v.output.length <= OUTPUT_LIMIT_CHARS &&
      Array.isArray(v.dropped) &&
      v.dropped.every((k) => typeof k === "string")
    ) {
      return { ok: true, output: v.output, dropped: v.dropped as string[] };
    }
    const error = typeof v.error === "string" ? v.error : "the decoder's answer could not be read";
    return error === OUT_OF_MEMORY ? this.#memoryOut() : failure("decoder_failed", error);
  }

  /**
   * A host-side exception from the interpreter: a WebAssembly trap, or the host's own stack
   * exhausted. QuickJS's recovery from a failed allocation is not perfect; a trap with the
   * memory nearly full is the memory limit at work.
   */
  #crashed(err: unknown): Failed {
    if (this.#memory.buffer.byteLength >= this.#maximumBytes * 0.9) {
      return this.#memoryOut();
    }
    return failure("decoder_crashed", `the decoder's interpreter failed: ${String(err)}`);
  }
}

/** What QuickJS throws when an allocation fails. */
const OUT_OF_MEMORY = "InternalError: out of memory";

function failure(reason: DecoderFailureReason, error: string): Failed {
  return { ok: false, reason, error };
}
