/**
 * JavaScript that runs inside every decoder's QuickJS context before the decoder file. It is the
 * only code of ours in there; the host keeps a handle to the runner it defines and never touches
 * anything the decoder made.
 *
 * It captures every built-in it uses before decoder code can replace them, adds nothing to
 * Object/Array prototypes and never assigns to an index or a missing property (which could hit a
 * setter a decoder put on a prototype), so the decoder can spoil only its own answer.
 */

/** Most characters of JSON one decoding may return (its `{data, warnings, errors}`). */
export const OUTPUT_LIMIT_CHARS = 256 * 1024;

/** The runner's global name; defined read-only, the host holds its own handle anyway. */
export const RUNNER = "__brokerRun";

/**
 * The runner takes the input as JSON text and returns JSON text, always a string, one of
 * `{"ok":true,"output":"<decodeUplink's answer as JSON>","dropped":["key",…]}` or
 * `{"ok":false,"error":"…"}`.
 */
export const PRELUDE = `"use strict";
(function (g) {
  var parse = JSON.parse, stringify = JSON.stringify, DateCtor = Date, StringCtor = String;
  var isFiniteNumber = Number.isFinite, define = Object.defineProperty, freeze = Object.freeze;
  var LIMIT = ${OUTPUT_LIMIT_CHARS};
  // Nothing here shares memory with anything, but a decoder has no use for them either.
  delete g.SharedArrayBuffer; delete g.Atomics; delete g.WebAssembly;
  var noop = function () {};
  // TTN decoders sometimes log; the log goes nowhere.
  g.console = freeze({ log: noop, info: noop, warn: noop, error: noop, debug: noop });
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
  function fail(text) {
    return stringify({ ok: false, error: text });
  }
  define(g, "${RUNNER}", { value: function (json) {
    try {
      var raw = parse(json);
      var out = decodeUplink({ bytes: raw.bytes, fPort: raw.fPort, recvTime: new DateCtor(raw.recvTime) });
      if (out === null || typeof out !== "object" || typeof out.then === "function") {
        return fail("decodeUplink must return an object such as {data: {...}}");
      }
      var dropped = [], count = 0;
      var text = stringify(out, function (key, value) {
        if (typeof value === "number" && !isFiniteNumber(value)) {
          define(dropped, count++, { value: StringCtor(key), enumerable: true });
          return undefined;
        }
        return value;
      });
      if (typeof text !== "string") {
        return fail("decodeUplink's answer cannot be written as JSON");
      }
      if (text.length > LIMIT) {
        return fail("decodeUplink's answer is " + text.length + " characters of JSON, more than the limit of " + LIMIT);
      }
      return stringify({ ok: true, output: text, dropped: dropped });
    } catch (e) {
      return fail(describe(e));
    }
  } });
})(globalThis);`;
