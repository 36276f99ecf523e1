import type { LogicalMessage } from "../../core/message.js";
import { numericValue } from "../ubidots/payload.js";

/**
 * InfluxDB line protocol for logical messages (pure). One line per message and timestamp:
 * `<measurement>,l_uid=<l>,p_uid=<p> <variable>=<float>,… <ns>`. Every value is written as a
 * float so a field's type never conflicts between messages.
 */

function escapeMeasurement(s: string): string {
  return s.replace(/[,\s\\]/g, (c) => `\\${c === "\n" ? "n" : c === "\t" ? "t" : c}`);
}

function escapeKey(s: string): string {
  return s.replace(/[,=\s\\]/g, (c) => `\\${c === "\n" ? "n" : c === "\t" ? "t" : c}`);
}

const FRACTION = /T\d{2}:\d{2}:\d{2}\.(\d+)/;

/**
 * Nanoseconds since the epoch of an ISO-8601 instant, keeping every fractional digit up to
 * nine (microseconds from the database survive). Undefined when it is not a valid instant.
 */
export function isoToNanoseconds(
  iso: string,
  parse: (iso: string) => number | undefined,
): bigint | undefined {
  const ms = parse(iso);
  if (ms === undefined) {
    return undefined;
  }
  const fraction = FRACTION.exec(iso)?.[1] ?? "";
  const beyondMs = fraction.slice(3, 9).padEnd(6, "0");
  return BigInt(Math.floor(ms)) * 1_000_000n + BigInt(beyondMs);
}

/** A number without suffix is a float in line protocol, whatever its digits. */
function float(n: number): string {
  return String(n);
}

export interface Lines {
  /** Line-protocol lines, one per distinct timestamp of the message. */
  readonly lines: string[];
  /** Values that are not numbers (skipped). */
  readonly skipped: number;
}

/**
 * The lines of one message. `measurement` names the measurement; points carry the message's
 * timestamp unless they have a valid one of their own; a name given twice at one timestamp keeps
 * the last value.
 */
export function messageLines(
  message: LogicalMessage,
  measurement: string,
  parse: (iso: string) => number | undefined,
): Lines {
  const base = isoToNanoseconds(message.timestamp, parse);
  const byTime = new Map<bigint, Map<string, number>>();
  let skipped = 0;
  for (const point of message.timeseries) {
    const value = numericValue(point.value);
    if (value === undefined) {
      skipped++;
      continue;
    }
    const own =
      typeof point.timestamp === "string" ? isoToNanoseconds(point.timestamp, parse) : undefined;
    const ts = own ?? base;
    if (ts === undefined) {
      skipped++;
      continue;
    }
    const fields = byTime.get(ts) ?? new Map<string, number>();
    fields.delete(point.name);
    fields.set(point.name, value);
    byTime.set(ts, fields);
  }
  const head = `${escapeMeasurement(measurement)},l_uid=${message.l_uid},p_uid=${message.p_uid}`;
  const lines = [...byTime].map(
    ([ts, fields]) =>
      `${head} ${[...fields].map(([k, v]) => `${escapeKey(k)}=${float(v)}`).join(",")} ${ts}`,
  );
  return { lines, skipped };
}
