import { createHash } from "node:crypto";

import { parse as uuidParse, v5 as uuidv5 } from "uuid";
import { z } from "zod";

import { PermanentError } from "../../core/errors.js";
import { requireTimestamp } from "../../core/timestamps.js";
import type { Normalised } from "../pipeline.js";
import { withoutWhitespace } from "../raw-copy.js";
import type { LocalDecoding } from "./decoding.js";
import { METADATA_PENDING_KEY, pendingMarker } from "./metadata.js";

/**
 * Namespace for the correlation ids we derive from TTN content (a fixed, arbitrary UUID), as
 * bytes: given as text, uuid parses it again for every id.
 */
const TTN_NAMESPACE = uuidParse("4f6c1a52-8c0e-4d7e-9f61-2b7f4d0e9a11");

/**
 * The Things Stack webhook message types, by the top-level key that carries each (their JSON
 * format puts exactly one of these beside `end_device_ids`).
 */
export const TTN_MESSAGE_TYPES = [
  "uplink_message",
  "uplink_normalized",
  "join_accept",
  "downlink_ack",
  "downlink_nack",
  "downlink_sent",
  "downlink_failed",
  "downlink_queued",
  "downlink_queue_invalidated",
  "location_solved",
  "service_data",
] as const;
export type TtnMessageType = (typeof TTN_MESSAGE_TYPES)[number];

const endDeviceIds = z.object({
  device_id: z.string().min(1),
  application_ids: z.object({ application_id: z.string().min(1) }),
  dev_eui: z
    .string()
    .regex(/^[0-9A-Fa-f]{16}$/, "must be 16 hex digits")
    .optional(),
});

const ttnEnvelope = z.looseObject({
  end_device_ids: endDeviceIds,
  received_at: z.string().optional(),
});

