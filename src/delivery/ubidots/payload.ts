import { parseInstant } from "../../core/time.js";
import type { LogicalMessage } from "../../core/message.js";

/**
 * The pure part of the Ubidots writer: messages to dots, dots packed into request bodies under
 * the size limit, and the answer read back per dot. No I/O.
 */

/** One value as Ubidots takes it (v1.6 "dot"). */
export interface Dot {
  readonly value: number;
  /** POSIX milliseconds. */
  readonly timestamp: number;
  readonly context: { readonly broker_correlation_id: string };
}

/** A dot and the message (index into the batch) it came from. */
export interface OwnedDot {
  readonly message: number;
  readonly variable: string;
  readonly dot: Dot;
}

/** What one message yields: its dots and the values that could not be sent. */
export interface MessageDots {
  readonly dots: OwnedDot[];
  /** Values skipped because they are not numbers (name and a short reason). */
  readonly skipped: { readonly variable: string; readonly reason: string }[];
}

const NUMBER_TEXT = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * IoTa's `float(value)`: numbers as they are, booleans as 1 and 0, strings that spell a finite
 * number. Anything else (null, objects, lists, other text) is not a number Ubidots can take.
 */
export function numericValue(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isFinite(value) ? value : undefined;
  }
  if (typeof value === "boolean") {
    return value ? 1 : 0;
  }
  if (typeof value === "string" && NUMBER_TEXT.test(value)) {
    const n = Number(value);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/**
 * The dots of one message, as IoTa builds them: each point's own timestamp when it has a valid
 * one, else the message's, floored to ms; the correlation id in each dot's context; for a name
 * given twice in one message, the last value wins.
 */
export function messageDots(message: LogicalMessage, index: number): MessageDots {
  const fallback = parseInstant(message.timestamp) ?? Date.parse(message.timestamp);
  const byName = new Map<string, OwnedDot>();
  const skipped: MessageDots["skipped"] = [];
  for (const point of message.timeseries) {
    const value = numericValue(point.value);
    if (value === undefined) {
      skipped.push({
        variable: point.name,
        reason: `not a number: ${JSON.stringify(point.value)?.slice(0, 40)}`,
      });
      continue;
    }
    const own = typeof point.timestamp === "string" ? parseInstant(point.timestamp) : undefined;
    const timestamp = Math.floor(own ?? fallback);
    byName.delete(point.name);
    byName.set(point.name, {
      message: index,
      variable: point.name,
      dot: { value, timestamp, context: { broker_correlation_id: message.broker_correlation_id } },
    });
  }
  return { dots: [...byName.values()], skipped };
}

/** One request body and, per variable, the owners of its dots in order. */
export interface Body {
  /** The JSON text sent. */
  readonly text: string;
  /** Per variable label, the message index of each dot, in the order sent. */
  readonly owners: ReadonlyMap<string, readonly number[]>;
  /** Messages with at least one dot in this body. */
  readonly messages: ReadonlySet<number>;
}

function bodyOf(dots: readonly OwnedDot[]): Body {
  const vars = new Map<string, Dot[]>();
  const owners = new Map<string, number[]>();
  for (const d of dots) {
    (vars.get(d.variable) ?? vars.set(d.variable, []).get(d.variable)!).push(d.dot);
    (owners.get(d.variable) ?? owners.set(d.variable, []).get(d.variable)!).push(d.message);
  }
  return {
    text: JSON.stringify(Object.fromEntries(vars)),
    owners,
    messages: new Set(dots.map((d) => d.message)),
  };
}

/** Bytes a dot adds to a body whose variables are `vars`. */
function addedBytes(vars: ReadonlyMap<string, number>, d: OwnedDot): number {
  const dotBytes = Buffer.byteLength(JSON.stringify(d.dot));
  return vars.has(d.variable)
    ? dotBytes + 1 // the comma before it
    : Buffer.byteLength(JSON.stringify(d.variable)) + 3 + dotBytes + (vars.size > 0 ? 1 : 0);
}

/**
 * Packs dots, in order, into as few `{"<variable>": [dot, …], …}` bodies as fit in `maxBytes`
 * each (UTF-8). Sizes are computed as the JSON is laid out, so each body is checked exactly.
 * A message's dots stay in one body (so a failed body never makes a retry resend dots another
 * body already saved) unless the message alone is too big, when it is split. A single dot that
 * alone exceeds the limit gets a body of its own (the caller sees it fail).
 */
export function packBodies(dots: readonly OwnedDot[], maxBytes: number): Body[] {
  const bodies: Body[] = [];
  let current: OwnedDot[] = [];
  let vars = new Map<string, number>();
  let size = 2; // {}
  const flush = (): void => {
    if (current.length > 0) {
      bodies.push(bodyOf(current));
    }
    current = [];
    vars = new Map();
    size = 2;
  };
  const add = (d: OwnedDot): void => {
    size += addedBytes(vars, d);
    vars.set(d.variable, (vars.get(d.variable) ?? 0) + 1);
    current.push(d);
  };
  for (let start = 0; start < dots.length;) {
    let end = start;
    while (end < dots.length && dots[end]!.message === dots[start]!.message) {
      end++;
    }
    const group = dots.slice(start, end);
    start = end;
    // Would the whole message fit in the current body?
    const trial = new Map(vars);
    let trialSize = size;
    for (const d of group) {
      trialSize += addedBytes(trial, d);
      trial.set(d.variable, 1);
    }
    if (trialSize > maxBytes) {
      flush();
    }
    for (const d of group) {
      if (current.length > 0 && size + addedBytes(vars, d) > maxBytes) {
        flush();
      }
      add(d);
    }
  }
  flush();
  return bodies;
}

/** What Ubidots said about one dot. */
export type DotStatus =
  { readonly ok: true } | { readonly ok: false; readonly code: number | undefined };

/**
 * Reads a v1.6 answer (`{"<variable>": [{"status_code": 201}, …], …}`) and returns, per message
 * in the body, the first failing dot's status (or ok). A variable missing from the answer, or a
 * code outside 200–203, counts as failed; 204 means "not saved".
 */
export function readStatuses(body: Body, answer: unknown): Map<number, DotStatus> {
  const result = new Map<number, DotStatus>();
  for (const m of body.messages) {
    result.set(m, { ok: true });
  }
  const object =
    answer !== null && typeof answer === "object" && !Array.isArray(answer)
      ? (answer as Record<string, unknown>)
      : {};
  for (const [variable, owners] of body.owners) {
    const statuses = object[variable];
    owners.forEach((message, i) => {
      const entry = Array.isArray(statuses) ? (statuses[i] as unknown) : undefined;
      const code =
        entry !== null && typeof entry === "object"
          ? (entry as { status_code?: unknown }).status_code
          : undefined;
      const numeric = typeof code === "number" ? code : undefined;
      const ok = numeric !== undefined && numeric >= 200 && numeric < 204;
      if (!ok && result.get(message)?.ok !== false) {
        result.set(message, { ok: false, code: numeric });
      }
    });
  }
  return result;
}

/**
 * IoTa's label for a new device: `<system_id>-<station_id>-<sensor_group_id>` for a GreenBrain
 * sensor group that has all three; undefined otherwise (the writer then uses a new UUID).
 */
export function greenBrainLabel(
  sourceName: string,
  sourceIds: Record<string, unknown>,
): string | undefined {
  if (sourceName !== "greenbrain") {
    return undefined;
  }
  const parts = [sourceIds.system_id, sourceIds.station_id, sourceIds.sensor_group_id];
  if (parts.some((p) => (typeof p !== "number" && typeof p !== "string") || p === "")) {
    return undefined;
  }
  return parts.map(String).join("-");
}
