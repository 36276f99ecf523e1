import { deadline } from "../../core/backoff.js";
import { retryAfterMs } from "../../core/retry-after.js";

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
  readonly #options: TtnApiClientOptions;

  constructor(options: TtnApiClientOptions) {
    this.#options = options;
  }

  /** `GET /applications/{app}/devices/{dev}?field_mask=name,description,locations,attributes`. */
  async getDevice(appId: string, devId: string, signal?: AbortSignal): Promise<DeviceLookup> {
    const path = `/applications/${encodeURIComponent(appId)}/devices/${encodeURIComponent(devId)}`;
    const url = `${this.#options.url}${path}?field_mask=name,description,locations,attributes`;
    // One deadline for headers and body together: a server that stalls mid-body is a timeout too.
    const timer = deadline(this.#options.timeoutMs, signal);
    let status: number;
    let retryAfter: string | null;
    let data: unknown;
    try {
      const response = await fetch(url, {
        headers: { Authorization: this.#options.authorization, Accept: "application/json" },
        // A redirect is an answer to report, not to follow with the token attached.
        redirect: "manual",
        signal: timer.signal,
      });
      status = response.status;
      retryAfter = response.headers.get("retry-after");
      const text = await response.text();
      data = parseJson(text);
    } catch (err) {
      return { kind: "failed", error: err instanceof Error ? err.message : String(err) };
    } finally {
      timer.done();
    }
    if (status >= 200 && status < 300) {
      return typeof data === "object" && data !== null
        ? { kind: "found", record: data }
        : { kind: "failed", error: `status ${status} without a JSON object body` };
    }
    if (status === 429) {
      return { kind: "rate_limited", retryAfterMs: retryAfterMs(retryAfter) };
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

/** The body as JSON when it is JSON, else the text itself (kept for the refusal record). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