// The Things Stack omits zero, false and empty values: an absent f_cnt or f_port is 0 (the first
// uplink after a join has no f_cnt), an absent frm_payload is an empty payload.
const uplink = z.looseObject({
  end_device_ids: endDeviceIds,
  received_at: z.string().optional(),
  simulated: z.boolean().optional(),
  uplink_message: z.looseObject({
    received_at: z.string().optional(),
    f_cnt: z.number().int().nonnegative().optional(),
    f_port: z.number().int().nonnegative().optional(),
    frm_payload: z.string().optional(),
    decoded_payload: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type Uplink = z.infer<typeof uplink>;

function problems(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
}

/** The message type of a TTN webhook body, or undefined when it is not a TTN message at all. */
export function ttnMessageType(body: unknown): TtnMessageType | undefined {
  if (typeof body !== "object" || body === null || !ttnEnvelope.safeParse(body).success) {
    return undefined;
  }
  return TTN_MESSAGE_TYPES.find((t) => t in body);
}

/**
 * A body checked once as a TTN uplink, for everything that needs to know (its ids, the decision
 * to decode, normalising): each zod pass over a body costs as much as parsing its JSON.
 */
export interface UplinkCheck {
  /** The body's uplink fields when they have an uplink's shape, whatever its message type says. */
  readonly shape: Uplink | undefined;
  /** Why the body is not an uplink to normalise; undefined when it is one. */
  readonly problem: PermanentError | undefined;
}

export function checkUplink(body: unknown): UplinkCheck {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return {
      shape: undefined,
      problem: new PermanentError("not_ttn_uplink", "body is not a JSON object"),
    };
  }
  const parsed = uplink.safeParse(body);
  const shape = parsed.success ? parsed.data : undefined;
  const type = ttnMessageType(body);
  if (type !== undefined && type !== "uplink_message") {
    return {
      shape,
      problem: new PermanentError("not_ttn_uplink", `this is a TTN ${type} message, not an uplink`),
    };
  }
  if (!parsed.success) {
    return {
      shape,
      problem: new PermanentError("not_ttn_uplink", `not a TTN uplink: ${problems(parsed.error)}`),
    };
  }
  return { shape, problem: undefined };
}

/** Validates a body as a TTN uplink; PermanentError naming what is wrong otherwise. */
export function parseUplink(body: unknown, check: UplinkCheck = checkUplink(body)): Uplink {
  if (check.problem !== undefined) {
    throw check.problem;
  }
  return check.shape!;
}

/** The uplink's time: `uplink_message.received_at`, else the top-level `received_at`, kept verbatim. */
export function uplinkTime(body: Uplink): string | undefined {
  return body.uplink_message.received_at ?? body.received_at;
}

/** What identifies an uplink: application, device, network receive time, frame counter. */
function uplinkIdentity(u: Uplink): string[] {
  const ids = u.end_device_ids;
  return [
    "uplink",
    ids.application_ids.application_id,
    ids.device_id,
    uplinkTime(u) ?? "",
    String(u.uplink_message.f_cnt ?? 0),
  ];
}

/**
 * A UUIDv5 of some strings. JSON.stringify escapes lone UTF-16 surrogates, so any string from a
 * body can be part of it (uuid's own UTF-8 step throws on them).
 */
function derivedId(parts: readonly string[]): string {
  // As bytes: uuid's own text-to-UTF-8 step is several times slower than Buffer's, same bytes.
  return uuidv5(Buffer.from(JSON.stringify(parts), "utf8"), TTN_NAMESPACE);
}

/** The ids of one webhook body. */
export interface TtnIds {
  /**
   * The body's broker_correlation_id. An uplink's is derived from what identifies it
   * (application, device, network receive time, frame counter) and from its content (the body
   * without whitespace between tokens, every digit kept; numbers in their shortest form when
   * that loses nothing), so the same body posted again — a
   * webhook retry, however spaced — gets the same id and is stored and forwarded once, while a
   * different body claiming the same uplink gets an id and a raw row of its own instead of being
   * published without one. Any other body's id is derived from its bytes.
   */
  readonly correlationId: string;
  /**
   * What every body of one uplink shares (its identity alone), stored as
   * `raw_messages.uplink_key`: two different bodies with one key are flagged conflicting.
   * Undefined for a body that is not an uplink.
   */
  readonly uplinkKey?: string;
}

/**
 * The ids of a webhook body: `body` is its parsed JSON (undefined when it is not JSON), `exact`
 * false when parsing rounded a number (its raw copy keeps the text), `check` the body's
 * {@link checkUplink} when the caller has it already.
 */
export function ttnIds(
  body: unknown,
  bytes: Buffer,
  exact = true,
  check: UplinkCheck | undefined = body === undefined ? undefined : checkUplink(body),
): TtnIds {
  const shape = check?.shape;
  if (shape !== undefined) {
    const identity = uplinkIdentity(shape);
    // The content without its spacing: re-serialised when that is exact (fast), else the text.
    const content = exact ? JSON.stringify(body) : withoutWhitespace(bytes.toString("utf8"));
    const digest = createHash("sha256").update(content).digest("hex");
    return { correlationId: derivedId([...identity, digest]), uplinkKey: derivedId(identity) };
  }
  const digest = createHash("sha256").update(bytes).digest("hex");
  return {
    correlationId: uuidv5(Buffer.from(`body\u0000${digest}`, "utf8"), TTN_NAMESPACE),
  };
}

/** {@link TtnIds.correlationId} of a webhook body. */
export function ttnCorrelationId(body: unknown, bytes: Buffer): string {
  return ttnIds(body, bytes).correlationId;
}

/** `uplink_message.decoded_payload` of a body already validated by {@link parseUplink}. */
function decodedPayloadOf(body: unknown): Record<string, unknown> | undefined {
  return (body as { uplink_message: { decoded_payload?: Record<string, unknown> } }).uplink_message
    .decoded_payload;
}

/** True for an uplink simulated from the TTS Console (top-level `simulated: true`). */
export function isSimulated(u: Uplink): boolean {
  return u.simulated === true;
}

/**
 * How an uplink's device is found: by DevEUI (lower-cased), or app_id + dev_id for an ABP
 * device without one. The webhook asks for it before normalising, to store the raw row linked.
 */
export function ttnDeviceLookup(
  u: Uplink,
): { dev_eui: string } | { app_id: string; dev_id: string } {
  const ids = u.end_device_ids;
  const devEui = ids.dev_eui?.toLowerCase();
  return devEui
    ? { dev_eui: devEui }
    : { app_id: ids.application_ids.application_id, dev_id: ids.device_id };
}

export interface TtnNormaliseOptions {
  /**
   * The local decoder's result, when one ran (see decoding.ts). It replaces TTN's
   * `decoded_payload`; a failed decoding fails the uplink after its device has been seen.
   */
  readonly decoding?: LocalDecoding | undefined;
  /** The body's {@link checkUplink}, when the caller has it already. */
  readonly check?: UplinkCheck | undefined;
}

/**
 * IoTa's TTN rules, pure. The device is found by DevEUI (lower-cased; app_id + dev_id when an
 * ABP device has none); each top-level key of the payload becomes one point; the timestamp is
 * the uplink's receive time, verbatim. The payload is the local decoder's `data` when one ran,
 * else TTN's `decoded_payload`; an uplink with neither still updates its device but publishes
 * nothing. Beyond IoTa's four keys, a message may carry `simulated: true` (Console-simulated
 * uplinks) and `decoder: {name, warnings?, errors?}` (locally decoded ones).
 */
export function normaliseTtnUplink(
  body: unknown,
  correlationId: string,
  arrivedAt: string,
  options: TtnNormaliseOptions = {},
): Normalised {
  const u = parseUplink(body, options.check);
  const ids = u.end_device_ids;
  const appId = ids.application_ids.application_id;
  const devId = ids.device_id;
  const devEui = ids.dev_eui?.toLowerCase();
  const timestamp = uplinkTime(u) ?? arrivedAt;
  requireTimestamp(
    u.uplink_message.received_at !== undefined ? "uplink_message.received_at" : "received_at",
    timestamp,
  );
  const sourceIds = devEui
    ? { app_id: appId, dev_id: devId, dev_eui: devEui }
    : { app_id: appId, dev_id: devId };
  const lookup = ttnDeviceLookup(u);
  const decoding = options.decoding;
  // The body's own object, not zod's validated copy: the copy turns a `__proto__` key into a
  // prototype, and the point would vanish.
  const payload = decoding?.ok ? decoding.data : decodedPayloadOf(body);
  const extras = {
    ...(isSimulated(u) ? { simulated: true } : {}),
    ...(decoding?.ok
      ? {
          decoder: {
            name: decoding.name,
            ...(decoding.warnings.length > 0 ? { warnings: decoding.warnings } : {}),
            ...(decoding.errors.length > 0 ? { errors: decoding.errors } : {}),
          },
        }
      : {}),
  };
  return {
    device: {
      lookup,
      create: {
        name: devId,
        location: null,
        source_ids: sourceIds,
        properties: {
          creation_correlation_id: correlationId,
          last_msg: body,
          // Name and location come from The Things Stack API later, in the background.
          [METADATA_PENDING_KEY]: pendingMarker(devId, arrivedAt),
        },
      },
      sighting: { lastSeen: timestamp, sourceIds, lastMsg: body },
    },
    messages: (pUid) => {
      if (decoding && !decoding.ok) {
        throw new PermanentError(decoding.reason, `decoder ${decoding.name}: ${decoding.error}`);
      }
      return payload === undefined
        ? []
        : [
            {
              broker_correlation_id: correlationId,
              p_uid: pUid,
              timestamp,
              timeseries: Object.entries(payload).map(([name, value]) => ({ name, value })),
              ...extras,
            },
          ];
    },
  };
}
