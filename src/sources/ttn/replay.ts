import type { Config } from "../../core/config.js";
import { PermanentError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { Db } from "../../db/database.js";
import type { RawRecord } from "../../db/repositories/replay-runs.js";
import type { RawNormalisation } from "../../replay/ports.js";
import { decodeJsonText } from "../raw-copy.js";
import { decoderNameFor, decoderNameIndex, type UplinkDeviceIds } from "./decoder-names.js";
import { DecoderPool } from "./decoders/decoder-pool.js";
import { loadDecoderNameRows } from "./metadata-store.js";
import { isSimulated, normaliseTtnUplink, parseUplink, ttnMessageType } from "./normalise.js";
import { loadTtnSettings } from "./settings.js";
import { decodeLocally, type WebhookItemOptions } from "./webhook-items.js";

/**
 * TTN raw messages normalised again in this process, as the webhook would today: the same
 * settings (TTN_DECODERS_DIR, TTN_DECODE_LOCALLY, TTN_ACCEPT_SIMULATED), a decoder pool of its own
 * (so the decoder files are read afresh: a fixed decoder is the one that runs), devices'
 * `decoder_name` read once at the start. The stored correlation id is kept (jsonb reorders keys,
 * so the id could not be derived from the stored copy again) and the raw row's `ts` stands for
 * the arrival time an uplink without a receive time was stamped with.
 */
export class TtnReplayNormaliser {
  readonly #options: WebhookItemOptions;
  readonly #pool: DecoderPool | undefined;

  private constructor(options: WebhookItemOptions, pool: DecoderPool | undefined) {
    this.#options = options;
    this.#pool = pool;
  }

  static async open(deps: {
    config: Config;
    db: Db;
    logger: Logger;
  }): Promise<TtnReplayNormaliser> {
    const settings = loadTtnSettings(deps.config);
    const { dir, ...limits } = settings.decoders;
    const logger = deps.logger.child({ component: "replay-ttn" });
    const pool =
      dir === undefined
        ? undefined
        : new DecoderPool({ dir, ...limits, logger: logger.child({ part: "decoders" }) });
    // Read once, and a failure fails the replay: decoding a device with the application's
    // decoder instead of the one its operator named would "correct" it wrongly.
    const names = pool ? decoderNameIndex(await loadDecoderNameRows(deps.db)) : undefined;
    const decoderNames = names && { lookup: (ids: UplinkDeviceIds) => decoderNameFor(names, ids) };
    return new TtnReplayNormaliser(
      {
        acceptSimulated: settings.acceptSimulated,
        decodeLocally: settings.decoders.locally,
        decoders: pool,
        decoderNames,
      },
      pool,
    );
  }

  async normalise(raw: RawRecord): Promise<RawNormalisation> {
    let body: unknown = raw.json;
    if (raw.text !== null) {
      // The text is the exact copy when there is one (a rounded number, or not storable as jsonb).
      const decoded = decodeJsonText(raw.text, "body");
      if (!decoded.ok) {
        return { ok: false, reason: decoded.reason, error: decoded.error };
      }
      body = decoded.value;
    }
    const type = ttnMessageType(body);
    if (type !== undefined && type !== "uplink_message") {
      return { ok: true, devices: [] };
    }
    try {
      const up = parseUplink(body);
      if (isSimulated(up) && !this.#options.acceptSimulated) {
        return { ok: true, devices: [] };
      }
      const decoding = await decodeLocally(up, raw.ts, this.#options);
      const n = normaliseTtnUplink(body, raw.correlationId, raw.ts, { decoding });
      return { ok: true, devices: [{ lookup: n.device.lookup, messages: n.messages }] };
    } catch (err) {
      if (err instanceof PermanentError) {
        return { ok: false, reason: err.reason, error: err.message };
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#pool?.close();
  }
}
