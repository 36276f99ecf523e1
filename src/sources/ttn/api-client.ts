import axios, { type AxiosInstance } from "axios";

import { retryAfterMs } from "./metadata.js";

/** What one device lookup came to; the caller decides what each means for its retries. */
export type DeviceLookup =
  /** 2xx: the device record. */
  | { readonly kind: "found"; readonly record: unknown }
  /** 4xx about this device (404 unknown, 403 no rights to its application, …): final. */
  | { readonly kind: "refused"; readonly status: number; readonly record: unknown }
  /** 401: the token itself is rejected; every device would fail alike. */
  | { readonly kind: "unauthorized"; readonly status: number }
  /** 429: wait at least `retryAfterMs` (when the server said) before any further request. */
  | { readonly kind: "rate_limited"; readonly retryAfterMs: number | undefined }
  /** Timeout, connection failure, 5xx, 408, unreadable body: try again later. */
  | { readonly kind: "failed"; readonly error: string };

export interface TtnApiClientOptions {
  /** Base URL up to and including `/api/v3`, no trailing slash. */
  readonly url: string;
  /** The Authorization header value (`Bearer …`). */
  readonly authorization: string;
  /** Per-request timeout, ms. */
  readonly timeoutMs: number;
}

/**
 * The Things Stack API v3, the one call ingest needs (IoTa's `get_device_details`). Unlike
 * IoTa's client it has a timeout, checks the status code, and never throws: every outcome is a
 * {@link DeviceLookup}.
 */
export class TtnApiClient {
  readonly #http: AxiosInstance;

  constructor(options: TtnApiClientOptions) {
    this.#http = axios.create({
      baseURL: options.url,
      timeout: options.timeoutMs,
      headers: { Authorization: options.authorization, Accept: "application/json" },
      // Every status is an outcome here, not an exception.
      validateStatus: () => true,
      responseType: "json",
      maxRedirects: 0,
    });
  }

  /** `GET /applications/{app}/devices/{dev}?field_mask=name,description,locations,attributes`. */
  async getDevice(appId: string, devId: string, signal?: AbortSignal): Promise<DeviceLookup> {
    const path = `/applications/${encodeURIComponent(appId)}/devices/${encodeURIComponent(devId)}`;
    let response;
    try {
      response = await this.#http.get<unknown>(path, {
        params: { field_mask: "name,description,locations,attributes" },
        signal,
      });
    } catch (err) {
      return { kind: "failed", error: err instanceof Error ? err.message : String(err) };
    }
    const { status, data } = response;
    if (status >= 200 && status < 300) {
      return typeof data === "object" && data !== null
        ? { kind: "found", record: data }
        : { kind: "failed", error: `status ${status} without a JSON object body` };
    }
    if (status === 429) {
      return { kind: "rate_limited", retryAfterMs: retryAfterMs(response.headers["retry-after"]) };
    }
    if (status === 401) {
      return { kind: "unauthorized", status };
    }
    if (status >= 400 && status < 500 && status !== 408) {
      const record = typeof data === "object" && data !== null ? data : { status, body: data };
      return { kind: "refused", status, record };
    }
    return { kind: "failed", error: `status ${status}` };
  }
}
