import type { StoredMessage } from "../db/repositories/messages.js";
import { invalidParam } from "./errors.js";

/**
 * Pure parts of GET /messages: IoTa's `last` parameter, and the JSON and CSV forms of a stored
 * message. No I/O here.
 */

const HOUR_MS = 3_600_000;
const UNIT_MS: Record<string, number> = {
  h: HOUR_MS,
  d: 24 * HOUR_MS,
  w: 7 * 24 * HOUR_MS,
  // IoTa's approximations: a month is 4 weeks, a year 52 weeks.
  m: 4 * 7 * 24 * HOUR_MS,
  y: 52 * 7 * 24 * HOUR_MS,
};

/** Earliest instant JavaScript and PostgreSQL both handle comfortably: 0001-01-01T00:00:00Z. */
const EARLIEST_MS = -62_135_596_800_000;

/**
 * IoTa's `last` (`<integer><unit>`, unit h/d/w/m/y in any case) as milliseconds. IoTa's 422
 * messages; unlike IoTa, zero, negative and absurdly long periods are refused too.
 */
export function lastPeriodMs(last: string, nowMs: number): number {
  const value = last.trim();
  const amount = value.slice(0, -1);
  const unit = value.slice(-1).toLowerCase();
  if (!/^[+-]?\d+$/.test(amount)) {
    throw invalidParam("query", "last", "the first part of last must be an integer");
  }
  const factor = UNIT_MS[unit];
  if (factor === undefined) {
    throw invalidParam("query", "last", "only h/d/w/m/y supported");
  }
  const ms = Number(amount) * factor;
  if (!(ms > 0)) {
    throw invalidParam("query", "last", "the first part of last must be greater than 0");
  }
  if (nowMs - ms < EARLIEST_MS) {
    throw invalidParam("query", "last", "the period reaches back before the year 1");
  }
  return ms;
}

/** Which parts of a message the JSON form carries (IoTa's flags). */
export interface JsonShape {
  includeReceivedAt: boolean;
  onlyTimestamp: boolean;
}

/**
 * IoTa's /messages object: `ts_utc`, `received_at_utc` when asked for, then every top-level key
 * of the stored message unless only the timestamp was asked for.
 */
export function messageJson(row: StoredMessage, shape: JsonShape): Record<string, unknown> {
  // No prototype: a stored key named "__proto__" stays an ordinary key.
  const out = Object.create(null) as Record<string, unknown>;
  out.ts_utc = row.tsUtc;
  if (shape.includeReceivedAt) {
    out.received_at_utc = row.receivedAtUtc;
  }
  if (!shape.onlyTimestamp) {
    for (const [key, value] of Object.entries(row.message)) {
      if (!(key in out)) {
        out[key] = value;
      }
    }
  }
  return out;
}

/** IoTa's CSV exporter header (util/ExportPhysicalTimeseriesCSV.py). */
export const CSV_HEADER = "l_uid,p_uid,msg_timestamp,timestamp,name,value\r\n";

/** A number as a spreadsheet reads one: such text is a value, never a formula. */
const NUMERIC_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Text a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
 * carriage return) gets a leading `'`, which spreadsheets read as "this is text" (OWASP's
 * advice). Text that is just a number (`-3.2`) is left alone, and so are JSON numbers.
 */
function defuseFormula(text: string): string {
  return /^[=+\-@\t\r]/.test(text) && !NUMERIC_TEXT.test(text) ? `'${text}` : text;
}

/**
 * A CSV field as Python's csv module writes it (str() of the value, minimal quoting), except
 * that text which a spreadsheet would read as a formula is escaped (IoTa wrote it as it was).
 */
export function csvField(value: unknown): string {
  let text: string;
  if (value === null || value === undefined) {
    text = "";
  } else if (typeof value === "boolean") {
    text = value ? "True" : "False";
  } else if (typeof value === "object") {
    text = JSON.stringify(value);
  } else if (typeof value === "string") {
    text = defuseFormula(value);
  } else {
    text = String(value);
  }
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV line per timeseries point; a point without a timestamp takes the message's. */
export function messageCsv(row: StoredMessage): string {
  const msg = row.message;
  const points = Array.isArray(msg.timeseries) ? (msg.timeseries as unknown[]) : [];
  let out = "";
  for (const point of points) {
    const p = (typeof point === "object" && point !== null ? point : {}) as Record<string, unknown>;
    out +=
      [msg.l_uid, msg.p_uid, msg.timestamp, p.timestamp ?? msg.timestamp, p.name, p.value]
        .map(csvField)
        .join(",") + "\r\n";
  }
  return out;
}
