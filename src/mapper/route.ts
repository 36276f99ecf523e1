import type { NormalisedMessage } from "../core/message.js";
import { parseInstantMicros } from "../core/time.js";

/**
 * The logical mapper's routing decision. Pure: it sees the message, the registry's mappings of its
 * physical device and the clock, nothing else. A message goes to the logical device whose mapping
 * period [start_time, end_time) holds the message's `timestamp` (not simply to the current
 * mapping), so a late message reaches the series it belongs to even when the mapping changed
 * while it travelled. The rows are tried top to bottom; the first that matches decides:
 *
 * | # | case                                               | physical_timeseries             | forwarded | outcome      |
 * |---|----------------------------------------------------|---------------------------------|-----------|--------------|
 * | 1 | unknown physical device                            | not stored                      | no        | dead letter `unknown_device` |
 * | 2 | timestamp more than FUTURE_TOLERANCE_SECONDS ahead | held: l_uid NULL, `future_timestamp` | no   | ack          |
 * | 3 | timestamp more than PAST_TOLERANCE_SECONDS behind  | held: l_uid NULL, `past_timestamp`   | no   | ack          |
 * | 4 | no mapping of the device holds the timestamp       | held: l_uid NULL, `no_mapping`  | no        | ack          |
 * | 5 | the mapping that holds it is paused (is_active false) | held: l_uid NULL, `paused`   | no        | ack          |
 * | 6 | the mapping that holds it is active                | stored with its l_uid           | yes, to that l_uid | ack |
 *
 * Held messages keep a stray upstream `l_uid` out of the stored copy and wait for
 * `broker map release` (src/mapper/release.ts), which applies rows 4-6 again at release time.
 * IoTa forwarded by the current mapping whatever the timestamp, stored paused and unmapped
 * messages for good, and stored far-future ones with l_uid and dropped them (doc/compatibility.md).
 */

/** IoTa's routing key for logical messages (ignored by the fanout exchange, kept for bindings). */
export const LTS_ROUTING_KEY = "logical_timeseries";

/** Why a message is held instead of forwarded (stored in physical_timeseries.hold_reason). */
export type HoldReason = "no_mapping" | "paused" | "future_timestamp" | "past_timestamp";

export const HOLD_REASONS: readonly HoldReason[] = [
  "no_mapping",
  "paused",
  "future_timestamp",
  "past_timestamp",
];

/** One mapping of a physical device, as the mapper needs it. */
export interface MappingPeriod {
  readonly logicalUid: number;
  /** First instant the mapping covers, epoch microseconds. */
  readonly startMicros: number;
  /** First instant it no longer covers, epoch microseconds; undefined while it is current. */
  readonly endMicros: number | undefined;
  readonly isActive: boolean;
}

/** What the registry knows about one physical device, as the mapper needs it. */
export interface DeviceRoute {
  readonly physicalUid: number;
  readonly sourceName: string;
  /**
   * The device's mappings (at least those that could hold the batch's timestamps). The database
   * keeps them from overlapping (migration 014).
   */
  readonly mappings: readonly MappingPeriod[];
}

export type RouteDecision =
  | { readonly kind: "reject"; readonly reason: string; readonly error: string }
  | {
      readonly kind: "hold";
      /** The message as stored: any l_uid an upstream producer set is removed. */
      readonly stored: NormalisedMessage;
      readonly reason: HoldReason;
      /** One line for logs and for the operator. */
      readonly detail: string;
    }
  | {
      readonly kind: "forward";
      readonly stored: NormalisedMessage & { l_uid: number };
      readonly logicalUid: number;
      /** The logical device's new last_seen candidate: the message time, capped at now. */
      readonly lastSeen: string;
      /** `lastSeen` as epoch ms. */
      readonly lastSeenMs: number;
    };

export interface RouteOptions {
  /** Epoch ms regarded as "now". */
  readonly now: number;
  /** How far ahead of now a timestamp may be and still be forwarded, in ms. IoTa: one hour. */
  readonly futureToleranceMs: number;
  /**
   * How far behind now a timestamp may be and still be forwarded, in ms; undefined: no limit.
   * Catches device clocks reset to 1970 or 2000.
   */
  readonly pastToleranceMs: number | undefined;
}

function withoutLogicalUid(message: NormalisedMessage): NormalisedMessage {
  if (!("l_uid" in message)) {
    return message;
  }
  const { l_uid: _dropped, ...rest } = message;
  return rest as NormalisedMessage;
}

