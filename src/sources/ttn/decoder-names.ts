import type { JsonObject } from "../../core/devices.js";
import type { Logger } from "../../core/logger.js";
import type { Db } from "../../db/database.js";
import { loadDecoderNameRows } from "./metadata-store.js";

/** The device ids an uplink names (a subset of a parsed uplink's `end_device_ids`). */
export interface UplinkDeviceIds {
  readonly device_id: string;
  readonly application_ids: { readonly application_id: string };
  readonly dev_eui?: string | undefined;
}

const euiKey = (eui: string): string => `eui:${eui.toLowerCase()}`;
const idKey = (app: string, dev: string): string => `id:${app}\u0000${dev}`;

/** Pure: decoder names by DevEUI and by application + device id, from devices' source_ids. */
export function decoderNameIndex(rows: readonly JsonObject[]): Map<string, string> {
  const index = new Map<string, string>();
  for (const ids of rows) {
    const name = ids.decoder_name;
    if (typeof name !== "string" || name === "") {
      continue;
    }
    if (typeof ids.dev_eui === "string") {
      index.set(euiKey(ids.dev_eui), name);
    }
    if (typeof ids.app_id === "string" && typeof ids.dev_id === "string") {
      index.set(idKey(ids.app_id, ids.dev_id), name);
    }
  }
  return index;
}

/** Pure: the decoder name for an uplink's device, found the way the device itself is found. */
export function decoderNameFor(
  index: ReadonlyMap<string, string>,
  ids: UplinkDeviceIds,
): string | undefined {
  return ids.dev_eui !== undefined
    ? index.get(euiKey(ids.dev_eui))
    : index.get(idKey(ids.application_ids.application_id, ids.device_id));
}

export interface DecoderNamesOptions {
  readonly db: Db;
  readonly logger: Logger;
  /** How often the names are re-read, ms. Default 30 000. */
  readonly refreshMs?: number;
}

/**
 * Operators' per-device decoder choices (`source_ids.decoder_name`, as in IoTa), kept in memory
 * so an uplink needs no extra query: read at start and every `refreshMs`, so a change takes
 * effect within that time. A failed read keeps the previous names.
 */
export class DecoderNames {
  readonly #o: DecoderNamesOptions;
  #index = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: DecoderNamesOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#o.refreshMs ?? 30_000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Re-reads the names now. */
  async refresh(): Promise<void> {
    try {
      this.#index = decoderNameIndex(await loadDecoderNameRows(this.#o.db));
    } catch (err) {
      this.#o.logger.warn({ err }, "cannot read devices' decoder names; keeping the previous ones");
    }
  }

  lookup(ids: UplinkDeviceIds): string | undefined {
    return decoderNameFor(this.#index, ids);
  }
}
