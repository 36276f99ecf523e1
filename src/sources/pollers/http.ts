import { backoffDelay, sleep } from "../../core/backoff.js";
import { TransientError } from "../../core/errors.js";
import { retryAfterMs } from "../../core/retry-after.js";
import type { Logger } from "../../core/logger.js";

/** One request to a vendor API. */
export interface VendorRequest {
  /** Default GET. */
  readonly method?: "GET" | "POST";
  /** Appended to the base URL; starts with `/`. */
  readonly path: string;
  readonly query?: Readonly<Record<string, string>>;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as a JSON body. */
  readonly json?: unknown;
  /** Names the request in logs and errors; must not contain secrets (the URL may). */
  readonly what: string;
}

/** A vendor's answer that was not a transient failure (2xx, 3xx, 4xx other than 429). */
export interface VendorResponse {
  readonly status: number;
  /** The body as UTF-8 text, at most `maxResponseBytes` long. */
  readonly text: string;
  /** True when the body was larger than `maxResponseBytes` and was cut there. */
  readonly oversized: boolean;
}

/**
 * The vendor could not be reached or kept failing (network, timeout, 5xx, 429) after every try;
 * or it asked to be left alone longer than one poll is willing to wait. The poll is retried
 * later, not before `retryAfterMs` when the vendor said so.
 */
export class VendorUnavailableError extends TransientError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

export interface VendorHttpOptions {
  /** Base URL without a trailing slash. */
  readonly baseUrl: string;
  /** Longest time one try may take, headers and body together, in ms. */
  readonly timeoutMs: number;
  /** Tries per request, the first included. */
  readonly attempts: number;
  /** First retry delay in ms; doubles per try, with jitter, up to `retryMaxMs`. */
  readonly retryInitialMs: number;
  /** Longest delay between tries, and longest Retry-After waited for, in ms. */
  readonly retryMaxMs: number;
  /** Bodies are cut at this many bytes. */
  readonly maxResponseBytes: number;
  readonly logger: Logger;
  /** Called before each retry (metrics). */
  readonly onRetry?: () => void;
}

/** Reads at most `limit` bytes of a body, then stops reading (the connection is dropped). */
async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<{ text: string; oversized: boolean }> {
  if (!body) {
    return { text: "", oversized: false };
  }
  const reader = body.getReader();
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      return { text: Buffer.concat(chunks).toString("utf8"), oversized: false };
    }
    if (total + value.byteLength > limit) {
      chunks.push(Buffer.from(value.subarray(0, limit - total)));
      await reader.cancel().catch(() => undefined);
      return { text: Buffer.concat(chunks).toString("utf8"), oversized: true };
    }
    chunks.push(Buffer.from(value));
    total += value.byteLength;
  }
}

/**
 * HTTP client shared by the pollers: every try is bounded by a timeout and by the caller's stop
 * signal (a stop aborts the request in flight), transient failures are retried with capped,
 * jittered exponential backoff (Retry-After honoured), and bodies are size-limited. Answers
 * other than transient failures are returned, not thrown: what a 401 or 404 means is the
 * vendor's business.
 */
export class VendorHttp {
  readonly #o: VendorHttpOptions;

  constructor(options: VendorHttpOptions) {
    this.#o = options;
  }

  /** Throws VendorUnavailableError after the last try, TransientError `stopped` on a stop. */
  async request(req: VendorRequest, signal: AbortSignal): Promise<VendorResponse> {
    for (let attempt = 0; ; attempt++) {
      let problem: string;
      let wait: number | undefined;
      try {
        const res = await this.#once(req, signal);
        if (res.status !== 429 && res.status < 500) {
          return res;
        }
        problem = `HTTP ${res.status}`;
        wait = res.retryAfterMs;
      } catch (err) {
        if (signal.aborted) {
          throw new TransientError(`stopped during ${req.what}`);
        }
        const e = err as Error & { cause?: { code?: string } };
        problem =
          e.name === "TimeoutError" ? `no answer within ${this.#o.timeoutMs} ms` : e.message;
        if (e.cause?.code) {
          problem += ` (${e.cause.code})`;
        }
      }
      if (wait !== undefined && wait > this.#o.retryMaxMs) {
        throw new VendorUnavailableError(
          `${req.what}: ${problem}; the vendor asks to wait ${Math.round(wait / 1000)} s`,
          wait,
        );
      }
      if (attempt + 1 >= this.#o.attempts) {
        throw new VendorUnavailableError(
          `${req.what}: ${problem} (${this.#o.attempts} tries)`,
          wait,
        );
      }
      const delay = Math.max(
        wait ?? 0,
        backoffDelay(attempt, { initialMs: this.#o.retryInitialMs, maxMs: this.#o.retryMaxMs }),
      );
      this.#o.logger.warn({ what: req.what, problem, retryInMs: delay }, "vendor request failed");
      this.#o.onRetry?.();
      await sleep(delay, signal);
      if (signal.aborted) {
        throw new TransientError(`stopped during ${req.what}`);
      }
    }
  }

  async #once(
    req: VendorRequest,
    stop: AbortSignal,
  ): Promise<VendorResponse & { retryAfterMs: number | undefined }> {
    const url = new URL(this.#o.baseUrl + req.path);
    for (const [key, value] of Object.entries(req.query ?? {})) {
      url.searchParams.set(key, value);
    }
    const signal = AbortSignal.any([stop, AbortSignal.timeout(this.#o.timeoutMs)]);
    const headers: Record<string, string> = { accept: "application/json", ...req.headers };
    if (req.json !== undefined) {
      headers["content-type"] = "application/json";
    }
    const res = await fetch(url, {
      method: req.method ?? "GET",
      headers,
      body: req.json === undefined ? undefined : JSON.stringify(req.json),
      signal,
    });
    const { text, oversized } = await readLimited(res.body, this.#o.maxResponseBytes);
    return {
      status: res.status,
      text,
      oversized,
      retryAfterMs: retryAfterMs(res.headers.get("retry-after")),
    };
  }
}