/** The mapping whose [start, end) holds `micros`; the latest-starting one if several would. */
export function coveringMapping(
  mappings: readonly MappingPeriod[],
  micros: number,
): MappingPeriod | undefined {
  let found: MappingPeriod | undefined;
  for (const m of mappings) {
    if (m.startMicros <= micros && (m.endMicros === undefined || micros < m.endMicros)) {
      if (!found || m.startMicros > found.startMicros) {
        found = m;
      }
    }
  }
  return found;
}

function hold(message: NormalisedMessage, reason: HoldReason, detail: string): RouteDecision {
  return { kind: "hold", stored: withoutLogicalUid(message), reason, detail };
}

export function decideRoute(
  message: NormalisedMessage,
  route: DeviceRoute | undefined,
  options: RouteOptions,
): RouteDecision {
  if (!route) {
    return {
      kind: "reject",
      reason: "unknown_device",
      error: `physical device ${message.p_uid} does not exist`,
    };
  }
  const micros = parseInstantMicros(message.timestamp);
  if (micros === undefined) {
    // The validation gate makes this unreachable; kept so a gap there can never route garbage.
    return {
      kind: "reject",
      reason: "invalid_timestamp",
      error: `bad timestamp ${message.timestamp}`,
    };
  }
  const instant = Math.floor(micros / 1000);
  if (instant > options.now + options.futureToleranceMs) {
    return hold(
      message,
      "future_timestamp",
      `timestamp ${message.timestamp} is more than ${options.futureToleranceMs / 1000} s in the future`,
    );
  }
  if (options.pastToleranceMs !== undefined && instant < options.now - options.pastToleranceMs) {
    return hold(
      message,
      "past_timestamp",
      `timestamp ${message.timestamp} is more than ${options.pastToleranceMs / 1000} s in the past`,
    );
  }
  const mapping = coveringMapping(route.mappings, micros);
  if (!mapping) {
    return hold(
      message,
      "no_mapping",
      `no mapping of physical device ${message.p_uid} holds ${message.timestamp}`,
    );
  }
  if (!mapping.isActive) {
    return hold(
      message,
      "paused",
      `the mapping of physical device ${message.p_uid} to logical device ${mapping.logicalUid} is paused`,
    );
  }
  // Spread keeps the producer's key order; l_uid lands last, or in place if one was there.
  const stored = { ...message, l_uid: mapping.logicalUid };
  const capped = instant > options.now;
  const lastSeen = capped ? new Date(options.now).toISOString() : message.timestamp;
  const lastSeenMs = capped ? options.now : instant;
  return { kind: "forward", stored, logicalUid: mapping.logicalUid, lastSeen, lastSeenMs };
}

/**
 * One last_seen/last_msg update per logical device for a batch: the newest message wins, so the
 * database sees each device once (UPDATE ... FROM with two rows for one target is undefined).
 */
export function newestPerLogicalDevice(
  forwards: readonly Extract<RouteDecision, { kind: "forward" }>[],
): { uid: number; lastSeen: string; lastMsg: NormalisedMessage }[] {
  const newest = new Map<number, { at: number; lastSeen: string; lastMsg: NormalisedMessage }>();
  for (const f of forwards) {
    const at = f.lastSeenMs;
    const current = newest.get(f.logicalUid);
    if (!current || at >= current.at) {
      newest.set(f.logicalUid, { at, lastSeen: f.lastSeen, lastMsg: f.stored });
    }
  }
  return [...newest].map(([uid, v]) => ({ uid, lastSeen: v.lastSeen, lastMsg: v.lastMsg }));
}

/** The earliest and latest time of some messages, to fetch only the mappings that matter. */
export function messageWindow(
  messages: readonly NormalisedMessage[],
): { from: string; to: string } | undefined {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const m of messages) {
    const micros = parseInstantMicros(m.timestamp);
    if (micros !== undefined) {
      min = Math.min(min, micros);
      max = Math.max(max, micros);
    }
  }
  if (min > max) {
    return undefined;
  }
  // Whole milliseconds around the exact instants: the window only narrows the query.
  return {
    from: new Date(Math.floor(min / 1000)).toISOString(),
    to: new Date(Math.ceil(max / 1000)).toISOString(),
  };
}
