import { PermanentError } from "../../core/errors.js";
import { parseInstant } from "../../core/time.js";
import type { IngestItem } from "../pipeline.js";
import { decodeJsonText } from "../raw-copy.js";
import type { DecoderNames } from "./decoder-names.js";
import type { DecoderPool } from "./decoders/decoder-pool.js";
import {
  chooseDecoder,
  decoderInput,
  interpretDecodeResult,
  type LocalDecoding,
} from "./decoding.js";
import {
  checkUplink,
  isSimulated,
  normaliseTtnUplink,
  ttnCorrelationId,
  ttnDeviceLookup,
  ttnIds,
  ttnMessageType,
  uplinkTime,
  type Uplink,
} from "./normalise.js";

/** A request body as text: PostgreSQL text cannot hold NUL, so NUL is kept as U+FFFD. */
function bodyText(bytes: Buffer): string {
  return bytes.toString("utf8").replaceAll("\u0000", "\uFFFD");
}

/** What decoding needs of the webhook's settings (a replay builds the same). */
export interface WebhookItemOptions {
  /** Whether simulated uplinks are normalised and published (they are stored raw regardless). */
  readonly acceptSimulated: boolean;
  /** Applications decoded locally even when TTN decoded them, or `all`. */
  readonly decodeLocally: readonly string[] | "all";
  /** Runs local decoders; undefined when TTN_DECODERS_DIR is unset (no local decoding). */
  readonly decoders?: DecoderPool | undefined;
  /** Devices' own decoder names. */
  readonly decoderNames?: Pick<DecoderNames, "lookup"> | undefined;
}

/** Runs the uplink's local decoder, if one applies (the webhook's rule; a replay's too). */
export async function decodeLocally(
  u: Uplink,
  arrivedAt: string,
  o: WebhookItemOptions,
): Promise<LocalDecoding | undefined> {
  if (!o.decoders) {
    return undefined;
  }
  const choice = chooseDecoder(u, {
    locally: o.decodeLocally,
    deviceDecoderName: o.decoderNames?.lookup(u.end_device_ids),
  });
  if (!choice) {
    return undefined;
  }
  return interpretDecodeResult(
    choice,
    await o.decoders.decode(choice.name, decoderInput(u, arrivedAt)),
  );
}

/**
 * Turns one webhook request body into an ingest item. A local decoder starts here and runs while
 * the raw copy is being stored (it is time-limited and never throws, so it cannot stop the raw
 * copy being stored); `normalise`, which runs after the raw store, waits for its outcome. `uplinkOnly` is IoTa's `/ttn/webhook/up`, where
 * anything but an uplink is refused; other paths store every TTN message type and normalise
 * uplinks only.
 */
export function buildWebhookItem(
  bytes: Buffer,
  uplinkOnly: boolean,
  options: WebhookItemOptions,
): IngestItem {
  const arrivedAt = new Date().toISOString();
  const decoded = decodeJsonText(bodyText(bytes), "body");
  const json = decoded.ok ? decoded.value : undefined;
  // A raw copy with text beside the JSON means JSON.parse rounded a number.
  const exact = !(decoded.ok && decoded.raw.text !== undefined);
  // Checked once here, used by the ids, the decoder and the normaliser alike.
  const check = json === undefined ? undefined : checkUplink(json);
  const { correlationId, uplinkKey } = ttnIds(json, bytes, exact, check);
  const up = check?.problem === undefined ? check?.shape : undefined;
  const t = up === undefined ? undefined : uplinkTime(up);
  const ts = t !== undefined && parseInstant(t) !== undefined ? t : arrivedAt;
  // Not published (TTN_ACCEPT_SIMULATED=false): kept raw only, no device is created or seen.
  const rawOnly = up !== undefined && isSimulated(up) && !options.acceptSimulated;
  const decoding = up !== undefined && !rawOnly ? decodeLocally(up, arrivedAt, options) : undefined;
  // Awaited only in normalise: if the raw store fails first, nobody waits for this promise.
  decoding?.catch(() => undefined);
  const normaliseUplink = async () =>
    rawOnly
      ? undefined
      : normaliseTtnUplink(json, correlationId, arrivedAt, { decoding: await decoding, check });
  return {
    raw: { correlationId, ts, ...decoded.raw, ...(uplinkKey === undefined ? {} : { uplinkKey }) },
    // Only for what will be normalised (an uplink that is not kept raw only).
    deviceHint: up !== undefined && !rawOnly ? ttnDeviceLookup(up) : undefined,
    normalise: async () => {
      if (!decoded.ok) {
        throw new PermanentError(decoded.reason, decoded.error);
      }
      if (uplinkOnly) {
        return normaliseUplink();
      }
      const type = ttnMessageType(json);
      if (type === undefined) {
        throw new PermanentError(
          "not_ttn_message",
          "body is not a The Things Stack webhook message",
        );
      }
      return type === "uplink_message" ? normaliseUplink() : undefined;
    },
  };
}

/**
 * A body larger than TTN_WEBHOOK_MAX_BODY, of which only the first `maxBytes` bytes were read:
 * those are stored raw (as text, NUL replaced) and the item is rejected `too_large`, so it is
 * dead-lettered with that reason and answered 413.
 */
export function oversizedWebhookItem(prefix: Buffer, maxBytes: number): IngestItem {
  return {
    raw: {
      correlationId: ttnCorrelationId(undefined, prefix),
      ts: new Date().toISOString(),
      text: bodyText(prefix),
    },
    normalise: () => {
      throw new PermanentError(
        "too_large",
        `body exceeds ${maxBytes} bytes (TTN_WEBHOOK_MAX_BODY); its first ${maxBytes} bytes are kept raw`,
      );
    },
  };
}
