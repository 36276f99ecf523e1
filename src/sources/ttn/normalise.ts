import { createHash } from "node:crypto";

import { v5 as uuidv5 } from "uuid";
import { z } from "zod";

import { PermanentError } from "../../core/errors.js";
import { parseInstant } from "../../core/time.js";
import type { Normalised } from "../pipeline.js";

/** Namespace for the correlation ids we derive from TTN content (a fixed, arbitrary UUID). */
const TTN_NAMESPACE = "4f6c1a52-8c0e-4d7e-9f61-2b7f4d0e9a11";

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

const uplink = z.looseObject({
  end_device_ids: endDeviceIds,
  received_at: z.string().optional(),
  uplink_message: z.looseObject({
    received_at: z.string().optional(),
    f_cnt: z.number().int().nonnegative().optional(),
    f_port: z.number().int().nonnegative().optional(),
    decoded_payload: z.record(z.string(), z.unknown()).optional(),
  }),
});
type Uplink = z.infer<typeof uplink>;

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

/** Validates a body as a TTN uplink; PermanentError naming what is wrong otherwise. */
export function parseUplink(body: unknown): Uplink {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new PermanentError("not_ttn_uplink", "body is not a JSON object");
  }
  const type = ttnMessageType(body);
  if (type !== undefined && type !== "uplink_message") {
    throw new PermanentError("not_ttn_uplink", `this is a TTN ${type} message, not an uplink`);
  }
  const parsed = uplink.safeParse(body);
  if (!parsed.success) {
    throw new PermanentError("not_ttn_uplink", `not a TTN uplink: ${problems(parsed.error)}`);
  }
  return parsed.data;
}

/** The uplink's time: `uplink_message.received_at`, else the top-level `received_at`, kept verbatim. */
export function uplinkTime(body: Uplink): string | undefined {
  return body.uplink_message.received_at ?? body.received_at;
}

/**
 * The broker_correlation_id of a webhook body. An uplink's id is derived from what identifies
 * it (application, device, network receive time, frame counter), so the same uplink posted
 * twice — a webhook retry, two webhooks — gets the same id and is stored and forwarded once.
 * Any other body's id is derived from its bytes, for the same reason.
 */
export function ttnCorrelationId(body: unknown, bytes: Buffer): string {
  const parsed = body === undefined ? undefined : uplink.safeParse(body);
  if (parsed?.success) {
    const u = parsed.data;
    const ids = u.end_device_ids;
    const identity = [
      "uplink",
      ids.application_ids.application_id,
      ids.device_id,
      uplinkTime(u) ?? "",
      String(u.uplink_message.f_cnt ?? 0),
    ].join("\u0000");
    return uuidv5(identity, TTN_NAMESPACE);
  }
  return uuidv5(`body\u0000${createHash("sha256").update(bytes).digest("hex")}`, TTN_NAMESPACE);
}

/**
 * IoTa's TTN rules, pure. The device is found by DevEUI (lower-cased; app_id + dev_id when an
 * ABP device has none); each top-level `decoded_payload` key becomes one point; the timestamp is
 * the uplink's receive time, verbatim. An uplink without `decoded_payload` still updates its
 * device but publishes nothing (local decoders come with the sources work).
 */
export function normaliseTtnUplink(
  body: unknown,
  correlationId: string,
  arrivedAt: string,
): Normalised {
  const u = parseUplink(body);
  const ids = u.end_device_ids;
  const appId = ids.application_ids.application_id;
  const devId = ids.device_id;
  const devEui = ids.dev_eui?.toLowerCase();
  const timestamp = uplinkTime(u) ?? arrivedAt;
  if (parseInstant(timestamp) === undefined) {
    throw new PermanentError(
      "invalid_timestamp",
      `received_at ${JSON.stringify(timestamp)} is not an ISO-8601 date-time with an offset`,
    );
  }
  const sourceIds = devEui
    ? { app_id: appId, dev_id: devId, dev_eui: devEui }
    : { app_id: appId, dev_id: devId };
  const lookup = devEui ? { dev_eui: devEui } : { app_id: appId, dev_id: devId };
  const payload = u.uplink_message.decoded_payload;
  return {
    device: {
      lookup,
      create: {
        name: devId,
        location: null,
        source_ids: sourceIds,
        properties: { creation_correlation_id: correlationId, last_msg: body },
      },
      sighting: { lastSeen: timestamp, sourceIds, lastMsg: body },
    },
    messages: (pUid) =>
      payload === undefined
        ? []
        : [
            {
              broker_correlation_id: correlationId,
              p_uid: pUid,
              timestamp,
              timeseries: Object.entries(payload).map(([name, value]) => ({ name, value })),
            },
          ],
  };
}
