import { describe, expect, it } from "vitest";

import { formatLogLine, formatLogRecord } from "../../src/core/log-format.js";
import { createLogger } from "../../src/core/logger.js";

const time = Date.UTC(2026, 11, 3, 10, 14, 26, 512);

describe("readable log lines", () => {
  it("puts time, level, component and message first, then the other fields", () => {
    const line = formatLogRecord(
      {
        level: 40,
        time,
        pid: 7,
        component: "ttn-webhook",
        msg: "refused",
        refused: 3,
        path: "/x y",
      },
      { color: false },
    );
    expect(line).toBe('10:14:26.512 WARN  ttn-webhook refused refused=3 path="/x y"\n');
  });

  it("shows an error's message, and its stack only at error level and above", () => {
    const err = { type: "Error", message: "boom", stack: "Error: boom\n    at x" };
    expect(formatLogRecord({ level: 40, time, msg: "retrying", err }, { color: false })).toBe(
      "10:14:26.512 WARN  retrying err=boom\n",
    );
    expect(formatLogRecord({ level: 50, time, msg: "failed", err }, { color: false })).toBe(
      "10:14:26.512 ERROR failed err=boom\n    Error: boom\n        at x\n",
    );
  });

  it("colours only when asked", () => {
    const record = { level: 30, time, msg: "hello" };
    expect(formatLogRecord(record, { color: true })).toContain("\u001b[32mINFO");
    expect(formatLogRecord(record, { color: false })).not.toContain("\u001b");
  });

  it("passes a line that is not a JSON object through", () => {
    expect(formatLogLine("plain text\n", { color: false })).toBe("plain text\n");
    expect(formatLogLine("[1]\n", { color: false })).toBe("[1]\n");
  });

  it("is what a pretty logger writes, redaction included; JSON stays the default", () => {
    const pretty: string[] = [];
    const json: string[] = [];
    createLogger({ pretty: true, color: false, destination: { write: (l) => pretty.push(l) } })
      .child({ component: "api" })
      .info({ password: "hunter2", port: 5687 }, "listening");
    createLogger({ destination: { write: (l) => json.push(l) } }).info("listening");
    expect(pretty).toHaveLength(1);
    expect(pretty[0]).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} INFO {2}api listening password=\[redacted\] port=5687\n$/,
    );
    expect(JSON.parse(json[0]!)).toMatchObject({ level: 30, msg: "listening" });
  });
});
