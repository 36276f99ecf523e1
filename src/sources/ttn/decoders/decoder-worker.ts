import { readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { types } from "node:util";
import vm from "node:vm";
import { parentPort } from "node:worker_threads";

import type { DecodeReply, DecodeRequest, DecoderFailureReason, WorkerReady } from "./protocol.js";

/**
 * A decoder worker thread (see decoder-pool.ts). Each decoder file gets its own `node:vm`
 * context holding only ECMAScript built-ins: no require/import, process, timers, fetch or
 * filesystem. The file is compiled and run once, and again only when its mtime or size changes.
 * Nothing the decoder made is touched by this thread's own code: input goes in and results
 * come out as JSON text produced inside the context, within the time limit, so a hostile getter
 * or proxy can only waste its own time. The pool's watchdog and the worker's heap limit catch
 * the rest (a hang outside vm's timeout, memory exhaustion).
 */

/**
 * Runs first in every context. It removes what could block or share memory, gives decoders a
 * silent console (TTN decoders sometimes log), and defines the runner, capturing JSON and Date
 * before decoder code can replace them.
 */
const PRELUDE = `"use strict";
(function (g) {
  var parse = JSON.parse, stringify = JSON.stringify, DateCtor = Date, StringCtor = String;
  var isFiniteNumber = Number.isFinite, define = Object.defineProperty;
  delete g.Atomics; delete g.SharedArrayBuffer; delete g.WebAssembly;
  var noop = function () {};
  g.console = { log: noop, info: noop, warn: noop, error: noop, debug: noop };
  function describe(e) {
    try {
      if (e !== null && typeof e === "object" && typeof e.message === "string") {
        return StringCtor((e.name ? e.name + ": " : "") + e.message).slice(0, 1000);
      }
      return StringCtor(e).slice(0, 1000);
    } catch (_) {
      return "an unprintable value was thrown";
    }
  }
  define(g, "__brokerInput", { value: "", writable: true, enumerable: false, configurable: false });
  define(g, "__brokerError", { value: undefined, writable: true, enumerable: false, configurable: false });
  define(g, "__brokerDescribe", { value: describe });
  define(g, "__brokerRun", { value: function (json) {
    try {
      var raw = parse(json);
      var out = decodeUplink({ bytes: raw.bytes, fPort: raw.fPort, recvTime: new DateCtor(raw.recvTime) });
      if (out === null || typeof out !== "object" || typeof out.then === "function") {
        return stringify({ ok: false, error: "decodeUplink must return an object such as {data: {...}}" });
      }
      var dropped = [];
      var text = stringify(out, function (key, value) {
        if (typeof value === "number" && !isFiniteNumber(value)) {
          dropped[dropped.length] = StringCtor(key);
          return undefined;
        }
        return value;
      });
      return stringify({ ok: true, output: text, dropped: dropped });
    } catch (e) {
      return stringify({ ok: false, error: describe(e) });
    }
  } });
})(globalThis);`;

const prelude = new vm.Script(PRELUDE, { filename: "broker-decoder-prelude.js" });
const invoke = new vm.Script("__brokerRun(__brokerInput)", {
  filename: "broker-decoder-invoke.js",
});
const describeError = new vm.Script("__brokerDescribe(__brokerError)");
const hasDecoder = new vm.Script('typeof decodeUplink === "function"');

interface Loaded {
  readonly mtimeMs: number;
  readonly size: number;
  readonly context?: vm.Context;
  readonly error?: string;
}

const cache = new Map<string, Loaded>();

class Failure {
  readonly reason: DecoderFailureReason;
  readonly error: string;
  constructor(reason: DecoderFailureReason, error: string) {
    this.reason = reason;
    this.error = error;
  }
}

/** An own data property, read without running any getter a decoder may have defined. */
function ownValue(value: object, key: string): unknown {
  const descriptor = Object.getOwnPropertyDescriptor(value, key);
  return descriptor && "value" in descriptor ? descriptor.value : undefined;
}

/** Says what was thrown, without letting decoder-made values run code outside the time limit. */
function explain(thrown: unknown, context: vm.Context, timeoutMs: number): Failure {
  // vm's timeout error belongs to neither realm's Error.prototype chain: recognise it by code.
  if (
    !types.isProxy(thrown) &&
    types.isNativeError(thrown) &&
    ownValue(thrown, "code") === "ERR_SCRIPT_EXECUTION_TIMEOUT"
  ) {
    return new Failure("decoder_timeout", `the decoder ran longer than ${timeoutMs} ms`);
  }
  try {
    (context as Record<string, unknown>).__brokerError = thrown;
    const text: unknown = describeError.runInContext(context, { timeout: timeoutMs });
    return new Failure("decoder_failed", typeof text === "string" ? text : "decoder error");
  } catch {
    return new Failure("decoder_failed", "the decoder threw an unprintable value");
  }
}

function load(file: string, timeoutMs: number): vm.Context {
  let stat;
  try {
    stat = statSync(file);
  } catch {
    throw new Failure("decoder_not_found", `no decoder file ${basename(file)}`);
  }
  let entry = cache.get(file);
  if (!entry || entry.mtimeMs !== stat.mtimeMs || entry.size !== stat.size) {
    entry = compile(file, stat.mtimeMs, stat.size, timeoutMs);
    cache.set(file, entry);
  }
  if (entry.context === undefined) {
    throw new Failure("decoder_invalid", entry.error ?? "the decoder file cannot be used");
  }
  return entry.context;
}

function compile(file: string, mtimeMs: number, size: number, timeoutMs: number): Loaded {
  const context = vm.createContext(
    {},
    { codeGeneration: { strings: false, wasm: false }, microtaskMode: "afterEvaluate" },
  );
  prelude.runInContext(context);
  let script: vm.Script;
  try {
    script = new vm.Script(readFileSync(file, "utf8"), { filename: basename(file) });
  } catch (err) {
    return { mtimeMs, size, error: `${basename(file)} does not compile: ${String(err)}` };
  }
  try {
    script.runInContext(context, { timeout: timeoutMs });
    if (hasDecoder.runInContext(context, { timeout: timeoutMs }) !== true) {
      return { mtimeMs, size, error: `${basename(file)} defines no decodeUplink function` };
    }
  } catch (err) {
    const failure = explain(err, context, timeoutMs);
    return { mtimeMs, size, error: `${basename(file)} fails to load: ${failure.error}` };
  }
  return { mtimeMs, size, context };
}

function decode(request: DecodeRequest): DecodeReply {
  const { id, timeoutMs } = request;
  let context: vm.Context | undefined;
  try {
    context = load(request.file, timeoutMs);
    (context as Record<string, unknown>).__brokerInput = JSON.stringify(request.input);
    const text: unknown = invoke.runInContext(context, { timeout: timeoutMs });
    const result = (typeof text === "string" ? JSON.parse(text) : undefined) as
      { ok: true; output: string; dropped: string[] } | { ok: false; error: string } | undefined;
    if (result === undefined) {
      return { id, ok: false, reason: "decoder_failed", error: "the decoder returned nothing" };
    }
    return result.ok
      ? { id, ok: true, output: result.output, dropped: result.dropped }
      : { id, ok: false, reason: "decoder_failed", error: result.error };
  } catch (err) {
    const failure =
      err instanceof Failure
        ? err
        : context
          ? explain(err, context, timeoutMs)
          : new Failure("decoder_failed", String(err));
    return { id, ok: false, reason: failure.reason, error: failure.error };
  }
}

// A decoder may leave a promise rejected (a refused import(), say); that must not end the thread.
process.on("unhandledRejection", () => undefined);

parentPort?.on("message", (request: DecodeRequest) => {
  parentPort?.postMessage(decode(request));
});
parentPort?.postMessage({ ready: true } satisfies WorkerReady);
