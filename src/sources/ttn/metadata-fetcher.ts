import { backoffDelay, sleep } from "../../core/backoff.js";
import type { Logger } from "../../core/logger.js";
import type { Db } from "../../db/database.js";
import type { DeviceLookup, TtnApiClient } from "./api-client.js";
import { metadataFromApi } from "./metadata.js";
import { applyTtnMetadata, listPendingTtnDevices, type PendingDevice } from "./metadata-store.js";

export interface MetadataFetcherOptions {
  readonly db: Db;
  readonly client: TtnApiClient;
  readonly logger: Logger;
  /** Most API requests started per second. */
  readonly ratePerSecond: number;
  /** First retry delay for a device whose fetch failed, ms. */
  readonly retryInitialMs: number;
  /** Longest retry delay, ms; also caps an honoured Retry-After. */
  readonly retryMaxMs: number;
  /** How often pending devices are looked for without being nudged, ms. Default 30 000. */
  readonly scanIntervalMs?: number;
}

/** Devices handled per scan; more pending devices start the next scan at once. */
const SCAN_LIMIT = 100;
/** Fewest ms between two nudged scans, so a burst of new devices costs one query, not many. */
const NUDGE_COALESCE_MS = 200;

/**
 * The background half of device creation: fetches each pending device's API record and stores
 * it (see metadata-store.ts). Uplinks never wait for it. Requests go one at a time, paced to
 * `ratePerSecond`; a failed device is retried with capped jittered backoff while the others go
 * on; 429 pauses every request for Retry-After (capped); 401 pauses everything with backoff
 * (a token problem is not the device's). A database outage is waited out. Nothing here throws.
 */
export class MetadataFetcher {
  readonly #o: MetadataFetcherOptions;
  readonly #stop = new AbortController();
  /** Per-device retry state, in memory: a restart retries at once, which is harmless. */
  readonly #retries = new Map<number, { attempts: number; notBefore: number }>();
  #pausedUntil = 0;
  #globalFailures = 0;
  #lastRequest = 0;
  #wake: (() => void) | undefined;
  #nudged = false;
  #running: Promise<void> | undefined;

  constructor(options: MetadataFetcherOptions) {
    this.#o = options;
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  /** Asks for a scan soon (after an uplink from a device this process had not seen). */
  nudge(): void {
    this.#nudged = true;
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#wake?.();
    await this.#running;
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    let dbFailures = 0;
    while (!signal.aborted) {
      this.#nudged = false;
      let more = false;
      try {
        more = await this.#scan();
        dbFailures = 0;
      } catch (err) {
        // PostgreSQL unavailable (or a bug): wait and scan again; pending devices stay marked.
        this.#o.logger.warn({ err }, "TTN metadata scan failed; retrying");
        await sleep(backoffDelay(dbFailures++, { maxMs: 30_000 }), signal);
        continue;
      }
      if (more) {
        continue;
      }
      await this.#idle(this.#nextDue() - Date.now());
      if (this.#nudged) {
        await sleep(NUDGE_COALESCE_MS, signal);
      }
    }
  }

  /** Sleeps until `ms` pass, a nudge, or stop. */
  async #idle(ms: number): Promise<void> {
    if (this.#nudged || this.#stop.signal.aborted) {
      return;
    }
    const wakeUp = new AbortController();
    this.#wake = () => wakeUp.abort();
    await sleep(Math.max(0, ms), AbortSignal.any([wakeUp.signal, this.#stop.signal]));
    this.#wake = undefined;
  }

  /**
   * When the next scan is due on its own: the end of a pause (the devices it interrupted are
   * still pending), else the interval or, sooner, the first retry.
   */
  #nextDue(): number {
    if (this.#pausedUntil > Date.now()) {
      return this.#pausedUntil;
    }
    let due = Date.now() + (this.#o.scanIntervalMs ?? 30_000);
    for (const r of this.#retries.values()) {
      due = Math.min(due, r.notBefore);
    }
    return due;
  }

  /** One pass over pending devices not waiting to retry; true when more may be waiting. */
  async #scan(): Promise<boolean> {
    const signal = this.#stop.signal;
    const now = Date.now();
    const waiting = [...this.#retries].filter(([, r]) => r.notBefore > now).map(([uid]) => uid);
    const pending = await listPendingTtnDevices(this.#o.db, SCAN_LIMIT, waiting);
    if (pending.length < SCAN_LIMIT) {
      // A device due for a retry that is no longer pending was handled elsewhere or deleted.
      const present = new Set(pending.map((d) => d.uid));
      for (const [uid, r] of this.#retries) {
        if (r.notBefore <= now && !present.has(uid)) {
          this.#retries.delete(uid);
        }
      }
    }
    for (const device of pending) {
      if (signal.aborted || Date.now() < this.#pausedUntil) {
        return false;
      }
      await this.#pace();
      if (signal.aborted) {
        return false;
      }
      await this.#fetchOne(device);
    }
    return pending.length === SCAN_LIMIT;
  }

  async #pace(): Promise<void> {
    const gap = 1000 / this.#o.ratePerSecond;
    const wait = this.#lastRequest + gap - Date.now();
    if (wait > 0) {
      await sleep(wait, this.#stop.signal);
    }
    this.#lastRequest = Date.now();
  }

  async #fetchOne(device: PendingDevice): Promise<void> {
    const log = this.#o.logger.child({
      p_uid: device.uid,
      app_id: device.appId,
      dev_id: device.devId,
    });
    const result: DeviceLookup = await this.#o.client.getDevice(
      device.appId,
      device.devId,
      this.#stop.signal,
    );
    if (this.#stop.signal.aborted) {
      return;
    }
    const retry = { initialMs: this.#o.retryInitialMs, maxMs: this.#o.retryMaxMs };
    switch (result.kind) {
      case "found":
      case "refused": {
        // IoTa keeps the API's error body as properties.ttn too, and names the device by its id.
        const metadata = result.kind === "found" ? metadataFromApi(result.record) : undefined;
        await applyTtnMetadata(
          this.#o.db,
          device.uid,
          result.record,
          metadata ?? { name: undefined, location: null },
        );
        this.#retries.delete(device.uid);
        this.#globalFailures = 0;
        if (result.kind === "refused") {
          log.warn(
            { status: result.status },
            "The Things Stack refused the device lookup; kept its answer as properties.ttn",
          );
        } else {
          log.info("device metadata fetched from The Things Stack");
        }
        return;
      }
      case "rate_limited": {
        const wait = Math.min(
          result.retryAfterMs ?? backoffDelay(this.#globalFailures++, retry),
          this.#o.retryMaxMs,
        );
        this.#pausedUntil = Date.now() + wait;
        log.warn({ wait_ms: wait }, "The Things Stack API rate limit reached; pausing");
        return;
      }
      case "unauthorized": {
        const wait = backoffDelay(this.#globalFailures++, retry);
        this.#pausedUntil = Date.now() + wait;
        log.error(
          { status: result.status, wait_ms: wait },
          "The Things Stack rejected TTN_API_TOKEN; pausing metadata fetches",
        );
        return;
      }
      case "failed": {
        const attempts = (this.#retries.get(device.uid)?.attempts ?? 0) + 1;
        const wait = backoffDelay(attempts - 1, retry);
        this.#retries.set(device.uid, { attempts, notBefore: Date.now() + wait });
        log.warn(
          { error: result.error, attempts, wait_ms: wait },
          "device metadata fetch failed; will retry",
        );
        return;
      }
    }
  }
}
