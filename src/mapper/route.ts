import type { NormalisedMessage } from "../core/message.js";
import { parseInstant } from "../core/time.js";

/**
 * The logical mapper's routing decision: IoTa's decision table with its losses fixed. Pure: it
 * sees the message and what the registry says about its physical device, nothing else.
 *
 * | device / mapping            | stored in physical_timeseries | forwarded | outcome         |
 * |-----------------------------|-------------------------------|-----------|-----------------|
 * | unknown physical device     | no                            | no        | dead letter     |
 * | no current mapping          | yes, logical_uid NULL         | no        | ack             |
 * | current mapping, paused     | yes, logical_uid NULL         | no        | ack             |
 * | mapped, active, far future  | yes, with l_uid               | no        | dead letter     |
 * | mapped, active              | yes, with l_uid               | yes       | ack             |
 */

/** What the registry knows about one physical device, as the mapper needs it. */
export interface DeviceRoute {
  readonly physicalUid: number;
  readonly sourceName: string;
  /** The current mapping (end_time IS NULL), if any. */
  readonly mapping: { readonly logicalUid: number; readonly isActive: boolean } | undefined;
}

export type RouteDecision =
  | { readonly kind: "reject"; readonly reason: string; readonly error: string }
  | {
      readonly kind: "store";
      /** The message as stored: any l_uid an upstream producer set is removed. */
      readonly stored: NormalisedMessage;
    }
  | {
      readonly kind: "hold";
      readonly stored: NormalisedMessage;
      readonly reason: string;
      readonly error: string;
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
}

function withoutLogicalUid(message: NormalisedMessage): NormalisedMessage {
  if (!("l_uid" in message)) {
    return message;
  }
  const { l_uid: _dropped, ...rest } = message;
  return rest as NormalisedMessage;
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
  const mapping = route.mapping;
  if (!mapping || !mapping.isActive) {
    return { kind: "store", stored: withoutLogicalUid(message) };
  }
  // Spread keeps the producer's key order; l_uid lands last, or in place if one was there.
  const stored = { ...message, l_uid: mapping.logicalUid };
  const instant = parseInstant(message.timestamp);
  if (instant === undefined) {
    // The validation gate makes this unreachable; kept so a gap there can never route garbage.
    return {
      kind: "reject",
      reason: "invalid_timestamp",
      error: `bad timestamp ${message.timestamp}`,
    };
  }
  if (instant > options.now + options.futureToleranceMs) {
    return {
      kind: "hold",
      stored,
      reason: "future_timestamp",
      error: `timestamp ${message.timestamp} is more than ${options.futureToleranceMs / 1000} s in the future`,
    };
  }
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
