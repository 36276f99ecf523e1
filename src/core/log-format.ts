/**
 * Readable log lines for a person at a terminal (`broker run` when standard output is a TTY):
 * `10:14:26.512 WARN  ttn-webhook  message  key=value …`. Pure: takes pino's JSON record.
 * Log collectors get pino's JSON lines unchanged; this is only for eyes.
 */

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: "TRACE", color: "\u001b[90m" },
  20: { name: "DEBUG", color: "\u001b[90m" },
  30: { name: "INFO", color: "\u001b[32m" },
  40: { name: "WARN", color: "\u001b[33m" },
  50: { name: "ERROR", color: "\u001b[31m" },
  60: { name: "FATAL", color: "\u001b[41m" },
};
const RESET = "\u001b[0m";
const DIM = "\u001b[2m";

/** Fields shown in their own place (or not at all: pid is the same on every line). */
const PLACED = new Set(["level", "time", "pid", "hostname", "component", "msg", "err"]);

interface ErrorLike {
  readonly type?: unknown;
  readonly message?: unknown;
  readonly stack?: unknown;
}

function clock(time: unknown): string {
  const date = new Date(typeof time === "number" ? time : Date.now());
  return date.toISOString().slice(11, 23);
}

function value(v: unknown): string {
  if (typeof v === "string") {
    return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  }
  return JSON.stringify(v) ?? String(v);
}

/** The error's first line, and at error level and above its stack below the line. */
function describeError(err: ErrorLike, level: number): { inline: string; stack?: string } {
  const message = typeof err.message === "string" ? err.message : value(err);
  const inline = `err=${value(message)}`;
  if (level >= 50 && typeof err.stack === "string") {
    return { inline, stack: err.stack.replace(/^/gm, "    ") };
  }
  return { inline };
}

export interface PrettyOptions {
  /** ANSI colours (a TTY without NO_COLOR). */
  readonly color: boolean;
}

/** One pino record as one readable line (plus an indented stack for errors). */
export function formatLogRecord(record: Record<string, unknown>, options: PrettyOptions): string {
  const levelNumber = typeof record.level === "number" ? record.level : 30;
  const level = LEVELS[levelNumber] ?? { name: String(record.level), color: "" };
  const paint = (code: string, text: string): string =>
    options.color ? `${code}${text}${RESET}` : text;
  const parts = [
    paint(DIM, clock(record.time)),
    paint(level.color, level.name.padEnd(5)),
    typeof record.component === "string" ? paint(DIM, record.component) : undefined,
    typeof record.msg === "string" ? record.msg : "",
  ];
  const extras = Object.entries(record)
    .filter(([key]) => !PLACED.has(key))
    .map(([key, v]) => `${key}=${value(v)}`);
  let stack: string | undefined;
  if (record.err !== undefined && record.err !== null) {
    const described =
      typeof record.err === "object"
        ? describeError(record.err as ErrorLike, levelNumber)
        : { inline: `err=${value(record.err)}` };
    extras.push(described.inline);
    stack = described.stack;
  }
  const line = parts.filter((p) => p !== undefined && p !== "").join(" ");
  const tail = extras.length > 0 ? ` ${paint(DIM, extras.join(" "))}` : "";
  return `${line}${tail}\n${stack === undefined ? "" : `${stack}\n`}`;
}

/** Formats a pino output line; a line that is not JSON passes through as it is. */
export function formatLogLine(line: string, options: PrettyOptions): string {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return line;
  }
  return typeof record === "object" && record !== null && !Array.isArray(record)
    ? formatLogRecord(record as Record<string, unknown>, options)
    : line;
}
